"""The router's decisions without the bus: quotes per venue, fees, fixed venues, cancels, rejections."""

from __future__ import annotations

from decimal import Decimal as D

import msgspec
import pytest

from trader.bus.streams import SOURCE_SEQ
from trader.config import ExeqSettings, RoutingSettings, Settings, VenueConfig
from trader.execution.router import Router, quotes_needed
from trader.execution.venues import PaperVenueSettings
from trader.messages import ExecutionReport, MarketTick, VenueOrder


def settings(paper_quote_venue: str | None = None, **routing: object) -> Settings:
    return Settings(
        routing=RoutingSettings(**{"venues": {"*": ["cheap", "pricey"]}, **routing}),
        exeq=ExeqSettings(
            venues={
                "cheap": VenueConfig(kind="paper", taker_fee_bps=D(1)),
                "pricey": VenueConfig(kind="binance", taker_fee_bps=D(50)),
            },
            paper=PaperVenueSettings(quote_venue=paper_quote_venue),
        ),
    )


def tick(venue: str, bid: str, ask: str, symbol: str = "BTCUSDT") -> MarketTick:
    return MarketTick(
        timestamp=1,
        exchange=venue,
        venue=venue,
        symbol=symbol,
        price=D(bid),
        size=D(1),
        volume=D(1),
        bid=D(bid),
        ask=D(ask),
    )


def order(action: str = "new", side: str = "buy", venue: str = "", cid: str = "o1") -> VenueOrder:
    return VenueOrder(
        action=action,  # type: ignore[arg-type]
        client_order_id=cid,
        venue_client_id=cid,
        strategy="s1",
        account="acc",
        venue=venue,
        symbol="BTCUSDT",
        side=side,  # type: ignore[arg-type]
        quantity=D(1),
    )


def routed(out) -> VenueOrder:  # type: ignore[no-untyped-def]
    return msgspec.json.decode(out.payload, type=VenueOrder)


def test_best_price_net_of_fees_wins() -> None:
    router = Router(settings(paper_quote_venue="feedA"))
    router.on_tick(tick("feedA", "99", "100"))  # the paper venue "cheap" quotes from feedA
    router.on_tick(tick("pricey", "99", "99.9"))  # a better ask, but 50 bps of fee
    out = router.route(order(), seq=7)
    assert out is not None
    assert out.subject == "exec.order.cheap"
    assert routed(out).venue == "cheap"
    assert out.headers == {SOURCE_SEQ: "7"}
    assert out.msg_id == "o1:new:7"
    # A sell goes where the bid net of the fee is highest.
    router.on_tick(tick("pricey", "101", "102"))
    sell = router.route(order(side="sell", cid="o2"), seq=8)
    assert sell is not None
    assert sell.subject == "exec.order.pricey"


def test_a_paper_venue_without_quote_venue_quotes_from_any_tick() -> None:
    router = Router(settings())
    router.on_tick(tick("pricey", "99", "100"))
    router.on_tick(tick("mock", "89", "90"))  # the latest of the symbol, whatever the venue
    assert router.quote("cheap", "BTCUSDT").ask == D(90)
    assert router.quote("pricey", "BTCUSDT").ask == D(100)


def test_fixed_venue_of_order_or_config() -> None:
    router = Router(settings(fixed_venue="pricey"))
    out = router.route(order(), seq=1)
    assert out is not None
    assert out.subject == "exec.order.pricey"
    out = router.route(order(venue="cheap", cid="o2"), seq=2)
    assert out is not None
    assert out.subject == "exec.order.cheap"


def test_unroutable_order_is_rejected_with_the_reason() -> None:
    router = Router(settings())
    out = router.route(order(), seq=3)  # two venues, no quote anywhere
    assert out is not None
    assert out.subject == "exec.report.router"
    report = msgspec.json.decode(out.payload, type=ExecutionReport)
    assert (report.kind, report.client_order_id, report.venue) == ("rejected", "o1", "router")
    assert report.reason is not None
    assert "no venue quotes BTCUSDT" in report.reason
    named = router.route(order(venue="nowhere", cid="o2"), seq=4)
    assert named is not None
    assert named.subject == "exec.report.nowhere"
    assert "not configured" in (msgspec.json.decode(named.payload, type=ExecutionReport).reason or "")


def test_cancel_follows_the_order_and_a_repeat_is_skipped() -> None:
    router = Router(settings(paper_quote_venue="feedA"))
    router.on_tick(tick("feedA", "99", "100"))
    assert router.route(order(), seq=1) is not None
    assert router.route(order(), seq=2) is None
    router.on_tick(tick("pricey", "10", "11"))  # the market moved: the cancel still goes where the order is
    cancel = router.route(order(action="cancel"), seq=3)
    assert cancel is not None
    assert cancel.subject == "exec.order.cheap"
    never = router.route(order(action="cancel", cid="o9"), seq=4)
    assert never is not None
    assert never.subject == "exec.report.router"


def test_a_replace_goes_where_the_order_was_routed() -> None:
    router = Router(settings(paper_quote_venue="feedA"))
    router.on_tick(tick("feedA", "99", "100"))
    assert router.route(order(), seq=1) is not None
    router.on_tick(tick("pricey", "10", "11"))
    replace = router.route(order(action="replace"), seq=2)
    assert replace is not None
    assert (replace.subject, replace.msg_id) == ("exec.order.cheap", "o1:replace:2")
    assert (routed(replace).action, routed(replace).venue) == ("replace", "cheap")
    never = router.route(order(action="replace", cid="o9"), seq=3)
    assert never is not None
    assert never.subject == "exec.report.router"
    reason = msgspec.json.decode(never.payload, type=ExecutionReport).reason
    assert reason == "routing: replace of o9: the order was never routed"


def test_decisions_come_back_from_the_published_orders() -> None:
    first = Router(settings(fixed_venue="pricey"))
    out = first.route(order(), seq=1)
    assert out is not None
    restarted = Router(settings())
    restarted.remember(routed(out))
    cancel = restarted.route(order(action="cancel"), seq=2)
    assert cancel is not None
    assert cancel.subject == "exec.order.pricey"
    assert restarted.route(order(), seq=3) is None


@pytest.mark.parametrize(
    ("venues", "fixed", "needed"),
    [
        ({"*": ["paper"]}, None, False),  # one venue everywhere: nothing to choose
        ({"*": ["paper"], "BTCUSDT": ["a", "b"]}, None, True),  # a choice on price for BTCUSDT
        ({"BTCUSDT": ["a", "b"]}, "a", False),  # a fixed venue: no choice on price
    ],
)
def test_the_router_reads_ticks_only_when_some_order_may_be_routed_on_price(
    venues: dict[str, list[str]], fixed: str | None, needed: bool
) -> None:
    settings = Settings(routing=RoutingSettings(venues=venues, fixed_venue=fixed))
    assert quotes_needed(settings) is needed
