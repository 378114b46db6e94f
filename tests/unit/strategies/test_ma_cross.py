"""ma_cross driven with synthetic bars: the order at the crossing bar, one in flight, rejections, halts."""

from __future__ import annotations

from decimal import Decimal

import pytest

from trader.strategies import StrategyConfigError
from trader.strategies.testing import Desk, submits

D = Decimal
MINUTE = 60_000
PARAMS = {"fast": "2", "slow": "3", "timeframe": "1m", "quantity": "0.1"}
# fast (2) and slow (3) averages after each close, from the third on:
#   [10 9 8] 8.5<9  | [9 8 9] 8.5<8.67 | [8 9 12] 10.5>9.67 UP | [9 12 11] 11.5>10.67
#   [12 11 8] 9.5<10.33 DOWN | [11 8 7] 7.5<8.67 | [8 7 12] 9.5>9 UP
CLOSES = ["10", "9", "8", "9", "12", "11", "8", "7", "12"]
CROSS_UP, CROSS_DOWN, CROSS_UP_AGAIN = 4, 6, 8


def feed(desk: Desk, first: int, last: int, symbol: str = "BTCUSDT") -> dict[int, list]:
    """Bars CLOSES[first..last]; the orders each one made, by index."""
    return {i: submits(desk.bar(i * MINUTE, CLOSES[i], symbol)) for i in range(first, last + 1)}


def test_goes_long_at_the_crossing_bar_and_flat_at_the_next_cross() -> None:
    desk = Desk("ma_cross", PARAMS)
    made = feed(desk, 0, CROSS_UP)
    assert all(not made[i] for i in range(CROSS_UP)), "no order before the averages cross"
    [buy] = made[CROSS_UP]
    assert (buy.side, buy.symbol, buy.type, buy.quantity, buy.reduce_only) == (
        "buy",
        "BTCUSDT",
        "market",
        D("0.1"),
        False,
    )
    assert isinstance(buy.quantity, Decimal)
    assert buy.client_order_id.startswith("s1-")
    assert buy.strategy == "s1"
    assert buy.account == "paper"
    assert desk.sent[-1].msg_id == buy.client_order_id

    desk.work(buy.client_order_id)
    desk.fill(buy.client_order_id, "0.1", "12")
    assert desk.ctx.position("BTCUSDT") == D("0.1")
    assert not submits(desk.bar(5 * MINUTE, CLOSES[5])), "still above: the target is already held"
    [sell] = submits(desk.bar(6 * MINUTE, CLOSES[6]))
    assert (sell.side, sell.quantity, sell.reduce_only) == ("sell", D("0.1"), True)


def test_allow_short_flips_to_short_with_one_order() -> None:
    desk = Desk("ma_cross", {**PARAMS, "allow_short": "true"})
    [buy] = feed(desk, 0, CROSS_UP)[CROSS_UP]
    desk.work(buy.client_order_id)
    desk.fill(buy.client_order_id, "0.1", "12")
    made = feed(desk, CROSS_UP + 1, CROSS_DOWN)
    [sell] = made[CROSS_DOWN]
    assert (sell.side, sell.quantity, sell.reduce_only) == ("sell", D("0.2"), False)


def test_never_more_than_one_order_in_flight_per_symbol() -> None:
    desk = Desk("ma_cross", PARAMS)
    [buy] = feed(desk, 0, CROSS_UP)[CROSS_UP]
    # The buy has no state yet: the cross down and the bar after it send nothing.
    made = feed(desk, CROSS_UP + 1, 7)
    assert not any(made.values())
    assert [o.client_order_id for o in desk.ctx.open_orders("BTCUSDT")] == [buy.client_order_id]
    # Filled: the next bar brings the position to the target of the last cross (flat).
    desk.work(buy.client_order_id)
    desk.fill(buy.client_order_id, "0.1", "9")
    [sell] = submits(desk.bar(8 * MINUTE, "7.5"))
    assert (sell.side, sell.quantity) == ("sell", D("0.1"))


def test_a_fill_confirmed_by_the_oms_counts_before_its_report_arrives() -> None:
    desk = Desk("ma_cross", PARAMS)
    [buy] = feed(desk, 0, CROSS_UP)[CROSS_UP]
    desk.work(buy.client_order_id)
    report = desk.report(buy.client_order_id, "fill", last_quantity=D("0.1"), last_price=D("12"))
    desk.publish(desk.book.apply_report(report))  # FILLED state; the report itself is still on its way
    assert desk.ctx.position("BTCUSDT") == D("0.1")
    assert not submits(desk.bar(5 * MINUTE, CLOSES[5])), "a second buy would double the position"
    desk.take(desk.runner.on_fill(report))
    assert desk.ctx.position("BTCUSDT") == D("0.1"), "the late report is not counted twice"


def test_a_rejection_stops_the_symbol_until_the_next_cross() -> None:
    desk = Desk("ma_cross", PARAMS)
    [buy] = feed(desk, 0, CROSS_UP)[CROSS_UP]
    desk.reject(buy.client_order_id, "max position 0.05 exceeded")
    assert desk.ctx.open_orders() == []
    assert desk.runner.strategy.describe()["BTCUSDT"]["blocked"] == "max position 0.05 exceeded"
    made = feed(desk, CROSS_UP + 1, 7)
    assert not any(made.values()), "the denied buy is not retried, and flat is already held"
    [again] = submits(desk.bar(8 * MINUTE, CLOSES[CROSS_UP_AGAIN]))
    assert again.side == "buy"
    assert again.client_order_id != buy.client_order_id


def test_halted_trading_sends_nothing_and_tells_the_strategy() -> None:
    desk = Desk("ma_cross", PARAMS)
    feed(desk, 0, CROSS_UP - 1)
    desk.halt("daily loss")
    assert desk.bar(CROSS_UP * MINUTE, CLOSES[CROSS_UP]) == []
    assert desk.ctx.suppressed == 1
    assert desk.ctx.open_orders() == []
    rejection = desk.ctx.last_rejection
    assert rejection is not None
    assert rejection.status == "REJECTED"
    assert "halted" in (rejection.reason or "")
    assert "daily loss" in (rejection.reason or "")
    assert desk.runner.strategy.describe()["BTCUSDT"]["blocked"] == rejection.reason


def test_only_closed_bars_of_its_timeframe_and_symbols_count() -> None:
    desk = Desk("ma_cross", PARAMS, symbols=("BTCUSDT", "ETHUSDT"))
    for i in range(CROSS_UP):
        desk.bar(i * MINUTE, CLOSES[i])
    assert desk.bar(CROSS_UP * MINUTE, CLOSES[CROSS_UP], timeframe="1s") == []
    assert desk.bar(CROSS_UP * MINUTE, CLOSES[CROSS_UP], closed=False) == []
    assert desk.bar(CROSS_UP * MINUTE, CLOSES[CROSS_UP], symbol="SOLUSDT") == []
    assert desk.runner.strategy.describe()["BTCUSDT"]["bars"] == 3
    # Each symbol has its own averages: ETHUSDT has seen no bar.
    assert desk.runner.strategy.describe()["ETHUSDT"]["bars"] == 0
    assert len(submits(desk.bar(CROSS_UP * MINUTE, CLOSES[CROSS_UP]))) == 1


def test_an_amended_bar_corrects_the_close_without_a_decision() -> None:
    desk = Desk("ma_cross", PARAMS)
    feed(desk, 0, CROSS_UP - 1)
    # The last bar comes again amended: no order, and the next bar's averages use the amended close.
    assert desk.bar((CROSS_UP - 1) * MINUTE, "5") == []
    assert desk.bar((CROSS_UP - 2) * MINUTE, "100") == [], "an older bar changes nothing"
    # [9 8 5] then 12: fast (5+12)/2 = 8.5 > slow (8+5+12)/3 = 8.33: still a cross up.
    [buy] = submits(desk.bar(CROSS_UP * MINUTE, CLOSES[CROSS_UP]))
    state = desk.runner.strategy.describe()["BTCUSDT"]
    assert (D(state["fast_ma"]), D(state["slow_ma"])) == (D("8.5"), D(25) / 3)
    assert buy.side == "buy"


@pytest.mark.parametrize(
    ("params", "message"),
    [
        ({"fast": "2", "slow": "3"}, "quantity"),
        ({**PARAMS, "fast": "3"}, "must be below"),
        ({**PARAMS, "quantity": "-1"}, "positive"),
        ({**PARAMS, "quantity": "lots"}, "not a decimal"),
        ({**PARAMS, "timeframe": "7m"}, "timeframe"),
        ({**PARAMS, "allow_short": "maybe"}, "true or false"),
    ],
)
def test_bad_parameters_are_refused_with_the_reason(params: dict[str, str], message: str) -> None:
    with pytest.raises(StrategyConfigError, match=message):
        Desk("ma_cross", params)
