"""`trader status`: every component's pid, ports, health, readiness, restarts and message rates, and
why a component that runs is not doing its job (its problems: ``trader.runtime.health``)."""

from __future__ import annotations

import asyncio
from typing import TYPE_CHECKING, Any

import psutil

from trader.config import Settings
from trader.runtime.health import problems_of
from trader.stack.probes import probe
from trader.stack.state import StackState

if TYPE_CHECKING:
    import httpx

STARTED = ("ready", "degraded")  # the phases of a stack that has started


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
    import httpx  # only when a stack is there to ask: not for `trader down`, nor `status` of a stopped one

    async with httpx.AsyncClient() as client:
        rows = await asyncio.gather(*(_component_status(c, client) for c in state.components))
    supervisor_alive = process_alive(state.supervisor_pid)
    return {
        "supervisor": {
            "pid": state.supervisor_pid,
            "alive": supervisor_alive,
            "phase": current_phase(state.phase, supervisor_alive, list(rows)),
            "error": state.error,
            "data_dir": state.data_dir,
        },
        "components": list(rows),
        "healthy": supervisor_alive and all(r["healthy"] and r["ready"] for r in rows),
    }


def current_phase(recorded: str, supervisor_alive: bool, rows: list[dict[str, Any]]) -> str:
    """The stack's phase as it is now: a started stack is degraded while a component says it is not
    doing its job, whatever it was when the start ended."""
    if not supervisor_alive and recorded not in ("stopped", "failed"):
        return "dead"
    if recorded in STARTED:
        return "degraded" if any(r["problems"] for r in rows) else "ready"
    return recorded


async def _component_status(c: dict[str, Any], client: httpx.AsyncClient) -> dict[str, Any]:
    health, ready = await asyncio.gather(probe(c["health_url"], client), probe(c["ready_url"], client))
    rates: dict[str, float] = {}
    if isinstance(health.body, dict):
        rates = health.body.get("rates", {})
    problems = [p.reason for p in problems_of(health.body)] if health.ok else []
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
        "degraded": bool(problems),
        "problems": problems,
        "notes": _notes(health.body) if health.ok else [],
        "restarts": c["restarts"],
        "in_per_s": rates.get("in_per_s"),
        "out_per_s": rates.get("out_per_s"),
        "log": c["log"],
    }


def _notes(body: Any) -> list[str]:
    """What a component tells besides its problems (a strategy warming up): ``notes`` in /health."""
    notes = body.get("notes") if isinstance(body, dict) else None
    return [str(n) for n in notes] if isinstance(notes, list) else []


def degraded_at_start(state: StackState) -> dict[str, list[str]]:
    """The components that could not do their job when the stack started, with the reasons."""
    return {c["name"]: list(c.get("problems") or []) for c in state.components if c.get("problems")}


def degraded_lines(degraded: dict[str, list[str]]) -> list[str]:
    """One line per reason: which component is not doing its job, and why."""
    return [f"{name} cannot do its job: {reason}" for name, reasons in degraded.items() for reason in reasons]


def port_table(settings: Settings, state: StackState | None) -> list[dict[str, Any]]:
    """Every port of the map in force, the component it is for (None: a service not written yet), and
    whether that component runs now: running, restarting, external (a server trader did not start),
    or not running."""
    components = {}
    if state is not None and process_alive(state.supervisor_pid):
        components = {c["name"]: c for c in state.components}
    owners = _port_owners(settings)
    rows = []
    for name, port in settings.ports.model_dump().items():
        owner = owners.get(name)
        rows.append(
            {"name": name, "port": port, "component": owner, "state": _run_state(components.get(owner or ""))}
        )
    return rows


def _port_owners(settings: Settings) -> dict[str, str]:
    """Port map field -> the component listening on it."""
    from trader.services import REGISTRY
    from trader.stack.supervisor import infra_servers

    servers = {port: server.name for server in infra_servers(settings) for port in server.ports().values()}
    owners = {name: servers[port] for name, port in settings.ports.model_dump().items() if port in servers}
    for spec in REGISTRY.values():
        owners[spec.port_field] = spec.name
        if spec.metrics_port_field:
            owners[spec.metrics_port_field] = spec.name
    return owners


def _run_state(component: dict[str, Any] | None) -> str:
    if component is None:
        return "not running"
    if not component["managed"]:
        return "external"
    if process_alive(component["pid"], component.get("create_time")):
        return "running"
    return "restarting" if component["state"] == "backoff" else "not running"
