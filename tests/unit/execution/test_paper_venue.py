from __future__ import annotations

from decimal import Decimal as D

import pytest

from trader.execution.venues import VENUES, PaperVenue, PaperVenueSettings, venue_class
from trader.execution.venues.paper import POST_ONLY_REASON
from trader.messages import ExecutionReport, MarketTick, VenueOrder

T0 = 1_732_406_400_000
SYMBOL = "BTCUSDT"


def tick(
    price: str,
    bid: str | None = None,
    ask: str | None = None,
    *,
    size: str = "10",
    ts: int = T0,
    symbol: str = SYMBOL,
    venue: str = "mock",
) -> MarketTick:
    return MarketTick(
        timestamp=ts,
        exchange=venue,
        venue=venue,
        symbol=symbol,
        price=D(price),
        size=D(size),
        volume=D(size),
        bid=None if bid is None else D(bid),
        ask=None if ask is None else D(ask),
    )


def order(
    vcid: str = "o1",
    side: str = "buy",
    quantity: str = "1",
    *,
    type: str = "market",
    price: str | None = None,
    stop: str | None = None,
    tif: str = "GTC",
    post_only: bool = False,
    action: str = "new",
    ts: int = 0,
    symbol: str = SYMBOL,
) -> VenueOrder:
    return VenueOrder(
        action=action,  # type: ignore[arg-type]
        client_order_id=vcid.split(".")[0],
        venue_client_id=vcid,
        strategy="s1",
        account="paper",
        venue="paper",
        symbol=symbol,
        side=side,  # type: ignore[arg-type]
        quantity=D(quantity),
        type=type,  # type: ignore[arg-type]
        price=None if price is None else D(price),
        stop_price=None if stop is None else D(stop),
        tif=tif,  # type: ignore[arg-type]
        post_only=post_only,
        timestamp=ts,
    )


def paper(**settings: object) -> PaperVenue:
    defaults: dict[str, object] = {"maker_fee_bps": D("1"), "taker_fee_bps": D("10")}
    return PaperVenue(PaperVenueSettings(**{**defaults, **settings}))


def kinds(reports: list[ExecutionReport]) -> list[str]:
    return [r.kind for r in reports]


def fills(reports: list[ExecutionReport]) -> list[tuple[D, D | None, str | None]]:
    return [(r.last_quantity, r.last_price, r.liquidity) for r in reports if r.kind == "fill"]


# Market orders ----------------------------------------------------------------------------------


async def test_market_buy_fills_at_the_ask_with_the_taker_fee() -> None:
    venue = paper()
    venue.on_tick(tick("100.5", "100", "101"))
    reports = await venue.submit(order(quantity="2"))
    assert kinds(reports) == ["accepted", "fill"]
    fill = reports[1]
    assert (fill.last_quantity, fill.last_price, fill.liquidity) == (D("2"), D("101"), "taker")
    assert fill.fee == D("0.202")  # 2 * 101 * 10 bps
    assert fill.venue_order_id == "paper-1"
    assert fill.venue_client_id == "o1"
    assert fill.client_order_id == "o1"
    assert fill.timestamp == T0
    assert [r.exec_id for r in reports] == ["paper:o1:1", "paper:o1:2"]
    assert await venue.open_orders() == []


async def test_market_sell_fills_at_the_bid() -> None:
    venue = paper()
    venue.on_tick(tick("100.5", "100", "101"))
    reports = await venue.submit(order(side="sell", quantity="0.5"))
    assert fills(reports) == [(D("0.5"), D("100"), "taker")]
    assert reports[1].fee == D("0.05")


@pytest.mark.parametrize(("side", "expected"), [("buy", D("101.0505")), ("sell", D("99.95"))])
async def test_slippage_moves_the_price_against_the_taker(side: str, expected: D) -> None:
    venue = paper(slippage_bps=D("5"))
    venue.on_tick(tick("100.5", "100", "101"))
    reports = await venue.submit(order(side=side))
    assert fills(reports) == [(D("1"), expected, "taker")]
    assert reports[1].fee == expected * D("0.001")


async def test_market_order_without_a_quote_is_rejected() -> None:
    venue = paper()
    reports = await venue.submit(order())
    assert kinds(reports) == ["rejected"]
    assert reports[0].reason == f"no quote for {SYMBOL}"
    assert reports[0].venue_order_id is not None
    # A trade without a quote is not a quote either.
    venue.on_tick(tick("100"))
    assert kinds(await venue.submit(order("o2"))) == ["rejected"]


async def test_market_order_on_another_symbol_has_no_quote() -> None:
    venue = paper()
    venue.on_tick(tick("100", "99", "101", symbol="ETHUSDT"))
    assert kinds(await venue.submit(order())) == ["rejected"]


# Limit orders -----------------------------------------------------------------------------------


async def test_marketable_limit_takes_at_the_better_of_quote_and_limit() -> None:
    venue = paper()
    venue.on_tick(tick("100.5", "100", "101"))
    buy = await venue.submit(order("b", type="limit", price="102"))
    sell = await venue.submit(order("s", side="sell", type="limit", price="99"))
    assert fills(buy) == [(D("1"), D("101"), "taker")]
    assert fills(sell) == [(D("1"), D("100"), "taker")]


async def test_slippage_never_takes_a_limit_past_its_price() -> None:
    venue = paper(slippage_bps=D("200"))
    venue.on_tick(tick("100.5", "100", "101"))
    capped = await venue.submit(order("b1", type="limit", price="102"))
    free = await venue.submit(order("b2", type="limit", price="104"))
    assert fills(capped) == [(D("1"), D("102"), "taker")]  # 101 * 1.02 = 103.02 > 102
    assert fills(free) == [(D("1"), D("103.02"), "taker")]


async def test_resting_limit_fills_as_maker_when_the_quote_crosses_it() -> None:
    venue = paper()
    venue.on_tick(tick("100.5", "100", "101"))
    assert kinds(await venue.submit(order(type="limit", price="100.2"))) == ["accepted"]
    assert [o.venue_client_id for o in await venue.open_orders()] == ["o1"]
    assert venue.on_tick(tick("100.4", "100.1", "100.3", ts=T0 + 1)) == []
    reports = venue.on_tick(tick("100.1", "99.9", "100.2", ts=T0 + 2))
    assert fills(reports) == [(D("1"), D("100.2"), "maker")]
    assert reports[0].fee == D("0.01002")  # 100.2 * 1 bps
    assert reports[0].timestamp == T0 + 2
    assert await venue.open_orders() == []


async def test_resting_limit_fills_when_a_trade_prints_through_it() -> None:
    venue = paper()
    venue.on_tick(tick("100.5", "100", "101"))
    await venue.submit(order(side="sell", type="limit", price="102"))
    assert venue.on_tick(tick("102", ts=T0 + 1)) == []  # at the limit: the queue ahead may have taken it
    reports = venue.on_tick(tick("102.5", ts=T0 + 2))
    assert fills(reports) == [(D("1"), D("102"), "maker")]


async def test_maker_rebate_is_a_negative_fee() -> None:
    venue = paper(maker_fee_bps=D("-2.5"))
    venue.on_tick(tick("100.5", "100", "101"))
    await venue.submit(order(type="limit", price="100", quantity="4"))
    reports = venue.on_tick(tick("99.5", "99", "99.8", ts=T0 + 1))
    assert reports[0].fee == D("-0.1")  # 4 * 100 * -2.5 bps


async def test_limit_without_a_quote_rests_until_one_crosses_it() -> None:
    venue = paper()
    assert kinds(await venue.submit(order(type="limit", price="100"))) == ["accepted"]
    reports = venue.on_tick(tick("99.9", "99.8", "99.9"))
    assert fills(reports) == [(D("1"), D("100"), "maker")]


async def test_limit_without_a_price_is_rejected() -> None:
    venue = paper()
    reports = await venue.submit(order(type="limit"))
    assert kinds(reports) == ["rejected"]
    assert "price" in (reports[0].reason or "")


# Stops ------------------------------------------------------------------------------------------


async def test_buy_stop_market_triggers_on_the_last_trade_reaching_the_stop() -> None:
    venue = paper()
    venue.on_tick(tick("100", "99.9", "100.1"))
    assert kinds(await venue.submit(order(type="stop_market", stop="105"))) == ["accepted"]
    assert venue.on_tick(tick("104.9", "104.8", "105.2", ts=T0 + 1)) == []  # the ask is past, the trade not
    reports = venue.on_tick(tick("105", "104.9", "105.5", ts=T0 + 2))
    assert fills(reports) == [(D("1"), D("105.5"), "taker")]


async def test_sell_stop_market_triggers_below() -> None:
    venue = paper()
    venue.on_tick(tick("100", "99.9", "100.1"))
    await venue.submit(order(side="sell", type="stop_market", stop="95"))
    assert venue.on_tick(tick("95.1", "95", "95.2", ts=T0 + 1)) == []
    reports = venue.on_tick(tick("94.9", "94.5", "95", ts=T0 + 2))
    assert fills(reports) == [(D("1"), D("94.5"), "taker")]


async def test_stop_limit_rests_at_its_limit_after_the_trigger() -> None:
    venue = paper()
    venue.on_tick(tick("100", "99.9", "100.1"))
    await venue.submit(order(side="sell", type="stop_limit", stop="95", price="94.5"))
    # Triggered, but the bid (94) is below the limit: it rests at 94.5.
    assert venue.on_tick(tick("95", "94", "95.1", ts=T0 + 1)) == []
    reports = venue.on_tick(tick("94.4", "94.6", "94.8", ts=T0 + 2))
    assert fills(reports) == [(D("1"), D("94.5"), "maker")]


async def test_stop_limit_marketable_at_the_trigger_takes() -> None:
    venue = paper()
    venue.on_tick(tick("100", "99.9", "100.1"))
    await venue.submit(order(side="sell", type="stop_limit", stop="95", price="94.5"))
    reports = venue.on_tick(tick("95", "94.8", "95.1", ts=T0 + 1))
    assert fills(reports) == [(D("1"), D("94.8"), "taker")]


async def test_stop_already_through_on_arrival_triggers_at_once() -> None:
    venue = paper()
    venue.on_tick(tick("106", "105.9", "106.1"))
    reports = await venue.submit(order(type="stop_market", stop="105"))
    assert fills(reports) == [(D("1"), D("106.1"), "taker")]


async def test_stop_without_stop_price_is_rejected() -> None:
    venue = paper()
    venue.on_tick(tick("100", "99.9", "100.1"))
    assert kinds(await venue.submit(order(type="stop_market"))) == ["rejected"]


# Time in force and post-only --------------------------------------------------------------------


async def test_ioc_fills_what_is_available_and_expires_the_rest() -> None:
    venue = paper()
    venue.on_tick(tick("100.5", "100", "101", size="1.5"))
    reports = await venue.submit(order(quantity="4", tif="IOC"))
    assert kinds(reports) == ["accepted", "fill", "expired"]
    assert fills(reports) == [(D("1.5"), D("101"), "taker")]
    assert "IOC" in (reports[2].reason or "")
    assert await venue.open_orders() == []


async def test_ioc_limit_not_marketable_expires_unfilled() -> None:
    venue = paper()
    venue.on_tick(tick("100.5", "100", "101"))
    reports = await venue.submit(order(type="limit", price="100.5", tif="IOC"))
    assert kinds(reports) == ["accepted", "expired"]


async def test_fok_fills_all_or_nothing() -> None:
    venue = paper()
    venue.on_tick(tick("100.5", "100", "101", size="2"))
    short = await venue.submit(order("f1", quantity="2.5", tif="FOK"))
    assert kinds(short) == ["accepted", "expired"]
    assert "FOK" in (short[1].reason or "")
    whole = await venue.submit(order("f2", quantity="2", tif="FOK"))
    assert fills(whole) == [(D("2"), D("101"), "taker")]
    assert kinds(whole) == ["accepted", "fill"]


async def test_fok_limit_not_marketable_expires() -> None:
    venue = paper()
    venue.on_tick(tick("100.5", "100", "101"))
    assert kinds(await venue.submit(order(type="limit", price="100", tif="FOK"))) == ["accepted", "expired"]


async def test_post_only_that_would_take_is_rejected_with_reason() -> None:
    venue = paper()
    venue.on_tick(tick("100.5", "100", "101"))
    reports = await venue.submit(order(type="limit", price="101", post_only=True))
    assert kinds(reports) == ["rejected"]
    assert reports[0].reason == POST_ONLY_REASON
    assert await venue.open_orders() == []


async def test_post_only_that_rests_fills_as_maker() -> None:
    venue = paper()
    venue.on_tick(tick("100.5", "100", "101"))
    assert kinds(await venue.submit(order(type="limit", price="100.9", post_only=True))) == ["accepted"]
    reports = venue.on_tick(tick("100.8", "100.7", "100.8", ts=T0 + 1))
    assert fills(reports) == [(D("1"), D("100.9"), "maker")]


async def test_post_only_stop_limit_that_would_take_at_trigger_expires() -> None:
    venue = paper()
    venue.on_tick(tick("100", "99.9", "100.1"))
    accepted = await venue.submit(order(type="stop_limit", stop="101", price="102", post_only=True))
    assert kinds(accepted) == ["accepted"]
    reports = venue.on_tick(tick("101", "100.9", "101.1", ts=T0 + 1))
    assert kinds(reports) == ["expired"]
    assert reports[0].reason == POST_ONLY_REASON


# Partial fills ----------------------------------------------------------------------------------


async def test_gtc_market_partially_fills_then_completes_on_later_ticks() -> None:
    venue = paper()
    venue.on_tick(tick("100.5", "100", "101", size="1"))
    first = await venue.submit(order(quantity="2.5"))
    assert fills(first) == [(D("1"), D("101"), "taker")]
    assert [o.venue_client_id for o in await venue.open_orders()] == ["o1"]
    second = venue.on_tick(tick("101.5", "101", "102", size="1", ts=T0 + 1))
    assert fills(second) == [(D("1"), D("102"), "taker")]
    third = venue.on_tick(tick("102.5", "102", "103", size="4", ts=T0 + 2))
    assert fills(third) == [(D("0.5"), D("103"), "taker")]
    assert await venue.open_orders() == []
    assert venue.on_tick(tick("102.5", "102", "103", ts=T0 + 3)) == []


async def test_marketable_limit_partial_rest_joins_the_book_as_maker() -> None:
    venue = paper()
    venue.on_tick(tick("100.5", "100", "101", size="1"))
    first = await venue.submit(order(quantity="3", type="limit", price="101"))
    assert fills(first) == [(D("1"), D("101"), "taker")]
    assert venue.on_tick(tick("101.5", "101.2", "101.6", ts=T0 + 1)) == []
    second = venue.on_tick(tick("100.9", "100.8", "101", size="1.5", ts=T0 + 2))
    assert fills(second) == [(D("1.5"), D("101"), "maker")]
    third = venue.on_tick(tick("100.5", "100.4", "100.6", size="5", ts=T0 + 3))
    assert fills(third) == [(D("0.5"), D("101"), "maker")]
    assert await venue.open_orders() == []


async def test_orders_on_one_tick_share_its_size_in_time_priority() -> None:
    venue = paper()
    venue.on_tick(tick("100.5", "100", "101"))
    await venue.submit(order("a", type="limit", price="100", quantity="2"))
    await venue.submit(order("b", type="limit", price="100", quantity="2"))
    reports = venue.on_tick(tick("99.5", "99", "99.5", size="3", ts=T0 + 1))
    assert [(r.venue_client_id, r.last_quantity) for r in reports] == [("a", D("2")), ("b", D("1"))]


async def test_taken_size_is_gone_for_the_next_order_on_the_same_tick() -> None:
    venue = paper()
    venue.on_tick(tick("100.5", "100", "101", size="1"))
    assert fills(await venue.submit(order("a", quantity="0.75"))) == [(D("0.75"), D("101"), "taker")]
    assert fills(await venue.submit(order("b", quantity="0.75"))) == [(D("0.25"), D("101"), "taker")]


# Latency ----------------------------------------------------------------------------------------


async def test_latency_fills_on_the_quote_at_submit_plus_latency() -> None:
    venue = paper(latency_ms=50)
    venue.on_tick(tick("100.5", "100", "101"))
    assert await venue.submit(order(ts=T0 + 10)) == []
    assert venue.on_tick(tick("101", "100.5", "101.5", ts=T0 + 59)) == []
    reports = venue.on_tick(tick("102", "101.5", "102.5", ts=T0 + 60))
    assert kinds(reports) == ["accepted", "fill"]
    assert fills(reports) == [(D("1"), D("102.5"), "taker")]
    assert all(r.timestamp == T0 + 60 for r in reports)


async def test_latency_without_order_time_counts_from_the_latest_tick() -> None:
    venue = paper(latency_ms=100)
    venue.on_tick(tick("100.5", "100", "101", ts=T0))
    await venue.submit(order(type="limit", price="101.5"))
    assert venue.on_tick(tick("100.5", "100", "101", ts=T0 + 99)) == []
    assert fills(venue.on_tick(tick("100.5", "100", "101", ts=T0 + 100))) == [(D("1"), D("101"), "taker")]


async def test_order_in_flight_can_be_canceled() -> None:
    venue = paper(latency_ms=50)
    venue.on_tick(tick("100.5", "100", "101"))
    await venue.submit(order())
    assert kinds(await venue.cancel(order(action="cancel"))) == ["canceled"]
    assert venue.on_tick(tick("100.5", "100", "101", ts=T0 + 100)) == []


# Cancel -----------------------------------------------------------------------------------------


async def test_cancel_resting_then_again_then_unknown() -> None:
    venue = paper()
    venue.on_tick(tick("100.5", "100", "101"))
    accepted = await venue.submit(order(type="limit", price="99"))
    canceled = await venue.cancel(order(action="cancel"))
    assert kinds(canceled) == ["canceled"]
    assert canceled[0].venue_order_id == accepted[0].venue_order_id
    assert await venue.open_orders() == []
    assert venue.on_tick(tick("98", "97.5", "98", ts=T0 + 1)) == []  # canceled: no fill

    again = await venue.cancel(order(action="cancel"))
    assert kinds(again) == ["rejected"]
    assert again[0].reason == "cancel rejected: order o1 is already canceled"

    unknown = await venue.submit(order("nope", action="cancel"))  # submit routes cancels too
    assert kinds(unknown) == ["rejected"]
    assert unknown[0].reason == "cancel rejected: unknown order nope"


async def test_cancel_of_a_filled_order_is_rejected() -> None:
    venue = paper()
    venue.on_tick(tick("100.5", "100", "101"))
    await venue.submit(order())
    reports = await venue.cancel(order(action="cancel"))
    assert kinds(reports) == ["rejected"]
    assert reports[0].reason == "cancel rejected: order o1 is already filled"


# Cancel-replace ---------------------------------------------------------------------------------


def replace(vcid: str = "o1", quantity: str = "1", price: str | None = None, **fields: object) -> VenueOrder:
    """A replace as the oms sends it: the new total quantity and the new limit price."""
    return order(vcid, quantity=quantity, type="limit", price=price, action="replace", **fields)  # type: ignore[arg-type]


async def test_replace_moves_a_resting_limit_to_its_new_price() -> None:
    venue = paper()
    venue.on_tick(tick("100.5", "100", "101"))
    accepted = await venue.submit(order(type="limit", price="99"))
    reports = await venue.replace(replace(price="99.5"))
    assert kinds(reports) == ["replaced"]
    assert (reports[0].last_quantity, reports[0].last_price) == (D("1"), D("99.5"))
    assert reports[0].venue_order_id == accepted[0].venue_order_id
    assert [(o.quantity, o.price) for o in await venue.open_orders()] == [(D("1"), D("99.5"))]
    # A trade through the old price but not the new one: nothing; through the new one: a maker fill.
    assert venue.on_tick(tick("99.7", "99.6", "99.8", ts=T0 + 1)) == []
    filled = venue.on_tick(tick("99.4", "99.3", "99.5", ts=T0 + 2))
    assert fills(filled) == [(D("1"), D("99.5"), "maker")]


async def test_replace_changes_the_quantity_and_keeps_what_filled() -> None:
    venue = paper()
    venue.on_tick(tick("100.5", "100", "101"))
    await venue.submit(order(type="limit", price="99", quantity="3"))
    assert fills(venue.on_tick(tick("98.9", size="1", ts=T0 + 1))) == [(D("1"), D("99"), "maker")]
    reports = await venue.replace(replace(quantity="5", price="99"))
    assert kinds(reports) == ["replaced"]
    assert (reports[0].last_quantity, reports[0].last_price) == (D("5"), D("99"))
    # 5 in all, 1 filled: 4 left, which a large trade through the price fills at once.
    assert fills(venue.on_tick(tick("98.9", size="10", ts=T0 + 2))) == [(D("4"), D("99"), "maker")]
    assert await venue.open_orders() == []
    # Down to less than asked at first, above what filled: the smaller rest fills.
    await venue.submit(order("o2", type="limit", price="99", quantity="3"))
    venue.on_tick(tick("98.9", size="1", ts=T0 + 3))
    assert kinds(await venue.replace(replace("o2", quantity="1.5"))) == ["replaced"]
    assert fills(venue.on_tick(tick("98.9", size="10", ts=T0 + 4))) == [(D("0.5"), D("99"), "maker")]


async def test_a_replace_that_makes_the_order_marketable_takes_at_once() -> None:
    venue = paper()
    venue.on_tick(tick("100.5", "100", "101", size="0.6"))
    await venue.submit(order(type="limit", price="99"))
    reports = await venue.replace(replace(price="101.5"))
    assert kinds(reports) == ["replaced", "fill"]
    # The touch (101, better than the limit) for what the tick has; the rest rests at 101.5 as maker.
    assert fills(reports) == [(D("0.6"), D("101"), "taker")]
    assert [(o.quantity, o.price) for o in await venue.open_orders()] == [(D("1"), D("101.5"))]
    assert fills(venue.on_tick(tick("101.2", "101", "101.4", ts=T0 + 1))) == [(D("0.4"), D("101.5"), "maker")]


async def test_a_post_only_replace_that_would_take_is_rejected_and_the_order_stays() -> None:
    venue = paper()
    venue.on_tick(tick("100.5", "100", "101"))
    await venue.submit(order(type="limit", price="99", post_only=True))
    reports = await venue.replace(replace(price="101", post_only=True))
    assert kinds(reports) == ["rejected"]
    assert reports[0].reason == f"replace rejected: {POST_ONLY_REASON}"
    assert [(o.quantity, o.price) for o in await venue.open_orders()] == [(D("1"), D("99"))]
    # A post-only replace that still rests is fine.
    assert kinds(await venue.replace(replace(price="100.5", post_only=True))) == ["replaced"]


async def test_a_replace_not_above_what_filled_is_rejected() -> None:
    venue = paper()
    venue.on_tick(tick("100.5", "100", "101"))
    await venue.submit(order(type="limit", price="99", quantity="3"))
    venue.on_tick(tick("98.9", size="2", ts=T0 + 1))
    for quantity in ("2", "1.5"):
        reports = await venue.replace(replace(quantity=quantity, price="99"))
        assert kinds(reports) == ["rejected"]
        assert reports[0].reason == f"replace rejected: quantity {quantity} is not above filled 2"
    assert [(o.quantity, o.price) for o in await venue.open_orders()] == [(D("3"), D("99"))]


async def test_replace_of_an_unknown_or_finished_order_is_rejected() -> None:
    venue = paper()
    venue.on_tick(tick("100.5", "100", "101"))
    unknown = await venue.submit(replace("nope", price="99"))  # submit routes replaces too
    assert kinds(unknown) == ["rejected"]
    assert unknown[0].reason == "replace rejected: unknown order nope"
    await venue.submit(order())  # a market order: filled at once
    finished = await venue.replace(replace(quantity="2"))
    assert kinds(finished) == ["rejected"]
    assert finished[0].reason == "replace rejected: order o1 is already filled"


async def test_a_venue_without_replace_rejects_it() -> None:
    from trader.execution.venues.base import VenueAdapter

    class Plain(VenueAdapter):
        kind = "plain"

        async def submit(self, order: VenueOrder) -> list[ExecutionReport]:
            return []

        async def cancel(self, order: VenueOrder) -> list[ExecutionReport]:
            return []

        async def open_orders(self) -> list[VenueOrder]:
            return []

        async def balances(self) -> dict[str, D]:
            return {}

    reports = await Plain().replace(replace(price="99"))
    assert kinds(reports) == ["rejected"]
    assert reports[0].reason == "replace rejected: venue plain (plain) does not support cancel-replace"


# Ids, balances, settings, registry --------------------------------------------------------------


async def _scenario() -> list[ExecutionReport]:
    venue = paper(slippage_bps=D("3"))
    reports = venue.on_tick(tick("100.5", "100", "101", size="1"))
    reports += await venue.submit(order("a", quantity="2"))
    reports += await venue.submit(order("b", side="sell", type="limit", price="102", quantity="3"))
    reports += await venue.submit(order("a", quantity="1"))  # a duplicate id
    reports += venue.on_tick(tick("102.5", "102", "103", size="2", ts=T0 + 1))
    reports += await venue.cancel(order("b", action="cancel"))
    reports += await venue.cancel(order("b", action="cancel"))
    return reports


async def test_exec_ids_are_unique_and_reports_deterministic() -> None:
    reports = await _scenario()
    assert [(r.exec_id, r.kind) for r in reports] == [
        ("paper:a:1", "accepted"),
        ("paper:a:2", "fill"),
        ("paper:b:1", "accepted"),
        ("paper:a:3", "rejected"),  # the duplicate: its own exec_id, the original order untouched
        ("paper:a:4", "fill"),
        ("paper:b:2", "fill"),  # the sell takes the bid side: the buy's fill left it whole
        ("paper:b:3", "canceled"),
        ("paper:b:4", "rejected"),
    ]
    assert reports == await _scenario()
    assert reports[3].reason == "duplicate venue_client_id a"
    assert fills(reports) == [
        (D("1"), D("101.0303"), "taker"),
        (D("1"), D("103.0309"), "taker"),
        (D("2"), D("102"), "maker"),
    ]
    assert [r.venue_order_id for r in reports] == ["paper-1"] * 2 + ["paper-2", "paper-3", "paper-1"] + [
        "paper-2"
    ] * 3


async def test_balances_follow_fills_and_fees() -> None:
    venue = paper()
    venue.on_tick(tick("100.5", "100", "101"))
    await venue.submit(order(quantity="2"))
    await venue.submit(order("s", side="sell", quantity="0.5"))
    balances = await venue.balances()
    assert balances["BTC"] == D("1.5")
    # 100000 - 2 * 101 - 0.202 + 0.5 * 100 - 0.05
    assert balances["USDT"] == D("99847.748")


async def test_ticks_of_other_quote_venues_are_ignored_when_one_is_set() -> None:
    venue = paper(quote_venue="binance")
    venue.on_tick(tick("100.5", "100", "101", venue="kraken"))
    assert kinds(await venue.submit(order())) == ["rejected"]
    venue.on_tick(tick("100.5", "100", "101", venue="binance"))
    assert kinds(await venue.submit(order("o2"))) == ["accepted", "fill"]


def test_settings_parse_decimals_from_text() -> None:
    settings = PaperVenueSettings.model_validate({"taker_fee_bps": "7.5", "latency_ms": "20"})
    assert settings.taker_fee_bps == D("7.5")
    assert isinstance(settings.maker_fee_bps, D)
    with pytest.raises(ValueError, match="slippage_bps"):
        PaperVenueSettings(slippage_bps=D("-1"))


def test_registry_names_the_paper_venue() -> None:
    assert venue_class("paper") is PaperVenue
    assert list(VENUES.items()) == [("paper", PaperVenue)]
    assert PaperVenue(name="paper-b").name == "paper-b"
    with pytest.raises(KeyError, match="unknown venue kind"):
        venue_class("nowhere")
