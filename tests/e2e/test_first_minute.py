"""The first minutes as a trader, on the real stack as `trader up` starts it (issue 17).

- The default stack trades: the moving-average crossover says it is warming up (`trader status`:
  "ma-cross-btc warming up: N of 20 bars of 1s"), then orders. On 1m bars it said nothing for twenty
  minutes.
- The default stack's first minute, started afresh (no snapshot yet) with an order risk denies (risk doing
  its job): no log line says something is wrong.
- "Run it" of docs/strategies.md, command by command, with the example configuration: the breakout
  strategy loads, warms up, trades, and every command of the page answers.

The deadlines below are how long the test waits, not a measure of speed: the time to the first order
is printed (`-s`) and docs/strategies.md and the README give it.
"""

from __future__ import annotations

import json
import re
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import httpx
import pytest

from tests.stack_helpers import Stack

pytestmark = pytest.mark.integration

REPO = Path(__file__).resolve().parents[2]
WAIT_FOR_ORDER_S = 150
QUIET_S = 60  # the default stack's first minute: no log line at warning or above

# The lines of a log that say something is wrong: structlog's JSON levels, nats-server's tags.
_ALARMS = ('"level": "warning"', '"level": "error"', '"level": "critical"', "[WRN]", "[ERR]", "[FTL]")
# SeaweedFS's own startup notices about features the lake does not use (SSE-S3's key encryption key,
# STS signing), logged whatever its configuration: not ours to lower.
_NOT_OURS = ("seaweedfs",)


def _up(stack: Stack) -> float:
    started = time.monotonic()
    stack.trader("up", "--detach", check=True, timeout=600)
    return started


def _submitted(stack: Stack, strategy: str) -> int:
    """The orders ``strategy`` submitted, as the strategy service's /health says (0 while it cannot)."""
    try:
        health = httpx.get(f"http://127.0.0.1:{stack.ports['strategy']}/health", timeout=5).json()
        return int(health["strategies"][strategy]["submitted"])
    except (httpx.HTTPError, ValueError, KeyError, TypeError):
        return 0


def _first_order_of(stack: Stack, strategy: str, started: float) -> float:
    """Seconds from the start of `trader up` to the first order of ``strategy`` in `trader orders`.

    `trader orders` (a python process, seconds of CPU on the machine the starting stack needs) is
    asked once the strategy's /health says it submitted an order, and every few seconds anyway (a
    restarted strategy service counts from zero again)."""
    deadline = started + WAIT_FOR_ORDER_S
    asked = 0.0
    while time.monotonic() < deadline:
        if _submitted(stack, strategy) or time.monotonic() > asked + 5:
            asked = time.monotonic()
            listed = stack.trader("orders", "--all", "--json")
            if listed.returncode == 0 and any(o["strategy"] == strategy for o in json.loads(listed.stdout)):
                return time.monotonic() - started
        time.sleep(0.5)
    raise AssertionError(f"no order of {strategy} in {WAIT_FOR_ORDER_S} s\n{stack.log('strategy')}")


def test_the_default_stack_says_it_warms_up_then_trades(tmp_path: Path) -> None:
    stack = Stack.create(tmp_path)
    try:
        started = _up(stack)
        status = stack.trader("status")
        assert status.returncode == 0, status.stdout + status.stderr  # warming up is not a problem
        said = re.search(r"strategy: ma-cross-btc warming up: (\d+) of 20 bars of 1s", status.stdout)
        if said is not None:
            assert int(said.group(1)) < 20
        else:  # a slow start (a loaded machine): the 20 s of warm-up passed while up waited for others
            log = stack.trader("logs", "strategy", "-n", "5000", "--raw", check=True).stdout
            assert '"strategy.warm_up_complete"' in log, status.stdout
        seconds = _first_order_of(stack, "ma-cross-btc", started)
        print(f"default stack: first ma-cross-btc order {seconds:.0f} s after trader up began")
        assert "ma-cross-btc warming up" not in stack.trader("status").stdout
        log = stack.trader("logs", "strategy", "-n", "5000", "--raw", check=True).stdout
        events = [json.loads(line) for line in log.splitlines() if line.startswith("{")]
        progress = [e["progress"] for e in events if e.get("event") == "strategy.warming_up"]
        assert "warming up: 19 of 20 bars of 1s" in progress
        assert any(e.get("event") == "strategy.warm_up_complete" for e in events)
        denied = stack.trader("order", "buy", "BTCUSDT", "100", "--wait", timeout=60)
        assert denied.returncode == 3, denied.stdout + denied.stderr
        time.sleep(max(0.0, started + QUIET_S - time.monotonic()))
        status = stack.status()
        assert status["healthy"], status
    finally:
        stack.trader("down", timeout=120)
    alarms = [
        f"{log.stem}: {line}"
        for log in sorted((tmp_path / "logs").glob("*.log"))
        if log.stem not in _NOT_OURS
        for line in log.read_text(errors="replace").splitlines()
        if any(alarm in line for alarm in _ALARMS)
    ]
    assert alarms == []


def test_run_it_of_docs_strategies_md(tmp_path: Path) -> None:
    """The page's commands, from the repository's root: `make up` is `trader up` once installed
    (tests/unit/strategies/test_strategies_page.py checks that), the port is the stack's strategy port."""
    stack = Stack.create(tmp_path, TRADER_CONFIG=str(REPO / "examples" / "breakout.yaml"))
    try:
        started = _up(stack)
        stack.trader("status", check=True)
        seconds = _first_order_of(stack, "breakout-btc", started)
        print(f"docs/strategies.md Run it: first breakout-btc order {seconds:.0f} s after trader up began")
        # The page's read-only commands, at once: each is a python process of its own.
        with ThreadPoolExecutor(max_workers=3) as pool:
            orders, _, _ = pool.map(
                lambda command: stack.trader(command, check=True).stdout, ["orders", "positions", "pnl"]
            )
        assert "breakout-btc" in orders
        health = httpx.get(f"http://127.0.0.1:{stack.ports['strategy']}/health", timeout=10).json()
        breakout = health["strategies"]["breakout-btc"]
        assert breakout["kind"] == "examples.my_strategies:Breakout"
        assert breakout["submitted"] >= 1
        assert breakout["warming_up"] is None
        assert breakout["state"]["bars_in_channel"] == {"BTCUSDT": 10}
        log = stack.trader("logs", "strategy", "-n", "5000", check=True).stdout
        assert "breakout" in log
    finally:
        stack.trader("down", timeout=120)
