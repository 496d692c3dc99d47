"""Running the service: uvicorn on a socket bound here (port 0 gives a free port), the handshake
line, exit when stdin closes (local mode), graceful shutdown on SIGTERM / Ctrl-C.

Stdout carries the handshake and nothing else: file descriptor 1 is pointed at stderr before
anything is loaded (so a stray print or a native library's output cannot corrupt it), and the
handshake goes through a duplicate of the original descriptor. Logs go to stderr.
"""

from __future__ import annotations

import asyncio
import json
import logging
import os
import socket
import sys
import threading
from typing import TextIO

from .config import ServiceConfig

log = logging.getLogger(__name__)


def protect_stdout() -> TextIO:
    """Point fd 1 (and ``sys.stdout``) at stderr; return a stream on the original stdout for the
    handshake."""
    sys.stdout.flush()
    handshake = os.fdopen(os.dup(1), "w", encoding="utf-8", buffering=1)
    os.dup2(2, 1)
    sys.stdout = sys.stderr
    return handshake


def bind(host: str, port: int) -> socket.socket:
    """A listening TCP socket (IPv6 when the host is an IPv6 address)."""
    infos = socket.getaddrinfo(host, port, type=socket.SOCK_STREAM, flags=socket.AI_PASSIVE)
    family, _type, _proto, _name, addr = infos[0]
    sock = socket.socket(family, socket.SOCK_STREAM)
    if sys.platform != "win32":
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    sock.bind(addr)
    sock.listen(128)
    sock.set_inheritable(True)
    return sock


def handshake_line(config: ServiceConfig, port: int, device: str) -> str:
    from .app import PROTOCOL, versions

    return json.dumps({"event": "ready", "protocol": PROTOCOL, "port": port, "token": config.token,
                       "device": device, "versions": versions()})


def watch_stdin(on_eof) -> threading.Thread:
    """Call ``on_eof`` when stdin reaches end-of-file (the parent closed it, or died)."""

    def run() -> None:
        # os.read on the descriptor, not sys.stdin: a thread blocked inside the buffered reader
        # would hold its lock and abort the interpreter's shutdown
        try:
            fd = sys.stdin.fileno() if sys.stdin is not None else 0
            while os.read(fd, 65536):
                pass
        except (OSError, ValueError):
            pass
        on_eof()

    t = threading.Thread(target=run, name="pixie-stdin-watch", daemon=True)
    t.start()
    return t


def serve(config: ServiceConfig, handshake_stream: TextIO | None = None) -> int:
    """Run until SIGTERM / Ctrl-C / stdin EOF (local mode). Returns the exit code."""
    import uvicorn

    from .app import create_app
    from .state import ServiceState

    state = ServiceState.create(config, load="now")  # on the main thread: see ModelHolder.load
    app = create_app(state)
    sock = bind(config.host, config.port)
    port = sock.getsockname()[1]
    uv_config = uvicorn.Config(app, log_config=None, access_log=config.access_log, timeout_graceful_shutdown=15,
                               timeout_keep_alive=30, lifespan="off", ws="none")

    class Server(uvicorn.Server):
        def handle_exit(self, sig, frame) -> None:  # SIGTERM / Ctrl-C: cancel the jobs first
            state.registry.cancel_all()
            super().handle_exit(sig, frame)
            self._captured_signals.clear()  # exit normally after the clean-up (no re-raised signal)

    server = Server(uv_config)
    stopping = threading.Event()

    def stop_from_thread(reason: str) -> None:
        if stopping.is_set():
            return
        stopping.set()
        log.info("%s: shutting down", reason)
        state.registry.cancel_all()
        server.should_exit = True

    async def announce() -> None:
        while not server.started:
            if server.should_exit:
                return
            await asyncio.sleep(0.01)
        device = state.models.describe()["device"]
        if config.remote:
            log.info("pixie-backend serve: listening on http://%s:%d (remote mode)", config.host, port)
        if handshake_stream is not None:
            handshake_stream.write(handshake_line(config, port, device) + "\n")
            handshake_stream.flush()
        log.info("ready on port %d, device %s; job folders under %s", port, device, state.work_dir)
        if config.exit_on_stdin_eof:
            watch_stdin(lambda: stop_from_thread("stdin closed"))

    async def main() -> None:
        task = asyncio.create_task(announce())
        try:
            await server.serve(sockets=[sock])
        finally:
            task.cancel()

    try:
        asyncio.run(main())
    except KeyboardInterrupt:
        pass
    finally:
        state.registry.cancel_all()
        state.close(timeout=30.0)
        sock.close()
    return 0
