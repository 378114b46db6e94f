"""`trader status`: every component's pid, ports, health, readiness, restarts and message rates."""

from __future__ import annotations

import asyncio
from typing import Any

import httpx
import psutil

from trader.stack.probes import probe
from trader.stack.state import StackState


def process_alive(pid: int | None, create_time: float | None = None) -> bool:
    """Alive and the same process: a recycled pid is not mistaken for the one recorded."""
    if not pid:
        return False
    try:
        proc = psutil.Process(pid)
        if proc.status() == psutil.STATUS_ZOMBIE:
            return False
        return create_time is None or abs(proc.create_time() - create_time) < 1.0
    except psutil.Error:
        return False


async def collect_status(state: StackState) -> dict[str, Any]:
    async with httpx.AsyncClient() as client:
        rows = await asyncio.gather(*(_component_status(c, client) for c in state.components))
    supervisor_alive = process_alive(state.supervisor_pid)
    return {
        "supervisor": {
            "pid": state.supervisor_pid,
            "alive": supervisor_alive,
            "phase": state.phase if supervisor_alive or state.phase in ("stopped", "failed") else "dead",
            "error": state.error,
            "data_dir": state.data_dir,
        },
        "components": list(rows),
        "healthy": supervisor_alive and all(r["healthy"] and r["ready"] for r in rows),
    }


async def _component_status(c: dict[str, Any], client: httpx.AsyncClient) -> dict[str, Any]:
    health, ready = await asyncio.gather(probe(c["health_url"], client), probe(c["ready_url"], client))
    rates: dict[str, float] = {}
    if isinstance(health.body, dict):
        rates = health.body.get("rates", {})
    alive = process_alive(c["pid"], c.get("create_time")) if c["managed"] else None
    return {
        "name": c["name"],
        "kind": c["kind"],
        "managed": c["managed"],
        "state": c["state"],
        "pid": c["pid"] if alive else None,
        "alive": alive,
        "ports": c["ports"],
        "healthy": health.ok,
        "ready": ready.ok,
        "restarts": c["restarts"],
        "in_per_s": rates.get("in_per_s"),
        "out_per_s": rates.get("out_per_s"),
        "log": c["log"],
    }
