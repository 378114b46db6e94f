"""The example strategy of docs/strategies.md (examples/my_strategies.py), driven as that page says:
with ``trader.strategies.testing``, and loaded from the example configuration as the service loads it.
(The page's own code blocks: test_strategies_page.py; this file is one the page tells to run.)"""

from __future__ import annotations

from decimal import Decimal
from pathlib import Path

import pytest

from trader.config import Settings
from trader.strategies import StrategyConfigError, build_runner
from trader.strategies.testing import MINUTE, Desk, make_bar, submits

KIND = "examples.my_strategies:Breakout"
PARAMS = {"quantity": "0.1", "lookback": "3"}
EXAMPLE_CONFIG = Path(__file__).parents[3] / "examples" / "breakout.yaml"


def bars(desk: Desk, *ranges: tuple[str, str, str], first: int = 0) -> list:
    """(high, low, close) bars, a minute apart from minute ``first``; the orders of the last one."""
    made: list = []
    for i, (high, low, close) in enumerate(ranges, start=first):
        made = submits(desk.bar(i * MINUTE, close, high=high, low=low))
    return made


CHANNEL = (("101", "99", "100"), ("102", "98", "101"), ("101", "99", "100"))  # highest 102, lowest 98


def test_buys_when_a_bar_closes_above_the_channel_and_only_then() -> None:
    desk = Desk(KIND, PARAMS)
    assert bars(desk, *CHANNEL) == [], "no order before the channel is full"
    assert bars(desk, ("102", "100", "102"), first=3) == [], "at the highest high is not above it"
    [buy] = bars(desk, ("104", "101", "103"), first=4)
    assert (buy.side, buy.symbol, buy.type, buy.quantity) == ("buy", "BTCUSDT", "market", Decimal("0.1"))


def test_one_order_at_a_time_then_flat_below_the_channel() -> None:
    desk = Desk(KIND, PARAMS)
    [buy] = bars(desk, *CHANNEL, ("104", "101", "103"))
    assert bars(desk, ("106", "103", "105"), first=4) == [], "the buy is still open"
    desk.work(buy.client_order_id)
    desk.fill(buy.client_order_id, "0.1", "103.5")
    assert desk.ctx.position("BTCUSDT") == Decimal("0.1")
    assert bars(desk, ("107", "104", "106"), first=5) == [], "already long"
    [sell] = bars(desk, ("104", "99", "100"), first=6)  # below the lowest low of the last three (101)
    assert (sell.side, sell.quantity, sell.reduce_only) == ("sell", Decimal("0.1"), True)


def test_an_amended_bar_replaces_its_range_and_other_timeframes_are_ignored() -> None:
    desk = Desk(KIND, PARAMS)
    bars(desk, *CHANNEL)
    desk.bar(2 * MINUTE, "100", high="110", low="99")  # the third bar again, amended: highest is now 110
    assert submits(desk.bar(3 * MINUTE, "105", high="106", low="104")) == []
    assert submits(desk.bar(3 * MINUTE + 1000, "200", timeframe="1s")) == []


def test_warm_up_bars_fill_the_channel_without_trading() -> None:
    desk = Desk(KIND, PARAMS)
    assert desk.runner.warmup_wanted() == {"market.bar.1m.mock.BTCUSDT": 3}
    ranges = [*CHANNEL, ("104", "101", "103")]  # the last one breaks out, but it is history
    desk.warm_up([make_bar(i * MINUTE, c, high=h, low=lo) for i, (h, lo, c) in enumerate(ranges)])
    assert desk.sent == []
    [buy] = bars(desk, ("106", "103", "105"), first=4)  # above the warm-up's channel (highest 104)
    assert buy.side == "buy"


def test_a_risk_denial_is_taken_and_the_next_breakout_trades() -> None:
    desk = Desk(KIND, PARAMS)
    [buy] = bars(desk, *CHANNEL, ("104", "101", "103"))
    desk.reject(buy.client_order_id, "max_order_notional: 10.3 > 5")
    assert desk.ctx.open_orders() == []
    [again] = bars(desk, ("106", "103", "105"), first=4)
    assert again.side == "buy"


def test_quantity_is_required() -> None:
    with pytest.raises(StrategyConfigError, match="quantity"):
        Desk(KIND, {"lookback": "3"})


def test_the_example_configuration_loads_it_beside_the_market_maker(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("TRADER_CONFIG", str(EXAMPLE_CONFIG))
    strategies = Settings().strategy.strategies
    assert [(s.name, s.kind) for s in strategies] == [("breakout-btc", KIND), ("mm-eth", "market_maker")]
    runner = build_runner(strategies[0])
    assert runner.warmup_wanted() == {"market.bar.1s.mock.BTCUSDT": 10}
