"""A venue feed against the local stand-in of its exchange, in process: no NATS, what it emits is kept."""

from __future__ import annotations

import asyncio
import json
import time
from collections.abc import Callable
from decimal import Decimal
from typing import Any

import msgspec
import pytest
import structlog

from tests.fakes.fake_exchanges import (
    CONFIGURED_SYMBOLS,
    TAPE_LENGTH,
    UNIFIED,
    FakeExchange,
    build_exchanges,
)
from trader.bus.publish import Outgoing
from trader.config import LiveGatewaySettings, LiveVenueSettings
from trader.marketdata.feeds import load_venue
from trader.marketdata.feeds.base import Trade, Venue
from trader.marketdata.feeds.feed import DeadFrame, Stored, VenueFeed, _Book
from trader.messages import FeedEvent, MarketTick

GATEWAY = LiveGatewaySettings(gap_grace_s=0.2, reconnect_initial_s=0.05, reconnect_max_s=0.5)


class Collected:
    def __init__(self) -> None:
        self.items: list[Outgoing | DeadFrame] = []
        self.stored: list[Stored] = []

    async def emit(self, item: Outgoing | DeadFrame, stored: Stored | None) -> None:
        self.items.append(item)
        if stored is not None:
            self.stored.append(stored)

    def ticks(self) -> list[tuple[Outgoing, MarketTick]]:
        return [
            (o, msgspec.json.decode(o.payload, type=MarketTick))
            for o in self.items
            if isinstance(o, Outgoing) and o.subject.startswith("market.tick.")
        ]

    def events(self) -> list[FeedEvent]:
        return [
            msgspec.json.decode(o.payload, type=FeedEvent)
            for o in self.items
            if isinstance(o, Outgoing) and o.subject.startswith("market.event.")
        ]

    def dead(self) -> list[DeadFrame]:
        return [o for o in self.items if isinstance(o, DeadFrame)]


async def _run(
    feed: VenueFeed, until: Callable[[], bool], timeout: float = 15.0, linger: float = 0.3
) -> None:
    stop = asyncio.Event()
    task = asyncio.create_task(feed.run(stop))
    deadline = time.monotonic() + timeout
    while not until():
        assert time.monotonic() < deadline, f"gave up waiting: {feed.health()}"
        await asyncio.sleep(0.05)
    await asyncio.sleep(linger)  # anything extra (a duplicate) would come meanwhile
    stop.set()
    await asyncio.wait_for(task, 5)


def _feed(exchange: FakeExchange, out: Collected, venue: Venue | None = None, **cfg: Any) -> VenueFeed:
    settings = LiveVenueSettings(
        symbols=[CONFIGURED_SYMBOLS[exchange.venue]],
        ws_url=exchange.ws_url,
        rest_url=exchange.rest_url,
        **cfg,
    )
    venue = venue or load_venue(exchange.venue)()
    return VenueFeed(venue, settings, GATEWAY, out.emit, structlog.get_logger().bind(venue=exchange.venue))


@pytest.mark.parametrize("name", ["binance", "coinbase", "kraken", "bybit", "okx"])
async def test_every_trade_once_with_gaps_filled_and_bad_frames_refused(name: str) -> None:
    exchange = build_exchanges()[name]
    await exchange.start()
    out = Collected()
    feed = _feed(exchange, out, stale_after_s=1.0)
    connections = 3 if name == "okx" else 2
    filled = lambda: sum(1 for e in out.events() if e.kind == "gap_filled") >= (1 if name == "bybit" else 2)  # noqa: E731
    try:
        await _run(
            feed, lambda: len(out.ticks()) >= TAPE_LENGTH and feed.connections >= connections and filled()
        )
    finally:
        await exchange.stop()
    ticks = out.ticks()
    ids = [tick.trade_id for _, tick in ticks]
    assert sorted(ids) == sorted(t.trade_id for t in exchange.expected_trades())
    tape = {t.trade_id: t for t in exchange.expected_trades()}
    for message, tick in ticks:
        assert message.subject == f"market.tick.{name}.{UNIFIED[name]}"
        assert message.msg_id == f"{name}:{exchange.encoder.venue_symbol}:{tick.trade_id}"
        assert (tick.price, tick.size, tick.side, tick.timestamp) == (
            tape[tick.trade_id].price,
            tape[tick.trade_id].size,
            tape[tick.trade_id].side,
            tape[tick.trade_id].ts,
        )
    assert [d.data.decode() for d in out.dead()] == exchange.expected_dead()
    if name != "bybit":  # trades 12..14 came from REST: no book of their time is known
        from_rest = [
            tick for _, tick in ticks if tick.trade_id in {tape_id(exchange, i) for i in (12, 13, 14)}
        ]
        assert [(t.bid, t.ask) for t in from_rest] == [(None, None)] * 3
    kinds = [e.kind for e in out.events()]
    assert kinds.count("reconnect") == connections - 1
    assert ("stale" in kinds) == (name == "okx")
    # What is stored is what a restart resumes from: the highest trade id, the latest time.
    assert max(s.timestamp for s in out.stored) == max(t.ts for t in exchange.expected_trades())


async def test_application_pings_go_out_and_pongs_keep_the_stream_alive() -> None:
    class QuickPingKraken(load_venue("kraken")):  # type: ignore[misc]
        ping_interval_s = 0.2

    exchange = build_exchanges()["kraken"]
    exchange.scripts = {1: [("wait",)]}  # subscribed, then nothing but the answers to pings
    await exchange.start()
    out = Collected()
    feed = _feed(exchange, out, QuickPingKraken(), stale_after_s=0.6)
    try:
        await _run(feed, lambda: sum('"ping"' in f for f in exchange.client_frames) >= 6, timeout=10)
    finally:
        await exchange.stop()
    assert feed.connections == 1  # pongs are frames: not stale
    assert feed.stats["stale"] == 0
    pings = [json.loads(f) for f in exchange.client_frames if '"ping"' in f]
    assert len({p["req_id"] for p in pings}) == len(pings)


async def test_an_unreachable_venue_is_retried_with_backoff_and_emits_nothing() -> None:
    exchange = build_exchanges()["okx"]
    await exchange.start()
    await exchange.stop()  # the port is free again: connections are refused
    out = Collected()
    feed = _feed(exchange, out)
    await _run(feed, lambda: feed.stats["disconnects"] >= 4, timeout=10, linger=0)
    assert not feed.connected
    assert feed.connections == 0
    assert out.items == []


def test_a_crossed_book_is_left_off_the_tick_not_the_trade() -> None:
    exchange = build_exchanges()["binance"]
    out = Collected()
    feed = _feed(exchange, out)
    feed.books["BTCUSDT"] = _Book(bid=Decimal("101"), ask=Decimal("100"))
    trade = Trade("BTCUSDT", "7", Decimal("100.5"), Decimal("0.1"), "buy", 1_764_000_000_000, seq=7)
    tick = feed._tick(trade, feed.instruments["BTCUSDT"])
    assert (tick.bid, tick.ask, tick.price, tick.venue_symbol) == (None, None, Decimal("100.5"), "BTCUSDT")


def tape_id(exchange: FakeExchange, index: int) -> str:
    return exchange.encoder.tape[index].trade_id
