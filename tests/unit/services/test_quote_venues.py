"""What a paper venue fills against, what the router quotes and what pnl marks with: one feed's ticks,
the venue's quote venue; with the mock feed and a live one on the same symbol, neither stands for the
other."""

from __future__ import annotations

import asyncio
from decimal import Decimal as D

from trader.config import ExeqSettings, RoutingSettings, Settings, VenueConfig
from trader.execution.router import Router
from trader.messages import MarketTick, Position
from trader.portfolio import PnlBook
from trader.services.exeq import Exeq


def settings() -> Settings:
    return Settings(
        exeq=ExeqSettings(venues={"paper": VenueConfig(), "binance": VenueConfig(kind="ccxt")}),
        routing=RoutingSettings(venues={"*": ["paper", "binance"]}),
    )


def tick(venue: str, bid: str, ask: str) -> MarketTick:
    return MarketTick(
        timestamp=1,
        exchange=venue,
        venue=venue,
        symbol="BTCUSDT",
        price=D(bid),
        size=D(1),
        volume=D(1),
        bid=D(bid),
        ask=D(ask),
    )


def test_the_router_quotes_the_paper_venue_from_the_mock_feed_only() -> None:
    router = Router(settings())
    router.on_tick(tick("mock", "59999", "60001"))
    router.on_tick(tick("binance", "99", "100"))  # the latest tick of the symbol: not the paper venue's
    assert router.quote("paper", "BTCUSDT").ask == D(60001)
    assert router.quote("binance", "BTCUSDT").ask == D(100)


def test_the_paper_venue_of_exeq_takes_the_mock_feeds_ticks_only() -> None:
    exeq = Exeq(settings())
    paper = exeq._adapter("paper", "paper", asyncio.Queue().put_nowait)
    assert paper.quotes_from(tick("mock", "1", "2"))
    assert not paper.quotes_from(tick("binance", "1", "2"))


def test_pnl_marks_a_position_at_its_venues_quotes_only() -> None:
    book = PnlBook(quote_venue=settings().quote_venue_of)
    for venue in ("paper", "binance"):
        book.update_position(
            Position(
                account="a",
                venue=venue,
                symbol="BTCUSDT",
                quantity=D(1),
                average_price=D(100),
                realized_pnl=D(0),
                fees=D(0),
            )
        )
    book.update_mark("binance", "BTCUSDT", D(110))
    assert book.total_snapshot(0).unrealized == D(10)  # the paper position has no mark: its own price
    book.update_mark("mock", "BTCUSDT", D(60_000))
    assert book.total_snapshot(0).unrealized == D(10) + D(59_900)
