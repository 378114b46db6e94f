"""A component that runs but cannot do its job: how the supervisor waits for it, what the state file and
`trader status` say, and which ports `trader ports` marks as not running."""

from __future__ import annotations

import os
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import httpx
import psutil
import pytest

from trader.config import Settings
from trader.runtime.backoff import Backoff
from trader.stack.base import StackError
from trader.stack.state import StackState
from trader.stack.status import (
    _component_status,
    current_phase,
    degraded_at_start,
    degraded_lines,
    port_table,
)
from trader.stack.supervisor import Running, Supervisor, service_component

NO_STRATEGY = {"reason": "no strategy running: bad (ModuleNotFoundError: No module named 'nowhere')"}


@pytest.fixture
def settings(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Settings:
    monkeypatch.setenv("TRADER_DATA_DIR", str(tmp_path))
    return Settings()


def _answers(ready: Callable[[int], tuple[int, dict[str, Any]]]) -> tuple[httpx.AsyncClient, list[int]]:
    """A client whose /ready answers ``ready(n)`` at the n-th probe (from 0)."""
    calls: list[int] = []

    def handle(request: httpx.Request) -> httpx.Response:
        calls.append(len(calls))
        status, body = ready(len(calls) - 1)
        return httpx.Response(status, json=body)

    return httpx.AsyncClient(transport=httpx.MockTransport(handle)), calls


def _strategy_run(settings: Settings, timeout_s: float = 60.0) -> tuple[Supervisor, Running]:
    supervisor = Supervisor(settings, ["strategy"])
    component = service_component(settings, "strategy")
    component.start_timeout_s = timeout_s
    run = Running(component, Backoff(0.1, 1.0), state="starting")
    supervisor.runs.append(run)
    return supervisor, run


async def test_a_lasting_problem_ends_the_wait_at_once_and_the_stack_is_degraded(settings: Settings) -> None:
    supervisor, run = _strategy_run(settings)
    client, calls = _answers(
        lambda n: (503, {"ready": False, "problems": [{**NO_STRATEGY, "lasting": True}]})
    )
    started = time.monotonic()
    await supervisor._wait_ready(run, client)
    assert time.monotonic() - started < 5  # not the 60 s start timeout
    assert len(calls) == 1
    assert run.state == "running"  # still watched and restarted like the others
    assert supervisor.degraded == {"strategy": [NO_STRATEGY["reason"]]}
    recorded = supervisor.snapshot()
    assert recorded.components[0]["problems"] == [NO_STRATEGY["reason"]]
    assert degraded_at_start(recorded) == {"strategy": [NO_STRATEGY["reason"]]}


async def test_a_passing_problem_is_waited_for_until_ready(settings: Settings) -> None:
    supervisor, run = _strategy_run(settings)
    connecting = {"ready": False, "problems": [{"reason": "binance: not connected yet", "lasting": False}]}
    client, calls = _answers(lambda n: (503, connecting) if n < 2 else (200, {"ready": True, "problems": []}))
    await supervisor._wait_ready(run, client)
    assert len(calls) == 3
    assert supervisor.degraded == {}
    assert run.state == "running"


async def test_a_problem_still_there_at_the_start_timeout_is_degraded_not_failed(settings: Settings) -> None:
    supervisor, run = _strategy_run(settings, timeout_s=0.3)
    disconnected = {"ready": False, "problems": [{"reason": "binance: disconnected", "lasting": False}]}
    client, calls = _answers(lambda n: (503, disconnected))
    await supervisor._wait_ready(run, client)
    assert len(calls) >= 2
    assert supervisor.degraded == {"strategy": ["binance: disconnected"]}


async def test_not_ready_without_a_reason_past_the_timeout_still_fails_the_start(settings: Settings) -> None:
    supervisor, run = _strategy_run(settings, timeout_s=0.3)
    client, _ = _answers(lambda n: (503, {"ready": False, "checks": {"rebuilt": False}, "problems": []}))
    with pytest.raises(StackError, match="strategy did not become ready within 0s"):
        await supervisor._wait_ready(run, client)
    assert supervisor.degraded == {}


def test_each_reason_is_one_line_naming_its_component() -> None:
    assert degraded_lines({"strategy": ["a", "b"], "live-gateway": ["binance: disconnected"]}) == [
        "strategy cannot do its job: a",
        "strategy cannot do its job: b",
        "live-gateway cannot do its job: binance: disconnected",
    ]


async def test_status_shows_a_component_that_answers_with_problems_as_degraded() -> None:
    def handle(request: httpx.Request) -> httpx.Response:
        body = {
            "status": "degraded",
            "problems": [{**NO_STRATEGY, "lasting": True}],
            "rates": {"in_per_s": 1.0},
        }
        return httpx.Response(200 if request.url.path == "/health" else 503, json=body)

    component = {
        "name": "strategy",
        "kind": "service",
        "managed": False,
        "state": "running",
        "pid": None,
        "ports": {"http": 8301},
        "restarts": 0,
        "health_url": "http://strategy/health",
        "ready_url": "http://strategy/ready",
        "log": "strategy.log",
    }
    async with httpx.AsyncClient(transport=httpx.MockTransport(handle)) as client:
        row = await _component_status(component, client)
    assert (row["healthy"], row["ready"], row["degraded"]) == (True, False, True)
    assert row["problems"] == [NO_STRATEGY["reason"]]
    assert row["in_per_s"] == 1.0


def test_the_phase_shown_is_the_stacks_now() -> None:
    ok, degraded = {"problems": []}, {"problems": ["binance: disconnected"]}
    assert current_phase("ready", True, [ok, degraded]) == "degraded"
    assert current_phase("degraded", True, [ok, ok]) == "ready"  # the venue connected since
    assert current_phase("starting", True, [degraded]) == "starting"
    assert current_phase("ready", False, [ok]) == "dead"
    assert current_phase("failed", False, [ok]) == "failed"


def _component(name: str, *, managed: bool = True, pid: int | None = None, state: str = "running") -> dict:
    create_time = psutil.Process(pid).create_time() if pid else None
    return {"name": name, "managed": managed, "pid": pid, "create_time": create_time, "state": state}


def _state(components: list[dict], supervisor_pid: int) -> StackState:
    return StackState(supervisor_pid, "ready", None, "/tmp", time.time(), components)


def test_ports_of_components_not_running_are_marked(settings: Settings) -> None:
    me = os.getpid()  # a live process stands for every one that runs
    state = _state(
        [
            _component("nats", pid=me),
            _component("questdb", managed=False),
            _component("strategy", pid=None, state="backoff"),
            _component("sink-ticks", pid=me),
        ],
        supervisor_pid=me,
    )
    rows = {row["name"]: row for row in port_table(settings, state)}
    assert set(rows) == set(settings.ports.model_dump())
    assert (rows["nats"]["component"], rows["nats"]["state"]) == ("nats", "running")
    assert rows["nats_monitor"]["state"] == "running"
    assert (rows["questdb_pg"]["component"], rows["questdb_pg"]["state"]) == ("questdb", "external")
    assert rows["strategy"]["state"] == "restarting"
    assert (rows["sink_ticks_metrics"]["component"], rows["sink_ticks_metrics"]["state"]) == (
        "sink-ticks",
        "running",
    )
    assert (rows["gateway"]["component"], rows["gateway"]["state"]) == (
        "gateway",
        "not running",
    )  # not started
    assert (rows["s3"]["component"], rows["s3"]["state"]) == ("seaweedfs", "not running")
    assert (rows["dashboard"]["component"], rows["dashboard"]["state"]) == (None, "not running")  # not yet
    assert rows["gateway"]["port"] == settings.ports.gateway


def test_with_no_supervisor_every_port_is_not_running(settings: Settings) -> None:
    dead = psutil.Popen(["true"])
    dead.wait()
    state = _state([_component("nats", pid=os.getpid())], supervisor_pid=dead.pid)
    assert {row["state"] for row in port_table(settings, state)} == {"not running"}
    assert {row["state"] for row in port_table(settings, None)} == {"not running"}
