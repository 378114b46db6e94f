"""Warm-up: the declaration, the bars picked from history, orders dropped while warming up, and
ma_cross primed by history so that it trades on the first live bar that crosses."""

from __future__ import annotations

from collections.abc import Sequence
from decimal import Decimal

import pytest

from trader.messages import Bar
from trader.strategies import Strategy, Warmup
from trader.strategies.testing import Desk, make_bar, submits
from trader.strategies.warmup import HistoryBar, bars_for, merge_wanted, pick_latest, short_of

D = Decimal
MINUTE = 60_000
PARAMS = {"fast": "2", "slow": "3", "timeframe": "1m", "quantity": "0.1"}
# As in test_ma_cross: a cross up at index 4, down at 6, up at 8.
CLOSES = ["10", "9", "8", "9", "12", "11", "8", "7", "12"]
SUBJECT = "market.bar.1m.mock.BTCUSDT"


class SubmitEveryBar(Strategy):
    """Asks for an order on every bar, and to cancel and replace whatever is open."""

    def warmup(self) -> Sequence[Warmup]:
        return (Warmup("1m", 3),)

    def on_bar(self, bar: Bar) -> None:
        self.last_id = self.ctx.submit("buy", bar.symbol, D("1"))
        self.cancelled = self.ctx.cancel(self.last_id)
        self.replaced = self.ctx.replace(self.last_id, price=D("1"))


class BadDeclaration(Strategy):
    def warmup(self) -> Sequence[Warmup]:
        raise RuntimeError("no idea")


SUBMIT_EVERY_BAR = f"{__name__}:SubmitEveryBar"


bar = make_bar


def history(first: int, last: int) -> list[Bar]:
    """Bars CLOSES[first..last], each starting at its index's minute."""
    return [bar(i * MINUTE, CLOSES[i]) for i in range(first, last + 1)]


# The declaration ---------------------------------------------------------------------------------


def test_ma_cross_wants_slow_bars_of_its_timeframe_for_each_symbol() -> None:
    desk = Desk("ma_cross", {**PARAMS, "timeframe": "5s"}, symbols=("BTCUSDT", "ETHUSDT"))
    assert desk.runner.warmup_wanted() == {"market.bar.5s.mock.BTCUSDT": 3, "market.bar.5s.mock.ETHUSDT": 3}


@pytest.mark.parametrize(("override", "wanted"), [(None, {SUBJECT: 3}), (7, {SUBJECT: 7}), (0, {})])
def test_the_configuration_overrides_the_number_of_bars(override: int | None, wanted: dict[str, int]) -> None:
    desk = Desk("ma_cross", PARAMS)
    desk.runner.strategy.config = desk.config.model_copy(update={"warmup_bars": override})
    assert desk.runner.warmup_wanted() == wanted


def test_a_strategy_without_a_declaration_or_with_a_failing_one_has_no_warm_up() -> None:
    assert (
        Desk(
            "market_maker", {"spread_bps": "10", "quantity": "1", "max_position": "2"}
        ).runner.warmup_wanted()
        == {}
    )
    failing = Desk(f"{__name__}:BadDeclaration", {})
    assert failing.runner.warmup_wanted() == {}
    assert failing.runner.errors == 1


# Orders dropped while warming up -----------------------------------------------------------------


def test_nothing_asked_for_during_the_warm_up_is_sent_and_each_request_is_counted() -> None:
    desk = Desk(SUBMIT_EVERY_BAR, {})
    actions = desk.runner.warm_up(history(0, 2))
    assert not actions
    assert desk.ctx.take_instructions() == []
    assert desk.ctx.warmup_dropped == 9, "three submits, three cancels, three replaces"
    strategy = desk.runner.strategy
    assert isinstance(strategy, SubmitEveryBar)
    assert (strategy.cancelled, strategy.replaced) == (False, False)
    assert desk.ctx.order(strategy.last_id) is None, "a dropped submit leaves no order behind"
    assert desk.ctx.open_orders() == []
    assert desk.ctx.submitted == 0
    assert not desk.ctx.warming_up

    [live] = submits(desk.bar(3 * MINUTE, "9"))
    assert live.client_order_id == strategy.last_id
    assert desk.ctx.submitted == 1


def test_the_warm_up_runs_once_only_after_start_and_shows_in_the_health_details() -> None:
    desk = Desk(SUBMIT_EVERY_BAR, {})
    desk.runner.warm_up(history(0, 2))
    desk.runner.warm_up(history(3, 4))  # a retried start: not fed again
    assert desk.ctx.warmup_dropped == 9
    desk.bar(3 * MINUTE, "9")
    details = desk.runner.describe()
    assert details["warmup"] == {
        "done": True,
        "bars": 3,
        "orders_dropped": 9,
        "last_start": {"1m.BTCUSDT": 2 * MINUTE},
    }
    assert details["live_bars"] == 1

    stopped = Desk(SUBMIT_EVERY_BAR, {})
    stopped.runner.stop()
    assert not stopped.runner.warm_up(history(0, 2))
    assert stopped.runner.warmup_bars == 0


def test_warm_up_bars_of_other_symbols_or_not_closed_are_not_fed() -> None:
    desk = Desk(SUBMIT_EVERY_BAR, {})
    desk.runner.warm_up([bar(0, "1", symbol="ETHUSDT"), bar(0, "1", closed=False), bar(0, "1")])
    assert desk.runner.warmup_bars == 1


# ma_cross primed by history ----------------------------------------------------------------------


def test_ma_cross_trades_on_the_first_live_bar_that_crosses_after_a_warm_up() -> None:
    desk = Desk("ma_cross", PARAMS)
    desk.runner.warm_up(history(1, 3))  # [9 8 9]: fast below slow, known before live data
    assert desk.runner.strategy.describe()["BTCUSDT"]["bars"] == 3
    [buy] = submits(desk.bar(4 * MINUTE, CLOSES[4]))  # [8 9 12]: the cross up, on the first live bar
    assert (buy.side, buy.quantity, buy.reduce_only) == ("buy", D("0.1"), False)
    assert desk.ctx.warmup_dropped == 0


def test_ma_cross_without_warm_up_needs_slow_live_bars_first() -> None:
    desk = Desk("ma_cross", PARAMS)
    assert not submits(desk.bar(4 * MINUTE, CLOSES[4]))


def test_a_cross_within_the_warm_up_bars_sends_nothing_then_or_later() -> None:
    desk = Desk("ma_cross", {**PARAMS, "allow_short": "true"})
    desk.runner.warm_up(history(0, 4))  # the cross up at the 5th close is history
    assert desk.ctx.warmup_dropped == 0, "ma_cross does not even ask"
    state = desk.runner.strategy.describe()["BTCUSDT"]
    assert state["target"] is None
    assert not submits(desk.bar(5 * MINUTE, CLOSES[5])), "still above: the old cross is not traded"
    [sell] = submits(desk.bar(6 * MINUTE, CLOSES[6]))  # the first live cross: down, short allowed
    assert (sell.side, sell.quantity) == ("sell", D("0.1"))


def test_a_live_bar_already_seen_in_the_warm_up_is_not_a_new_close() -> None:
    desk = Desk("ma_cross", PARAMS)
    desk.runner.warm_up(history(1, 3))
    assert not submits(desk.bar(3 * MINUTE, CLOSES[3]))
    assert desk.runner.strategy.describe()["BTCUSDT"]["bars"] == 3


# Picking the bars from history -------------------------------------------------------------------


def stored(seq: int, start: int, close: str, subject: str = SUBJECT, closed: bool = True) -> HistoryBar:
    _, _, timeframe, _venue, symbol = subject.split(".")
    return HistoryBar(seq, subject, bar(start, close, symbol=symbol, timeframe=timeframe, closed=closed))


def test_pick_latest_keeps_the_last_bars_by_start_each_amendment_once_in_its_latest_version() -> None:
    items = [
        stored(1, 0, "1"),
        stored(2, MINUTE, "2"),
        stored(3, 2 * MINUTE, "3"),
        stored(4, 2 * MINUTE, "3.5"),  # an amendment
        stored(5, 3 * MINUTE, "4", closed=False),  # not closed: never fed
        stored(6, 0, "9", subject="market.bar.1m.mock.ETHUSDT"),  # not wanted
    ]
    picked = pick_latest(items, {SUBJECT: 2})
    assert [(i.seq, i.bar.close) for i in picked[SUBJECT]] == [(2, D(2)), (4, D("3.5"))]
    assert set(picked) == {SUBJECT}
    assert short_of({SUBJECT: 2}, picked) == {}
    assert short_of({SUBJECT: 3, "market.bar.1m.mock.ETHUSDT": 1}, picked) == {
        SUBJECT: 3,
        "market.bar.1m.mock.ETHUSDT": 1,
    }


def test_bars_for_gives_each_strategy_its_own_number_in_the_order_they_closed() -> None:
    seconds = "market.bar.1s.mock.BTCUSDT"
    picked = {
        SUBJECT: [stored(10, 0, "1"), stored(20, MINUTE, "2")],
        seconds: [stored(19, 59_000, "3", subject=seconds), stored(21, 60_000, "4", subject=seconds)],
    }
    fed = bars_for({SUBJECT: 1, seconds: 2}, picked)
    # The 1m bar of minute 1 closes at 120 s, after the 1 s bars closing at 60 s and 61 s.
    assert [(b.timeframe, b.start) for b in fed] == [("1s", 59_000), ("1s", 60_000), ("1m", MINUTE)]
    assert merge_wanted([{SUBJECT: 3}, {SUBJECT: 5, seconds: 1}]) == {SUBJECT: 5, seconds: 1}
