"""A stack whose services run but cannot do their job, on the real servers: `trader up --detach` names
each and why and exits 1, the stack keeps running, `trader status` shows them degraded with the reasons,
and `trader ports` marks what is not running.

One stack, `trader up --detach --live --services strategy`: the one strategy configured has a kind that
cannot be imported, and the live gateway's one venue points at a port nothing listens on.
"""

from __future__ import annotations

import json
from collections.abc import Iterator
from pathlib import Path
from subprocess import CompletedProcess
from typing import Any

import httpx
import pytest

from tests.stack_helpers import Stack, free_port_map

pytestmark = pytest.mark.integration

STRATEGIES = [{"name": "typo", "kind": "my_strategies_typo:Breakout", "symbols": ["BTCUSDT"]}]


@pytest.fixture(scope="module")
def degraded(tmp_path_factory: pytest.TempPathFactory) -> Iterator[tuple[Stack, CompletedProcess[str]]]:
    nothing = free_port_map()["api"]  # a free port: nothing listens there
    venue = "TRADER_LIVE_GATEWAY__VENUES__BINANCE__"
    stack = Stack.create(
        Path(tmp_path_factory.mktemp("degraded")),
        TRADER_STRATEGY__STRATEGIES=json.dumps(STRATEGIES),
        TRADER_SUPERVISOR__READY_TIMEOUT_S="10",  # the disconnected venue is named after it
        **{
            f"{venue}SYMBOLS": json.dumps(["BTCUSDT"]),
            f"{venue}WS_URL": f"ws://127.0.0.1:{nothing}/ws",
            f"{venue}REST_URL": f"http://127.0.0.1:{nothing}",
        },
    )
    up = stack.trader("up", "--detach", "--live", "--services", "strategy")
    try:
        yield stack, up
    finally:
        stack.trader("down", timeout=120)


def _rows(stack: Stack) -> dict[str, dict[str, Any]]:
    return {c["name"]: c for c in stack.status()["components"]}


def test_up_names_each_component_that_cannot_do_its_job_and_exits_1(
    degraded: tuple[Stack, CompletedProcess[str]],
) -> None:
    stack, up = degraded
    assert up.returncode == 1, up.stdout + up.stderr + stack.log("supervisor")
    assert "strategy cannot do its job: no strategy running" in up.stderr
    assert "strategy cannot do its job: strategy typo could not be loaded: " in up.stderr
    assert "my_strategies_typo" in up.stderr  # the module it could not import
    assert (
        "live-gateway cannot do its job: binance: disconnected, never connected to ws://127.0.0.1:"
        in up.stderr
    )
    assert "trader is up." not in up.stderr
    assert "trader is running, degraded" in up.stderr


def test_the_stack_keeps_running_and_status_shows_why(degraded: tuple[Stack, CompletedProcess[str]]) -> None:
    stack, _ = degraded
    report = stack.status()
    assert report["healthy"] is False
    assert report["supervisor"]["phase"] == "degraded"
    rows = {c["name"]: c for c in report["components"]}
    strategy, live = rows["strategy"], rows["live-gateway"]
    for row in (strategy, live):
        assert (row["alive"], row["healthy"], row["ready"], row["degraded"]) == (True, True, False, True)
    assert strategy["problems"][0] == "no strategy running"
    assert strategy["problems"][1].startswith("strategy typo could not be loaded: ")
    assert "cannot import my_strategies_typo" in strategy["problems"][1]
    assert len(live["problems"]) == 1
    assert live["problems"][0].startswith("binance: disconnected, never connected to ws://127.0.0.1:")
    assert "Connect" in live["problems"][0]  # the reason the connection failed
    for name in ("nats", "seaweedfs", "questdb"):
        assert (rows[name]["ready"], rows[name]["degraded"]) == (True, False), name

    table = stack.trader("status")
    assert table.returncode == 1
    assert "degraded" in table.stdout
    assert "strategy degraded: strategy typo could not be loaded: " in table.stdout
    assert "live-gateway degraded: binance: disconnected" in table.stdout


def test_ready_answers_503_with_the_reasons(degraded: tuple[Stack, CompletedProcess[str]]) -> None:
    stack, _ = degraded
    ready = httpx.get(f"http://127.0.0.1:{stack.ports['strategy']}/ready", timeout=5)
    assert ready.status_code == 503
    assert {"reason": "no strategy running", "lasting": True} in ready.json()["problems"]
    health = httpx.get(f"http://127.0.0.1:{stack.ports['strategy']}/health", timeout=5)
    assert health.status_code == 200
    assert health.json()["status"] == "degraded"


def test_ports_marks_the_services_not_running(degraded: tuple[Stack, CompletedProcess[str]]) -> None:
    stack, _ = degraded
    result = stack.trader("ports", "--json")
    assert result.returncode == 0, result.stderr
    rows = {row["name"]: row for row in json.loads(result.stdout)}
    assert (rows["strategy"]["component"], rows["strategy"]["state"]) == ("strategy", "running")
    assert rows["live_gateway"]["state"] == "running"
    assert rows["nats"]["state"] == "running"
    assert (rows["gateway"]["component"], rows["gateway"]["state"]) == ("gateway", "not running")
    assert rows["oms"]["state"] == "not running"
    assert rows["strategy"]["port"] == stack.ports["strategy"]
    table = stack.trader("ports")
    assert "not running" in table.stdout
