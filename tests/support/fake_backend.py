"""A tiny stand-in for ``python -m pixie_backend serve``, for the supervisor tests.

    python tests/support/fake_backend.py MODE [VERSION [PROTOCOL]]

Modes:

* ``ready``: listens on 127.0.0.1 port 0, prints the handshake line on stdout, then echoes each
  stdin line as ``{"event": "echo", "text": ...}`` and exits when stdin reaches end-of-file (the
  behaviour the real service promises);
* ``garbage``: prints a line that is not a handshake, then waits for end-of-file;
* ``hang``: prints nothing and ignores end-of-file (sleeps until killed);
* ``stubborn``: ``hang`` that also ignores SIGTERM (POSIX), so only a kill ends it;
* ``die``: writes a traceback-like message to stderr and exits with code 3;
* ``noisy``: 5,000 stderr lines, then ``ready``;
* ``orphan``: the handshake, then ignores end-of-file (a backend that outlives its Blender).
"""

from __future__ import annotations

import json
import secrets
import signal
import socket
import sys
import time


def handshake(version: str, protocol: int, port: int) -> str:
    return json.dumps(
        {
            "event": "ready",
            "protocol": protocol,
            "port": port,
            "token": secrets.token_hex(16),
            "device": "cpu",
            "versions": {"pixie_backend": version, "torch": "2.13.0+cpu", "python": sys.version.split()[0]},
        }
    )


def sleep_forever() -> None:
    while True:
        time.sleep(1)


def main() -> int:
    mode = sys.argv[1]
    version = sys.argv[2] if len(sys.argv) > 2 else "0.1.0"
    protocol = int(sys.argv[3]) if len(sys.argv) > 3 else 1
    if mode == "die":
        print("Traceback (most recent call last):", file=sys.stderr)
        print("RuntimeError: the model files are missing", file=sys.stderr)
        return 3
    if mode in ("hang", "stubborn"):
        if mode == "stubborn" and hasattr(signal, "SIGTERM") and sys.platform != "win32":
            signal.signal(signal.SIGTERM, signal.SIG_IGN)
        print("loading", file=sys.stderr, flush=True)
        sleep_forever()
    if mode == "garbage":
        print("Starting server on port 8000...", flush=True)
        sys.stdin.read()
        return 0
    if mode == "noisy":
        for i in range(5000):
            print(f"log line {i}", file=sys.stderr)
        sys.stderr.flush()
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        sock.listen()
        print(handshake(version, protocol, sock.getsockname()[1]), flush=True)
        print("listening", file=sys.stderr, flush=True)
        if mode == "orphan":
            sys.stdin.close()
            sleep_forever()
        for line in sys.stdin:
            print(json.dumps({"event": "echo", "text": line.rstrip("\n")}), flush=True)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
