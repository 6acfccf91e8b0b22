"""Run the emulator under uvicorn on a socket we bind ourselves (so port 0 works and the real
port can be printed before the first request)."""

from __future__ import annotations

import signal
import socket
from collections.abc import Callable

import uvicorn

from ftops.emulator.app import create_app
from ftops.emulator.settings import Settings


def bind(host: str, port: int) -> socket.socket:
    family = socket.AF_INET6 if ":" in host else socket.AF_INET
    sock = socket.socket(family, socket.SOCK_STREAM)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    sock.bind((host, port))
    sock.listen(128)
    sock.set_inheritable(True)
    return sock


def serve(settings: Settings, announce: Callable[[str, int], None]) -> None:
    """Serve until SIGINT/SIGTERM; running jobs pause and resume on the next start."""
    sock = bind(settings.host, settings.port)
    host, port = sock.getsockname()[:2]
    app = create_app(settings)
    config = uvicorn.Config(app, log_level="warning", lifespan="on", timeout_graceful_shutdown=5)
    server = uvicorn.Server(config)
    announce(host, port)
    # uvicorn shuts down gracefully on SIGINT/SIGTERM, then re-raises the signal to the handler that
    # was installed before it; a no-op one here makes a clean stop exit 0 instead of dying by signal.
    previous = {sig: signal.signal(sig, lambda *_: None) for sig in (signal.SIGINT, signal.SIGTERM)}
    try:
        server.run(sockets=[sock])
    finally:
        for sig, handler in previous.items():
            signal.signal(sig, handler)
    print("ftops emulator stopped", flush=True)
