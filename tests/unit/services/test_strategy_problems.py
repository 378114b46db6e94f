"""The strategy service's job: every configured strategy running, each hearing of its instruments. When it
is not doing it, it says which strategy and why (a kind that cannot be imported, a symbol no feed has)."""

from __future__ import annotations

import time
from decimal import Decimal
from pathlib import Path
from typing import Any

import pytest

from trader.bus.read import Stored
from trader.bus.streams import tick_subject
from trader.config import Settings
from trader.marketdata.decode import InvalidMessage
from trader.messages import MarketTick, Order, encode
from trader.runtime.health import Problem
from trader.runtime.intake import Received
from trader.runtime.service import Runtime
from trader.services.strategy import StrategyService

CROSS = {
    "name": "cross",
    "kind": "ma_cross",
    "symbols": ["BTCUSDT"],
    "params": {"fast": "2", "slow": "3", "quantity": "0.01"},
}
NOWHERE = {"name": "nowhere", "kind": "nowhere.at_all:Strategy", "symbols": ["XRPUSDT"]}


def service(tmp_path: Path, monkeypatch: pytest.MonkeyPatch, *strategies: dict[str, Any]) -> StrategyService:
    monkeypatch.setenv("TRADER_DATA_DIR", str(tmp_path))
    settings = Settings(strategy={"strategies": list(strategies)})
    strategy = StrategyService(settings)
    strategy.rt = Runtime("strategy", settings)
    strategy._load(strategy.rt)
    return strategy


def test_no_strategy_loaded_is_a_lasting_problem_naming_each_one_and_why(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    strategy = service(tmp_path, monkeypatch, NOWHERE)
    problems = strategy.problems()
    assert problems[0] == Problem("no strategy running", lasting=True)
    assert problems[1].lasting
    assert problems[1].reason.startswith("strategy nowhere could not be loaded: ")
    assert "nowhere" in problems[1].reason.split(": ", 1)[1]  # the module it could not import
    assert len(problems) == 2


def test_one_strategy_that_cannot_load_is_a_problem_while_the_others_run(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    strategy = service(tmp_path, monkeypatch, CROSS, NOWHERE)
    assert list(strategy.runners) == ["cross"]
    assert [p.reason.split(":")[0] for p in strategy.problems()] == ["strategy nowhere could not be loaded"]


def test_no_strategy_configured_is_a_problem_too(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    strategy = service(tmp_path, monkeypatch)
    assert strategy.problems() == [
        Problem("no strategy running: none is configured and enabled (strategy.strategies)", lasting=True)
    ]


def test_running_strategies_are_no_problem_before_they_subscribe(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    assert service(tmp_path, monkeypatch, CROSS).problems() == []


async def test_an_instrument_with_no_tick_nor_bar_for_a_minute_is_a_problem_until_one_comes(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    strategy = service(tmp_path, monkeypatch, CROSS)
    assert list(strategy.by_instrument) == [("mock", "BTCUSDT")]
    strategy._silence.expect(strategy.by_instrument, now=time.monotonic() - strategy.NO_DATA_S - 30)
    assert strategy.problems() == [
        Problem("no tick nor bar of BTCUSDT on mock for 90 s (none since the start): cross idle")
    ]
    await strategy._take_ticks([tick("other")])  # another venue's: not its data
    assert len(strategy.problems()) == 1
    await strategy._take_ticks([tick("mock")])
    assert strategy.problems() == []


def tick(venue: str) -> Received[MarketTick]:
    now = int(time.time() * 1000)
    body = MarketTick(now, venue, venue, "BTCUSDT", Decimal("60000"), Decimal("0.1"), Decimal("0.1"))
    return Received(Stored(1, tick_subject(venue, "BTCUSDT"), encode(body), None, now), body)


async def test_order_states_of_the_history_go_at_once_and_live_ones_wait_for_the_start(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    strategy = service(tmp_path, monkeypatch, CROSS)
    runner = strategy.runners["cross"]
    heard: list[str] = []
    monkeypatch.setattr(runner, "on_order", lambda order: heard.append(order.client_order_id))
    strategy._history_end = {"ORDERS": 2}
    old, new = _state(1, "cross-old"), _state(3, "cross-new")
    strategy._take_order(old)  # the history: rebuilds the strategy's book before it starts
    strategy._take_order(new)  # live, while the strategies are not started and warmed up yet
    assert heard == ["cross-old"]
    for event in strategy._held:  # what the end of the start does
        event()
    assert heard == ["cross-old", "cross-new"]
    with pytest.raises(InvalidMessage, match="not an Order"):
        strategy._take_order(Received(Stored(4, "order.state.cross", b"{}", None, 0), b"{}"))


def _state(seq: int, client_order_id: str) -> Received[bytes]:
    order = Order(
        client_order_id=client_order_id,
        strategy="cross",
        account="paper",
        symbol="BTCUSDT",
        side="buy",
        type="market",
        quantity=Decimal("0.01"),
        status="NEW",
    )
    data = encode(order)
    return Received(Stored(seq, "order.state.cross", data, None, 0), data)
