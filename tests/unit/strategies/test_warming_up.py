"""A strategy that has not had the bars it declares yet says so: "warming up: 7 of 20 bars of 1m", in
its description (the strategy service's /health and `trader status`) and in the log, until it has them,
from the warm-up history and live bars together."""

from __future__ import annotations

from structlog.testing import capture_logs

from trader.config import StrategySettings
from trader.marketdata.bars import timeframe_ms
from trader.strategies.testing import MINUTE, Desk, make_bar, submits

PARAMS = {"fast": "2", "slow": "4", "timeframe": "1m", "quantity": "0.1"}


def test_counts_live_bars_up_to_what_it_declares() -> None:
    desk = Desk("ma_cross", PARAMS)
    desk.warm_up([])  # a first start: no history
    assert desk.runner.warming_up() == "warming up: 0 of 4 bars of 1m"
    for minute in range(3):
        desk.bar(minute * MINUTE, "100")
    assert desk.runner.warming_up() == "warming up: 3 of 4 bars of 1m"
    assert desk.runner.describe()["warming_up"] == "warming up: 3 of 4 bars of 1m"
    desk.bar(3 * MINUTE, "100")
    assert desk.runner.warming_up() is None
    assert desk.runner.describe()["warming_up"] is None


def test_history_counts_and_an_amended_bar_or_another_timeframe_does_not() -> None:
    desk = Desk("ma_cross", PARAMS)
    desk.warm_up([make_bar(0, "100"), make_bar(MINUTE, "101")])
    assert desk.runner.warming_up() == "warming up: 2 of 4 bars of 1m"
    desk.bar(MINUTE, "102")  # the last one again, amended
    desk.bar(2 * MINUTE, "100", timeframe="1s")
    assert desk.runner.warming_up() == "warming up: 2 of 4 bars of 1m"


def test_the_symbol_furthest_behind_is_named_when_there_are_several() -> None:
    desk = Desk("ma_cross", PARAMS, symbols=("BTCUSDT", "ETHUSDT"))
    desk.warm_up(
        [make_bar(0, "100", "BTCUSDT"), make_bar(MINUTE, "100", "BTCUSDT"), make_bar(0, "9", "ETHUSDT")]
    )
    assert desk.runner.warming_up() == "warming up: 1 of 4 bars of 1m (ETHUSDT)"


def test_a_strategy_that_declares_no_warm_up_is_never_warming_up() -> None:
    params = {"spread_bps": "10", "quantity": "0.1", "max_position": "1", "refresh_s": "5"}
    desk = Desk("market_maker", params, symbols=("ETHUSDT",))
    assert desk.runner.warming_up() is None


def test_the_log_says_how_far_it_is_then_that_it_is_done() -> None:
    desk = Desk("ma_cross", PARAMS)
    with capture_logs() as logs:
        desk.warm_up([make_bar(0, "100"), make_bar(MINUTE, "101")])
        for minute in range(2, 5):
            desk.bar(minute * MINUTE, "100")
    said = [(e["event"], e.get("progress")) for e in logs if e["event"].startswith("strategy.warm")]
    assert said == [
        ("strategy.warming_up", "warming up: 2 of 4 bars of 1m"),
        ("strategy.warming_up", "warming up: 3 of 4 bars of 1m"),
        ("strategy.warm_up_complete", None),
    ]


def test_the_default_crossover_decides_within_a_minute_of_bars() -> None:
    """Its slow average is full after fewer than 60 s of bars: it can trade at the first cross after."""
    [cross] = [s for s in StrategySettings().strategies if s.kind == "ma_cross"]
    assert int(cross.params["slow"]) * timeframe_ms(cross.params["timeframe"]) < 60_000
    desk = Desk(cross.kind, cross.params, symbols=tuple(cross.symbols))
    step = timeframe_ms(cross.params["timeframe"])
    closes = ["100"] * int(cross.params["slow"]) + ["90", "120", "125"]  # below, then a cross up
    orders = [
        submits(desk.bar(i * step, close, timeframe=cross.params["timeframe"]))
        for i, close in enumerate(closes)
    ]
    first = next(i for i, made in enumerate(orders) if made)
    assert first * step < 60_000
    assert orders[first][0].side == "buy"
