"""The HTTP server under the app: Hypercorn, set so that slow or idle clients cannot starve real ones.

Why Hypercorn (measured with ``python -m benchmarks.serve_load``, docs/webapp.md): uvicorn has no
time limit on receiving a request's headers, and its only guard, ``limit_concurrency``, counts open
sockets, so 150 sockets that sent half their headers made every real request answer 503 and were
never closed. Hypercorn starts a connection's idle timer when it opens and stops it only when a
request's headers are complete (``keep_alive_timeout``: here the header timeout), so such a socket
is closed after `Settings.header_timeout` whatever it trickles in, and it counts no connections.
A body that stalls is cut by ``read_timeout`` (no byte for that long) and, in the app, by a deadline
on the whole body (`app.Guard`). Requests, not sockets, are counted by the app.

`Server` runs the app on an already-bound socket until `stop` (from any thread) or, with
``handle_signals``, SIGINT/SIGTERM: it then stops accepting, lets the requests in flight finish
for up to ``graceful_timeout`` seconds, shuts the app down (the worker's thread ends) and returns.
"""

from __future__ import annotations

import asyncio
import dataclasses
import signal
import socket
import threading


@dataclasses.dataclass(frozen=True)
class Settings:
    header_timeout: float = 10.0  # seconds from a connection's start (or its previous answer) to a request's headers
    read_timeout: int = 30  # seconds without a byte while a request is read
    graceful_timeout: float = 30.0  # seconds the requests in flight get to finish at a stop


def config(sock: socket.socket, settings: Settings):
    """The Hypercorn config that serves on ``sock`` (its file descriptor passes to Hypercorn)."""
    from hypercorn.config import Config

    cfg = Config()
    cfg.bind = [f"fd://{sock.detach()}"]
    cfg.keep_alive_timeout = settings.header_timeout
    cfg.read_timeout = settings.read_timeout
    cfg.graceful_timeout = settings.graceful_timeout
    cfg.include_server_header = False
    cfg.accesslog = None
    cfg.loglevel = "WARNING"
    cfg.backlog = 128
    return cfg


class Server:
    """Serves ``app`` on ``sock`` in the calling thread (`run`); `stop` ends it from anywhere."""

    def __init__(self, app, sock: socket.socket, settings: Settings | None = None):
        self.app, self.settings = app, settings or Settings()
        self.port = sock.getsockname()[1]
        self._config = config(sock, self.settings)
        self._loop: asyncio.AbstractEventLoop | None = None
        self._stop: asyncio.Event | None = None
        self._stop_requested = threading.Event()
        self.started = threading.Event()

    def run(self, *, handle_signals: bool = False) -> None:
        asyncio.run(self._serve(handle_signals))

    async def _serve(self, handle_signals: bool) -> None:
        from hypercorn.asyncio import serve

        self._loop, self._stop = asyncio.get_running_loop(), asyncio.Event()
        if handle_signals:
            for sig in (signal.SIGINT, signal.SIGTERM):
                self._loop.add_signal_handler(sig, self._stop.set)
        if self._stop_requested.is_set():
            self._stop.set()
        self.started.set()
        await serve(self.app, self._config, shutdown_trigger=self._stop.wait)

    def stop(self) -> None:
        self._stop_requested.set()
        if self._loop is not None and self._stop is not None:
            self._loop.call_soon_threadsafe(self._stop.set)
