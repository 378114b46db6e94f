"""market_maker driven with synthetic ticks: quote prices, refresh by move and by age, max position."""

from __future__ import annotations

from decimal import Decimal

import pytest

from trader.messages import OrderRequest
from trader.strategies import StrategyConfigError
from trader.strategies.testing import Desk, cancels, submits

D = Decimal
PARAMS = {"spread_bps": "10", "quantity": "0.5", "max_position": "1", "refresh_s": "5"}


def expected(mid: str, side: str, spread_bps: str = "10") -> Decimal:
    """The quote price from the definition: half the spread (in bps of the mid) off the mid."""
    half = D(mid) * D(spread_bps) / D(10_000) / 2
    return D(mid) - half if side == "buy" else D(mid) + half


def quoted(desk: Desk, bid: str = "2999.9", ask: str = "3000.1") -> dict[str, OrderRequest]:
    """Tick, then the oms works both quotes; the requests by side."""
    made = {r.side: r for r in submits(desk.tick(bid, ask))}
    for request in made.values():
        desk.work(request.client_order_id)
    return made


def test_quotes_both_sides_post_only_around_the_mid() -> None:
    desk = Desk("market_maker", PARAMS)
    made = submits(desk.tick("2999.9", "3000.1"))
    assert sorted(r.side for r in made) == ["buy", "sell"]
    for request in made:
        assert request.type == "limit"
        assert request.post_only
        assert request.tif == "GTC"
        assert request.quantity == D("0.5")
        assert request.price == expected("3000", request.side)
    bid, ask = sorted(made, key=lambda r: r.side)
    assert (bid.price, ask.price) == (D("2998.5"), D("3001.5"))
    assert ask.price - bid.price == D("3000") * D("10") / D(10_000), "the spread is spread_bps of the mid"


def test_a_trade_without_a_book_quotes_around_the_trade_price() -> None:
    desk = Desk("market_maker", PARAMS)
    prices = sorted(r.price for r in submits(desk.trade("200")))
    assert prices == [expected("200", "buy"), expected("200", "sell")]


def test_nothing_is_sent_while_the_quotes_are_in_flight() -> None:
    desk = Desk("market_maker", PARAMS)
    desk.tick("2999.9", "3000.1")
    assert desk.tick("3009.9", "3010.1") == [], "NEW orders are neither duplicated nor replaced"


def test_refreshes_when_the_mid_moves_more_than_half_the_spread() -> None:
    desk = Desk("market_maker", PARAMS)
    made = quoted(desk)
    # Half the spread is 1.5 at 3000: a move of 1.4 keeps the quotes, one of 1.6 replaces both.
    desk.now += 1_000
    assert desk.tick("3001.3", "3001.5") == []
    desk.now += 1_000
    replaced = cancels(desk.tick("3001.5", "3001.7"))
    assert {r.client_order_id for r in replaced} == {r.client_order_id for r in made.values()}
    by_id = {r.client_order_id: r for r in replaced}
    for side, request in made.items():
        replace = by_id[request.client_order_id]
        assert (replace.price, replace.quantity) == (expected("3001.6", side), None)
    # The replace is pending: no second one until the oms answers.
    assert desk.tick("3005.5", "3005.7") == []
    for instruction in [i for i in desk.sent if i.message in replaced]:
        desk.oms_cancel(instruction)
    bid = desk.ctx.order(made["buy"].client_order_id)
    assert bid is not None
    assert (bid.status, bid.price) == ("ACCEPTED", expected("3001.6", "buy"))


def test_refreshes_every_refresh_s_even_when_the_mid_barely_moves() -> None:
    desk = Desk("market_maker", PARAMS)
    quoted(desk)
    desk.now += 4_999
    assert desk.tick("3000.4", "3000.6") == [], "0.5 moved, 4.999 s old: kept"
    desk.now += 1
    replaced = cancels(desk.tick("3000.4", "3000.6"))
    assert sorted(r.price for r in replaced) == [expected("3000.5", "buy"), expected("3000.5", "sell")]


def test_stops_quoting_the_bid_at_max_position_and_cancels_it() -> None:
    desk = Desk("market_maker", PARAMS)
    made = quoted(desk)
    desk.fill(made["buy"].client_order_id, "0.5", "2998.5")
    assert desk.ctx.position("BTCUSDT") == D("0.5")
    # Room for 0.5 more: a new bid of 0.5.
    [bid] = submits(desk.tick("2999.9", "3000.1"))
    assert (bid.side, bid.quantity) == ("buy", D("0.5"))
    desk.work(bid.client_order_id)
    desk.fill(bid.client_order_id, "0.5", "2998.5", report_first=False)
    assert desk.ctx.position("BTCUSDT") == D("1")
    # At max position: no bid, and the ask is still quoted (at most max + position = 2 to sell).
    assert desk.tick("2999.9", "3000.1") == []
    assert [o.side for o in desk.ctx.open_orders()] == ["sell"]


def test_a_working_bid_is_cut_to_the_room_left_and_canceled_at_the_limit() -> None:
    desk = Desk("market_maker", {**PARAMS, "quantity": "0.8"})
    made = quoted(desk)
    desk.fill(made["buy"].client_order_id, "0.4", "2998.5")  # partly filled: 0.4 left, room 0.6
    [resize] = cancels(desk.tick("2999.9", "3000.1"))
    assert (resize.client_order_id, resize.quantity, resize.price) == (
        made["buy"].client_order_id,
        D("1.0"),  # 0.4 filled + 0.6 to go: the bid can bring the position to 1 and no further
        None,
    )
    desk.oms_cancel(desk.sent[-1])
    desk.fill(made["buy"].client_order_id, "0.2", "2998.5")  # position 0.6; the bid has 0.4 left
    assert desk.tick("2999.9", "3000.1") == [], "0.4 left is exactly the room"
    assert desk.ctx.position("BTCUSDT") == D("0.6")
    # A fill of another 0.4 reaches the limit: the bid is done, nothing more is bid.
    desk.fill(made["buy"].client_order_id, "0.4", "2998.5")
    assert desk.ctx.position("BTCUSDT") == D("1.0")
    assert desk.tick("2999.9", "3000.1") == []
    assert [o.side for o in desk.ctx.open_orders()] == ["sell"]


def test_short_side_stops_at_minus_max_position() -> None:
    desk = Desk("market_maker", {**PARAMS, "quantity": "1"})
    made = quoted(desk)
    desk.fill(made["sell"].client_order_id, "1", "3001.5")
    assert desk.ctx.position("BTCUSDT") == D("-1")
    made_now = submits(desk.tick("2999.9", "3000.1"))
    assert made_now == [], "no new ask at -max, and the bid still works"
    [working] = desk.ctx.open_orders()
    assert working.side == "buy"


def test_a_rejected_side_waits_refresh_s_before_quoting_again() -> None:
    desk = Desk("market_maker", PARAMS)
    made = {r.side: r for r in submits(desk.tick("2999.9", "3000.1"))}
    desk.reject(made["buy"].client_order_id, "post-only would cross")
    desk.work(made["sell"].client_order_id)
    desk.now += 4_000
    assert submits(desk.tick("2999.9", "3000.1")) == []
    desk.now += 1_000
    [bid] = submits(desk.tick("2999.9", "3000.1"))
    assert bid.side == "buy"
    assert bid.client_order_id != made["buy"].client_order_id


def test_tick_size_rounds_bids_down_and_asks_up() -> None:
    desk = Desk("market_maker", {**PARAMS, "spread_bps": "7", "tick_size": "0.01"})
    by_side = {r.side: r.price for r in submits(desk.tick("3000.00", "3000.01"))}
    # The exact quotes, 2998.95499825 and 3001.05500175, are not on the 0.01 grid.
    assert by_side == {"buy": D("2998.95"), "sell": D("3001.06")}


def test_on_stop_cancels_the_working_quotes() -> None:
    desk = Desk("market_maker", PARAMS)
    made = quoted(desk)
    stopped = cancels(desk.take(desk.runner.stop()))
    assert {c.client_order_id for c in stopped} == {r.client_order_id for r in made.values()}
    assert all(c.quantity is None and c.price is None for c in stopped)


def test_halted_trading_sends_no_quote() -> None:
    desk = Desk("market_maker", PARAMS)
    desk.halt()
    assert desk.tick("2999.9", "3000.1") == []
    assert desk.ctx.suppressed == 2
    assert desk.ctx.open_orders() == []


@pytest.mark.parametrize(
    ("params", "message"),
    [
        ({"quantity": "1", "max_position": "1"}, "spread_bps"),
        ({**PARAMS, "spread_bps": "0"}, "positive"),
        ({**PARAMS, "spread_bps": "20000"}, "no bid"),
        ({**PARAMS, "refresh_s": "soon"}, "decimal"),
    ],
)
def test_bad_parameters_are_refused_with_the_reason(params: dict[str, str], message: str) -> None:
    with pytest.raises(StrategyConfigError, match=message):
        Desk("market_maker", params)
