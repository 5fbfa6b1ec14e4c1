"""A pynng peer for the interop tests, driven entirely by its arguments.

    peer.py PROTOCOL ROLE URL [STEP ...]

PROTOCOL is one of pair0 pair1 pair1poly req rep push pull pub sub surveyor respondent bus.
ROLE is listen or dial. The peer opens the socket, applies the option steps that come before
the first action, listens or dials, prints `ready URL` (with the real port when a tcp listener
was asked for port 0), runs the remaining steps in order, prints `done` and exits 0. Any
failure prints `error: ...` on stderr and exits 1.

Steps (payloads are hex, so any byte can be sent and compared exactly):

    timeout=MS   receive and send timeout (default 5000)
    survey=MS    survey window of a surveyor
    sub=HEX      subscribe to a topic (`sub=` subscribes to everything)
    pipes=N      wait until N pipes are connected
    send=HEX     send one message
    recv         receive one message and print `msg HEX`
    recvall      receive until the timeout or survey end, printing `msg HEX` for each
    echo=N       N times: receive one message, print `msg HEX`, send the same bytes back
    echopipe=N   like echo, but answer on the pipe the message came from (PAIR1 poly)
    sendn=N:SIZE send N messages of SIZE bytes; byte j of message i is (i + j) % 251
    recvn=N:SIZE receive N such messages, check every byte, print `ok N`
    sleep=MS     sleep
    stdin        wait for one line on stdin (lets the test order events across processes)
"""

import sys
import time

import pynng

SOCKETS = {
    "pair0": lambda: pynng.Pair0(),
    "pair1": lambda: pynng.Pair1(),
    "pair1poly": lambda: pynng.Pair1(polyamorous=True),
    "req": lambda: pynng.Req0(),
    "rep": lambda: pynng.Rep0(),
    "push": lambda: pynng.Push0(),
    "pull": lambda: pynng.Pull0(),
    "pub": lambda: pynng.Pub0(),
    "sub": lambda: pynng.Sub0(),
    "surveyor": lambda: pynng.Surveyor0(),
    "respondent": lambda: pynng.Respondent0(),
    "bus": lambda: pynng.Bus0(),
}

OPTION_STEPS = ("timeout", "survey", "sub")


def say(line):
    sys.stdout.write(line + "\n")
    sys.stdout.flush()


def split(step):
    name, _, value = step.partition("=")
    return name, value


def apply_option(sock, name, value):
    if name == "timeout":
        sock.recv_timeout = int(value)
        sock.send_timeout = int(value)
    elif name == "survey":
        sock.survey_time = int(value)
    elif name == "sub":
        sock.subscribe(bytes.fromhex(value))


def wait_pipes(sock, count, timeout_ms):
    deadline = time.monotonic() + timeout_ms / 1000.0
    while len(sock.pipes) < count:
        if time.monotonic() > deadline:
            raise TimeoutError(f"only {len(sock.pipes)} of {count} pipes connected")
        time.sleep(0.005)


def pattern(i, size, _cache={}):
    """Message i of a sendn/recvn run: byte j is (i + j) % 251 (251 is prime, so no message
    repeats within 251 and a shifted or truncated frame never matches)."""
    period = _cache.get(size)
    if period is None:
        period = _cache[size] = bytes(range(251)) * (size // 251 + 2)
    start = i % 251
    return period[start:start + size]


def run_step(sock, name, value, timeout_ms):
    if name in OPTION_STEPS:
        apply_option(sock, name, value)
    elif name == "pipes":
        wait_pipes(sock, int(value), timeout_ms)
    elif name == "send":
        sock.send(bytes.fromhex(value))
    elif name == "recv":
        say("msg " + sock.recv().hex())
    elif name == "recvall":
        while True:
            try:
                say("msg " + sock.recv().hex())
            except (pynng.Timeout, pynng.BadState):
                break
    elif name == "echo":
        for _ in range(int(value)):
            data = sock.recv()
            say("msg " + data.hex())
            sock.send(data)
    elif name == "sendn":
        count, size = (int(v) for v in value.split(":"))
        for i in range(count):
            sock.send(pattern(i, size))
    elif name == "recvn":
        count, size = (int(v) for v in value.split(":"))
        for i in range(count):
            data = sock.recv()
            if data != pattern(i, size):
                raise ValueError(f"message {i} of {len(data)} bytes differs from the pattern")
        say(f"ok {count}")
    elif name == "echopipe":
        for _ in range(int(value)):
            msg = sock.recv_msg()
            say("msg " + msg.bytes.hex())
            msg.pipe.send(msg.bytes)
    elif name == "sleep":
        time.sleep(int(value) / 1000.0)
    elif name == "stdin":
        if not sys.stdin.readline():
            raise EOFError("stdin closed")
    else:
        raise ValueError(f"unknown step {name!r}")


def resolved_url(listener, url):
    if url.startswith("tcp://") and url.endswith(":0"):
        host_port = str(listener.local_address)
        return "tcp://" + host_port
    return url


def main(argv):
    if len(argv) < 3 or argv[0] not in SOCKETS or argv[1] not in ("listen", "dial"):
        raise ValueError("usage: peer.py PROTOCOL listen|dial URL [STEP ...]")
    proto, role, url = argv[0], argv[1], argv[2]
    steps = [split(s) for s in argv[3:]]
    timeout_ms = 5000
    with SOCKETS[proto]() as sock:
        sock.recv_timeout = timeout_ms
        sock.send_timeout = timeout_ms
        while steps and steps[0][0] in OPTION_STEPS:
            name, value = steps.pop(0)
            if name == "timeout":
                timeout_ms = int(value)
            apply_option(sock, name, value)
        if role == "listen":
            listener = sock.listen(url)
            say("ready " + resolved_url(listener, url))
        else:
            sock.dial(url, block=True)
            say("ready " + url)
        for name, value in steps:
            if name == "timeout":
                timeout_ms = int(value)
            run_step(sock, name, value, timeout_ms)
        say("done")


if __name__ == "__main__":
    try:
        main(sys.argv[1:])
    except Exception as e:  # noqa: BLE001 - every failure is reported the same way
        sys.stderr.write(f"error: {type(e).__name__}: {e}\n")
        sys.stderr.flush()
        sys.exit(1)
