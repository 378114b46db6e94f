"""The probes run on the service's event loop, never beside it in a worker thread."""

from __future__ import annotations

import threading
from typing import Any

import httpx

from trader.runtime.http import build_probe_app


async def test_health_and_ready_are_answered_on_the_event_loop_thread() -> None:
    seen: list[int] = []

    def health() -> dict[str, Any]:
        seen.append(threading.get_ident())
        return {"status": "ok"}

    def readiness() -> dict[str, Any]:
        seen.append(threading.get_ident())
        return {"ready": False}

    app = build_probe_app("test", health, readiness, lambda: b"")
    transport = httpx.ASGITransport(app=app)
    async with httpx.AsyncClient(transport=transport, base_url="http://probe") as client:
        assert (await client.get("/health")).json() == {"status": "ok"}
        assert (await client.get("/ready")).status_code == 503
        assert (await client.get("/metrics")).status_code == 200
    assert seen == [threading.get_ident()] * 2
