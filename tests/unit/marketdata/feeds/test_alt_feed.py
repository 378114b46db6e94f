"""The alternative-data feed of each venue against its local stand-in, in process: no NATS, what it emits
is kept. Normal streams, a repeated frame, an out-of-order observation, malformed frames, a disconnect
mid-stream with the refill from REST, REST polling within the rate limit."""

from __future__ import annotations

import asyncio
import time
from collections import Counter
from collections.abc import Callable
from decimal import Decimal
from typing import Any

import msgspec
import pytest
import structlog

from tests.fakes.fake_alt_exchanges import BROKEN, NEXT_FUNDING, FakeAltExchange
from trader.bus.publish import Outgoing
from trader.config import LiveAltSettings, LiveGatewaySettings
from trader.marketdata.feeds import load_alt_venue
from trader.marketdata.feeds.alt_feed import AltVenueFeed
from trader.marketdata.feeds.feed import DeadFrame, Stored
from trader.messages import AltDatum

GATEWAY = LiveGatewaySettings(reconnect_initial_s=0.05, reconnect_max_s=0.5)


class Collected:
    def __init__(self) -> None:
        self.items: list[Outgoing | DeadFrame] = []

    async def emit(self, item: Outgoing | DeadFrame, stored: Stored | None) -> None:
        self.items.append(item)

    def data(self) -> list[tuple[Outgoing, AltDatum]]:
        return [
            (o, msgspec.json.decode(o.payload, type=AltDatum)) for o in self.items if isinstance(o, Outgoing)
        ]

    def dead(self) -> list[DeadFrame]:
        return [o for o in self.items if isinstance(o, DeadFrame)]


async def _run(
    feed: AltVenueFeed, until: Callable[[], bool], timeout: float = 15.0, linger: float = 0.4
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


def _feed(exchange: FakeAltExchange, out: Collected, **cfg: Any) -> AltVenueFeed:
    settings = LiveAltSettings(
        symbols=["BTCUSDT-PERP"], ws_url=exchange.ws_url, rest_url=exchange.rest_url, **cfg
    )
    venue = load_alt_venue(exchange.venue)()
    return AltVenueFeed(venue, settings, GATEWAY, out.emit, structlog.get_logger().bind(venue=exchange.venue))


@pytest.mark.parametrize("name", ["binance", "bybit", "okx"])
async def test_every_observation_once_across_a_disconnect_with_bad_frames_refused(name: str) -> None:
    exchange = FakeAltExchange(name)
    await exchange.start()
    out = Collected()
    feed = _feed(exchange, out, poll_interval_s=0.5)

    def done() -> bool:
        published = {o.msg_id for o, _ in out.data()}
        return feed.connections >= 2 and feed.stats["refilled"] > 0 and set(exchange.expected) <= published

    try:
        await _run(feed, done)
    finally:
        await exchange.stop()
    data = out.data()
    ids = [o.msg_id for o, _ in data]
    assert [
        i for i, n in Counter(ids).items() if n > 1
    ] == []  # nothing twice, replays after the drop included
    assert set(ids) == set(exchange.expected)  # nothing missing, nothing made up
    for message, datum in data:
        assert message.subject == f"alt.norm.{datum.kind}"
        assert datum.value == exchange.expected[message.msg_id or ""]
        assert (datum.source, datum.symbol, datum.venue_symbol) == (
            name,
            "BTCUSDT-PERP",
            exchange.venue_symbol,
        )
    funding = [d for _, d in data if d.kind == "funding"]
    assert {d.unit for d in funding} == {"rate"}
    assert {d.next_time for d in funding} == {NEXT_FUNDING}
    liquidations = {(d.side, d.price, d.value, d.unit) for _, d in data if d.kind == "liquidation"}
    assert ("sell", Decimal("59990.1"), Decimal("0.03"), "BTC") in liquidations
    assert ("buy", Decimal("59980"), Decimal("0.05"), "BTC") in liquidations
    assert {d.unit for _, d in data if d.kind == "mark_price"} == {"USDT"}
    # The malformed frames: in the dead letters, whole, with a reason; the feed went on after them.
    dead = out.dead()
    assert [d.data.decode() for d in dead] == exchange.dead_sent
    assert dead[0].data.decode() == BROKEN
    assert "malformed JSON" in dead[0].reason
    assert "'lots' is not a number" in dead[1].reason
    assert {d.stream for d in dead} == {"ALT_DATA"}
    assert feed.stats["duplicates"] >= 2  # the repeated frame, and the replay after the reconnect
    assert feed.stats["out_of_order"] >= 1


async def test_okx_refill_after_a_drop_recovers_the_liquidation_it_missed() -> None:
    exchange = FakeAltExchange("okx")
    await exchange.start()
    out = Collected()
    feed = _feed(exchange, out)
    missed = "okx:liquidation:BTC-USDT-SWAP:1764000004500:buy:59000:0.07"
    try:
        await _run(feed, lambda: missed in {o.msg_id for o, _ in out.data()})
    finally:
        await exchange.stop()
    paths = [path for _, path, _ in exchange.rest_calls]
    assert paths[0] == "/api/v5/public/instruments"  # the contract size, before any liquidation is read
    assert "/api/v5/public/liquidation-orders" in paths


async def test_rest_polls_stay_within_the_rate_limit() -> None:
    """Binance streams no open interest: it is polled. At 4 requests a second and a burst of 5 (Binance's),
    asked every 0.05 s, no window holds more requests than the bucket allows."""
    exchange = FakeAltExchange("binance", scripts={1: []})
    await exchange.start()
    out = Collected()
    feed = _feed(exchange, out, kinds=["open_interest"], rest_rate_per_s=4.0, poll_interval_s=0.05)
    try:
        await _run(feed, lambda: len(exchange.rest_calls) >= 12, linger=0)
    finally:
        await exchange.stop()
    times = [t for t, _, _ in exchange.rest_calls]
    for i, start in enumerate(times):
        for end in times[i:]:
            in_window = sum(1 for t in times if start <= t <= end)
            assert in_window <= 5 + 4.0 * (end - start) + 1, (in_window, end - start)
    assert times[-1] - times[0] >= (len(times) - 5) / 4.0 - 0.3  # the steady rate, after the burst
    assert exchange.connections == 0  # nothing to stream: no websocket opened
    assert {d.kind for _, d in out.data()} == {"open_interest"}
    assert len({o.msg_id for o, _ in out.data()}) == len(out.data())


async def test_only_the_kinds_configured_are_subscribed_and_published() -> None:
    exchange = FakeAltExchange("bybit")
    await exchange.start()
    out = Collected()
    feed = _feed(exchange, out, kinds=["funding"])
    try:
        await _run(feed, lambda: feed.connections >= 2 and feed.stats["refilled"] > 0)
    finally:
        await exchange.stop()
    assert {d.kind for _, d in out.data()} == {"funding"}
    subscribe = [f for f in exchange.client_frames if '"subscribe"' in f]
    assert subscribe
    assert all("allLiquidation" not in f for f in subscribe)


def test_liquidations_alone_from_binance_are_not_taken_for_a_dead_stream() -> None:
    def feed(kinds: list[str]) -> AltVenueFeed:
        settings = LiveAltSettings(symbols=["BTCUSDT"], kinds=kinds)
        return AltVenueFeed(
            load_alt_venue("binance")(), settings, GATEWAY, Collected().emit, structlog.get_logger()
        )

    assert feed(["liquidation"]).stale_after_s == 600.0  # none may come for minutes
    assert feed(["liquidation", "funding"]).stale_after_s == 30.0  # the mark price comes every second
