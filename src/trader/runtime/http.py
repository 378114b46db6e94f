"""The HTTP side of a service: /health, /ready and /metrics on its port (and /metrics on a separate
metrics port where the port map gives one)."""

from __future__ import annotations

import asyncio
import contextlib
import socket
from collections.abc import Callable, Iterator
from typing import Any

import uvicorn
from fastapi import FastAPI
from fastapi.responses import JSONResponse, Response
from prometheus_client import CONTENT_TYPE_LATEST


class PortInUse(OSError):
    """A port the service cannot listen on (taken, or not allowed), and which."""

    def __init__(self, message: str, port: int) -> None:
        super().__init__(message)
        self.port = port


def build_probe_app(
    title: str,
    health: Callable[[], dict[str, Any]],
    readiness: Callable[[], dict[str, Any]],
    metrics: Callable[[], bytes],
) -> FastAPI:
    app = FastAPI(title=title, docs_url=None, redoc_url=None, openapi_url=None)

    # The probes read the service's state: as coroutines they run on its event loop, between two of
    # its steps. (A plain function would run in a worker thread, walking dictionaries the loop is
    # changing: "dictionary changed size during iteration", and the GIL taken from the loop.)
    @app.get("/health")
    async def _health() -> dict[str, Any]:
        return health()

    @app.get("/ready")
    async def _ready() -> JSONResponse:
        body = readiness()
        return JSONResponse(body, status_code=200 if body["ready"] else 503)

    @app.get("/metrics")
    def _metrics() -> Response:  # the client's registry is thread-safe: built off the loop
        return Response(metrics(), media_type=CONTENT_TYPE_LATEST)

    return app


class _Server(uvicorn.Server):
    @contextlib.contextmanager
    def capture_signals(self) -> Iterator[None]:
        # The service runtime owns SIGTERM and SIGINT: it stops intake and drains before HTTP goes.
        yield


def bind(host: str, port: int, owner: str) -> socket.socket:
    sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    try:
        sock.bind((host, port))
    except OSError as exc:
        sock.close()
        reason = (exc.strerror or str(exc)).lower()
        raise PortInUse(f"{owner}: cannot listen on {host}:{port}: {reason}", port) from None
    sock.listen(128)
    sock.setblocking(False)
    return sock


class HttpServer:
    def __init__(self, app: FastAPI, sock: socket.socket) -> None:
        config = uvicorn.Config(app, log_config=None, access_log=False, lifespan="off")
        self._server = _Server(config)
        self._sock = sock
        self._task: asyncio.Task[None] | None = None

    async def start(self) -> None:
        self._task = asyncio.create_task(self._server.serve(sockets=[self._sock]))
        while not self._server.started:
            if self._task.done():
                self._task.result()
                raise RuntimeError("HTTP server stopped while starting")
            await asyncio.sleep(0.01)

    async def stop(self) -> None:
        self._server.should_exit = True
        if self._task is not None:
            with contextlib.suppress(asyncio.CancelledError):
                await asyncio.wait_for(self._task, timeout=5)
