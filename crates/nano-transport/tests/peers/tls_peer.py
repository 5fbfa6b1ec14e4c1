"""A pynng peer over tls+tcp:// for the TLS interop tests.

    tls_peer.py PROTOCOL ROLE URL [STEP ...]

PROTOCOL is req, rep, push or pull; ROLE is listen or dial. Option steps, before the socket
listens or dials:

    cert=PATH   own certificate (PEM); with key=, presented to the peer
    key=PATH    own private key (PEM)
    ca=PATH     CA file that the peer's certificate must chain to (or the certificate itself)
    name=HOST   the server name to verify (dialers)
    client=required  a listener demands a client certificate

Action steps, in order: send=HEX, recv (prints `msg HEX`), echo (receive, print, send back),
stdin (wait for a line on stdin: NNG has no linger, so a peer that closes right after a send
may drop it; the test says when it has received everything).
Prints `ready` once listening or dialed, `done` at the end; any failure prints `error: ...` on
stderr and exits 1.
"""

import sys

import pynng

SOCKETS = {
    "req": pynng.Req0,
    "rep": pynng.Rep0,
    "push": pynng.Push0,
    "pull": pynng.Pull0,
}


def say(line):
    sys.stdout.write(line + "\n")
    sys.stdout.flush()


def main(argv):
    proto, role, url, *steps = argv
    opts = {}
    actions = []
    for step in steps:
        name, _, value = step.partition("=")
        if name in ("cert", "key", "ca", "name", "client"):
            opts[name] = value
        else:
            actions.append((name, value))
    listen = role == "listen"
    kwargs = {}
    if "ca" in opts:
        with open(opts["ca"]) as f:
            kwargs["ca_string"] = f.read()
    if "cert" in opts:
        with open(opts["cert"]) as f:
            kwargs["own_cert_string"] = f.read()
        with open(opts["key"]) as f:
            kwargs["own_key_string"] = f.read()
    if "name" in opts:
        kwargs["server_name"] = opts["name"]
    if listen:
        mode = pynng.TLSConfig.MODE_SERVER
        auth = (pynng.TLSConfig.AUTH_MODE_REQUIRED if opts.get("client") == "required"
                else pynng.TLSConfig.AUTH_MODE_NONE)
    else:
        mode = pynng.TLSConfig.MODE_CLIENT
        auth = pynng.TLSConfig.AUTH_MODE_REQUIRED
    config = pynng.TLSConfig(mode, auth_mode=auth, **kwargs)
    sock = SOCKETS[proto](recv_timeout=10000, send_timeout=10000, tls_config=config)
    try:
        if listen:
            sock.listen(url)
        else:
            sock.dial(url, block=True)
        say("ready")
        for name, value in actions:
            if name == "send":
                sock.send(bytes.fromhex(value))
            elif name == "recv":
                say("msg " + sock.recv().hex())
            elif name == "echo":
                got = sock.recv()
                say("msg " + got.hex())
                sock.send(got)
            elif name == "stdin":
                if not sys.stdin.readline():
                    raise EOFError("stdin closed")
            else:
                raise ValueError(f"unknown step {name}")
        say("done")
    finally:
        sock.close()


if __name__ == "__main__":
    try:
        main(sys.argv[1:])
    except Exception as e:  # noqa: BLE001 - any failure is reported the same way
        sys.stderr.write(f"error: {e!r}\n")
        sys.exit(1)
