"""pynng talking to pynng: the peer figures the transport benchmark compares itself with.

    pynng_bench.py reqrep URL WARMUP ROUNDS SIZE
        REQ here, REP in a child process; prints {"p50_us": .., "p99_us": ..}
    pynng_bench.py pushpull URL COUNT SIZE
        PULL here, PUSH in a child process; the receiver times from the first message to the
        last; prints {"msgs_per_s": .., "bytes_per_s": ..}

URL is ipc:///path or tcp://127.0.0.1:0 (the child listens and reports its port). Client and
server run in separate processes, as in the anchor measurements; send and receive buffers hold
1,024 messages. A receive that waits longer than STALL_MS fails a REQ/REP run; a PUSH/PULL run
reports the rate of what arrived up to then and says so on stderr (pynng talking to itself
has been seen to stall on loopback tcp).
"""

import json
import os
import subprocess
import sys
import time

import pynng

BUFFERED = {"recv_buffer_size": 1024, "send_buffer_size": 1024}
STALL_MS = 30_000


def listen_and_report(sock, url):
    listener = sock.listen(url)
    if url.startswith("tcp://") and url.endswith(":0"):
        url = "tcp://" + str(listener.local_address)
    sys.stdout.write(url + "\n")
    sys.stdout.flush()


def serve_rep(url):
    with pynng.Rep0(**BUFFERED) as rep:
        listen_and_report(rep, url)
        while True:
            try:
                rep.send(rep.recv())
            except pynng.Closed:
                return


def serve_push(url, count, size):
    payload = b"\x07" * size
    with pynng.Push0(**BUFFERED) as push:
        listen_and_report(push, url)
        # Wait for the puller's go-ahead so its pipe exists before the first send.
        sys.stdin.readline()
        for _ in range(count):
            push.send(payload)
        sys.stdin.readline()


def reap(proc, url):
    """Kill the server child and remove the socket file it can no longer unlink itself."""
    proc.kill()
    proc.wait()
    if url.startswith("ipc://") and os.path.exists(url[len("ipc://"):]):
        os.unlink(url[len("ipc://"):])


def child(mode, url, *extra):
    proc = subprocess.Popen(
        [sys.executable, __file__, mode, url, *extra],
        stdin=subprocess.PIPE,
        stdout=subprocess.PIPE,
        text=True,
    )
    return proc, proc.stdout.readline().strip()


def reqrep(url, warmup, rounds, size):
    proc, url = child("serve-rep", url)
    try:
        payload = b"\x07" * size
        samples = []
        with pynng.Req0(recv_timeout=STALL_MS, **BUFFERED) as req:
            req.dial(url, block=True)
            for i in range(warmup + rounds):
                t = time.perf_counter_ns()
                req.send(payload)
                req.recv()
                if i >= warmup:
                    samples.append(time.perf_counter_ns() - t)
        samples.sort()
        pick = lambda q: samples[round((len(samples) - 1) * q)] / 1000.0
        return {"p50_us": pick(0.5), "p99_us": pick(0.99)}
    finally:
        reap(proc, url)


def pushpull(url, count, size):
    proc, url = child("serve-push", url, str(count), str(size))
    try:
        with pynng.Pull0(recv_timeout=STALL_MS, **BUFFERED) as pull:
            pull.dial(url, block=True)
            time.sleep(0.2)
            proc.stdin.write("go\n")
            proc.stdin.flush()
            pull.recv()
            t = last = time.perf_counter()
            received = 1
            try:
                for _ in range(count - 1):
                    pull.recv()
                    received += 1
                last = time.perf_counter()
            except pynng.Timeout:
                last = time.perf_counter() - STALL_MS / 1000
                sys.stderr.write(
                    f"pynng PUSH/PULL {size} B {url}: stalled after {received} of {count} messages\n"
                )
            secs = last - t
        proc.stdin.write("done\n")
        proc.stdin.flush()
        per_s = (received - 1) / secs
        return {"msgs_per_s": per_s, "bytes_per_s": per_s * size}
    finally:
        reap(proc, url)


def main(argv):
    mode = argv[0]
    if mode == "serve-rep":
        serve_rep(argv[1])
    elif mode == "serve-push":
        serve_push(argv[1], int(argv[2]), int(argv[3]))
    elif mode == "reqrep":
        print(json.dumps(reqrep(argv[1], int(argv[2]), int(argv[3]), int(argv[4]))))
    elif mode == "pushpull":
        print(json.dumps(pushpull(argv[1], int(argv[2]), int(argv[3]))))
    else:
        raise SystemExit(f"unknown mode {mode}")


if __name__ == "__main__":
    main(sys.argv[1:])
