"""Running one venue: the websocket connection and everything that keeps its trades whole.

- The connection (``trader.marketdata.feeds.connection``, shared with the alternative-data feed):
  connect, subscribe, read; no frame at all for ``stale_after_s`` (heartbeats and pongs count): the
  stream is stale, a ``stale`` event is published and the connection is replaced. Application pings
  where the venue wants them (``Venue.ping_interval_s``). Any disconnect: reconnect with exponential
  backoff and jitter (reset once data flows again), subscribe again, and publish a ``reconnect``
  event per symbol.
- Each trade goes through the symbol's ``TradeTracker``: duplicates (replays after a reconnect, repeated
  frames) are dropped, and a jump in the trade ids opens a gap. A gap still open after ``gap_grace_s``
  (trades may arrive out of order) is published as a ``gap`` event and filled from the venue's REST
  API; a ``gap_filled`` event says how many trades came back. Bybit, whose ids say nothing of gaps, has
  the trades since the last one seen fetched after every reconnect instead.
- A frame that cannot be read, or a trade that is not a valid tick, goes to the dead letters with the
  reason; the feed goes on.

What the feed produces goes to ``emit``: ticks and events as ``Outgoing`` messages with their
``Nats-Msg-Id``, and ``DeadFrame``s.
"""

from __future__ import annotations

import asyncio
import json
import time
from collections.abc import Awaitable, Callable, Iterable
from dataclasses import dataclass
from decimal import Decimal
from typing import Any

import msgspec

from trader.bus.publish import Outgoing
from trader.bus.streams import tick_subject
from trader.config import LiveGatewaySettings, LiveVenueSettings
from trader.marketdata.decode import InvalidMessage, tick_from_mapping
from trader.marketdata.feeds.base import FrameError, LastTradeId, Notice, Quote, Trade, TradeRange, Venue
from trader.marketdata.feeds.connection import WebSocketFeed
from trader.marketdata.feeds.rest import RestClient, RestError
from trader.marketdata.feeds.symbols import Instrument, parse_symbol
from trader.marketdata.feeds.tracker import Gap, TradeTracker
from trader.messages import FeedEvent, FeedEventKind, MarketTick, encode


def event_subject(venue: str, symbol: str) -> str:
    return f"market.event.{venue}.{symbol}"


def dead_subject(venue: str) -> str:
    """Where a frame would have gone when it names no instrument we can tell."""
    return f"live.{venue}"


@dataclass(frozen=True, slots=True)
class DeadFrame:
    """A frame (or REST row) refused, whole, with the subject it would have had and the reason."""

    subject: str
    data: bytes
    reason: str
    field: str = "frame"
    stream: str = "MARKET_TICKS"  # the stream it would have gone to


@dataclass(frozen=True, slots=True)
class Stored:
    """Told back once a tick is stored: what a restart may resume from."""

    venue: str
    venue_symbol: str
    seq: int | None
    timestamp: int


Emit = Callable[[Outgoing | DeadFrame, Stored | None], Awaitable[None]]


@dataclass
class _Book:
    bid: Decimal | None = None
    ask: Decimal | None = None


@dataclass(frozen=True, slots=True)
class _Fill:
    venue_symbol: str
    gap: Gap | None  # None: Bybit's window since the last trade seen
    since_ms: int | None = None


class VenueFeed(WebSocketFeed):
    LOG = "venue"

    def __init__(
        self,
        venue: Venue,
        settings: LiveVenueSettings,
        gateway: LiveGatewaySettings,
        emit: Emit,
        log: Any,
        restored: dict[str, dict[str, int | None]] | None = None,
    ) -> None:
        super().__init__(venue, settings, gateway, log)
        self.venue = venue  # with its own type: what parses its frames and fetches from its REST API
        self.emit = emit
        self.instruments: dict[str, Instrument] = {}
        for symbol in settings.symbols:
            instrument = parse_symbol(symbol)
            self.instruments[venue.venue_symbol(instrument)] = instrument
        self.trackers = {vs: self._new_tracker() for vs in self.instruments}
        for vs, state in (restored or {}).items():
            if vs in self.trackers:
                self.trackers[vs].restore(state)
        self.restored = bool(restored)
        self.books: dict[str, _Book] = {}
        self._fills: asyncio.Queue[_Fill] = asyncio.Queue()
        self._rest: RestClient | None = None

    @property
    def venue_symbols(self) -> list[str]:
        return list(self.instruments)

    def health(self) -> dict[str, Any]:
        return {
            "connected": self.connected,
            "connections": self.connections,
            "symbols": {vs: i.unified for vs, i in self.instruments.items()},
            "rest_requests": self._rest.requests if self._rest else 0,
            **self.stats,
        }

    # Running --------------------------------------------------------------------------------

    async def run(self, stop: asyncio.Event) -> None:
        bucket_burst = max(1, self.venue.rest_burst)
        self._rest = RestClient(self.rest_url, self.rest_rate, bucket_burst)
        tasks = [
            asyncio.create_task(self._connection_loop(stop)),
            asyncio.create_task(self._watch_gaps(stop)),
            asyncio.create_task(self._fill_gaps(stop)),
        ]
        try:
            await stop.wait()
        finally:
            for task in tasks:
                task.cancel()
            await asyncio.gather(*tasks, return_exceptions=True)
            await self._rest.aclose()

    def _connect_url(self) -> str:
        return self.venue.connect_url(self.ws_url, self.venue_symbols)

    def _subscriptions(self) -> Iterable[str]:
        return self.venue.subscribe_frames(self.venue_symbols)

    async def _on_stale(self, silent_s: float) -> None:
        await self._connection_event("stale", f"no frame for {silent_s:.1f} s")

    async def _after_connect(self, previous: str) -> None:
        if self.connections > 1:
            await self._connection_event("reconnect", f"connection {self.connections}; before: {previous}")
        if self.venue.contiguous_ids or not self.gateway.fill_gaps:
            return  # gaps show in the trade ids as soon as the next trade comes
        if self.connections == 1 and not self.restored:
            return
        for vs, tracker in self.trackers.items():
            if tracker.last_ts is not None:
                self._fills.put_nowait(_Fill(vs, None, tracker.last_ts))

    # Frames ---------------------------------------------------------------------------------

    async def _on_frame(self, frame: str | bytes) -> bool:
        """Handle one frame; True when it carried market data."""
        try:
            parsed = self.venue.parse(frame)
        except FrameError as exc:
            await self._dead(frame, exc.reason, exc.venue_symbol)
            return False
        except Exception as exc:  # a parser bug must not stop the feed: the frame is kept for a look
            self.log.exception("venue.parser_failed")
            await self._dead(frame, f"parser failed: {exc!r}", None)
            return False
        data = False
        for item in parsed.items:
            if isinstance(item, Trade):
                await self._on_trade(item, frame)
                data = True
            elif isinstance(item, Quote):
                self._on_quote(item)
                data = True
            elif isinstance(item, LastTradeId):
                self._on_last_trade_id(item)
            elif isinstance(item, Notice):
                self._on_notice(item)
        if parsed.errors:
            await self._dead(frame, "; ".join(parsed.errors), parsed.venue_symbol)
        return data

    async def _on_trade(self, trade: Trade, frame: str | bytes, live: bool = True) -> bool:
        """Publish ``trade`` if it is new. ``live`` is False for trades from REST: the book now says
        nothing of the book then, so they go without bid and ask."""
        instrument = self._instrument(trade.venue_symbol)
        if instrument is None:
            await self._dead(frame, f"trade for {trade.venue_symbol!r}, which is not subscribed", None)
            return False
        tracker = self.trackers[trade.venue_symbol]
        new, gap = tracker.accept(trade)
        if gap is not None:
            self.log.info("venue.gap_seen", venue_symbol=trade.venue_symbol, first=gap.first, last=gap.last)
        if not new:
            self.stats["duplicates"] += 1
            return False
        try:
            tick = self._tick(trade, instrument, with_book=live)
        except InvalidMessage as exc:
            await self._dead(frame, f"{exc.field}: {exc.reason}", trade.venue_symbol, field=exc.field)
            return False
        msg_id = f"{self.name}:{trade.venue_symbol}:{trade.trade_id}"
        stored = Stored(self.name, trade.venue_symbol, trade.seq, trade.timestamp)
        await self.emit(Outgoing(tick_subject(self.name, tick.symbol), encode(tick), msg_id=msg_id), stored)
        self.stats["trades"] += 1
        return True

    def _tick(self, trade: Trade, instrument: Instrument, with_book: bool = True) -> MarketTick:
        book = self.books.get(trade.venue_symbol, _Book()) if with_book else _Book()
        raw: dict[str, Any] = {
            "timestamp": trade.timestamp,
            "venue": self.name,
            "exchange": self.name,
            "symbol": instrument.unified,
            "price": trade.price,
            "size": trade.size,
            "side": trade.side,
            "trade_id": trade.trade_id,
            "source_seq": trade.seq,
            "bid": book.bid,
            "ask": book.ask,
        }
        try:
            tick = tick_from_mapping(raw)
        except InvalidMessage as exc:
            if exc.field not in ("bid", "ask"):
                raise
            # A book caught mid-update (crossed) says nothing reliable: the trade goes without it.
            tick = tick_from_mapping({**raw, "bid": None, "ask": None})
        return msgspec.structs.replace(tick, venue_symbol=trade.venue_symbol)

    def _on_quote(self, quote: Quote) -> None:
        book = self.books.setdefault(quote.venue_symbol, _Book())
        if quote.bid is not None:
            book.bid = quote.bid
        if quote.ask is not None:
            book.ask = quote.ask

    def _on_last_trade_id(self, item: LastTradeId) -> None:
        tracker = self.trackers.get(item.venue_symbol)
        if tracker is not None:
            gap = tracker.observe_last_id(item.seq)
            if gap is not None:
                self.log.info(
                    "venue.gap_seen", venue_symbol=item.venue_symbol, first=gap.first, last=gap.last
                )

    def _on_notice(self, notice: Notice) -> None:
        if notice.kind == "error":
            self.stats["venue_errors"] += 1
            self.log.warning("venue.error", detail=notice.detail)
        elif notice.kind in ("subscribed", "info"):
            self.log.info(f"venue.{notice.kind}", detail=notice.detail)

    def _instrument(self, venue_symbol: str) -> Instrument | None:
        return self.instruments.get(venue_symbol)

    def _new_tracker(self) -> TradeTracker:
        return TradeTracker(contiguous=self.venue.contiguous_ids, max_missing=self.gateway.max_gap_fill)

    # Gaps -----------------------------------------------------------------------------------

    async def _watch_gaps(self, stop: asyncio.Event) -> None:
        grace = self.gateway.gap_grace_s
        while not stop.is_set():
            await asyncio.sleep(min(0.2, max(0.02, grace / 4)))
            for vs, tracker in self.trackers.items():
                due, healed = tracker.due_gaps(grace)
                for gap in healed:
                    self.log.info("venue.reordered", venue_symbol=vs, first=gap.first, last=gap.last)
                for gap in due:
                    self.stats["gaps"] += 1
                    detail = f"{len(gap.missing)} of {gap.size} trade ids missing after {grace} s"
                    await self._event(vs, "gap", detail, gap.first, gap.last, gap.size)
                    if self.gateway.fill_gaps:
                        self._fills.put_nowait(_Fill(vs, gap, gap.after_ts))
                    else:
                        tracker.close_gap(gap)

    async def _fill_gaps(self, stop: asyncio.Event) -> None:
        while not stop.is_set():
            job = await self._fills.get()
            try:
                await self._fill(job)
            except asyncio.CancelledError:
                raise
            except Exception:
                self.log.exception("venue.fill_failed", venue_symbol=job.venue_symbol)

    async def _fill(self, job: _Fill) -> None:
        assert self._rest is not None
        tracker = self.trackers[job.venue_symbol]
        gap = job.gap
        if gap is not None:
            wanted = TradeRange(job.venue_symbol, min(gap.missing), max(gap.missing), since_ms=job.since_ms)
        else:
            wanted = TradeRange(job.venue_symbol, since_ms=job.since_ms)
        error = None
        try:
            trades = await self.venue.fetch_trades(self._rest, wanted, self.gateway.max_gap_fill)
        except (RestError, FrameError) as exc:
            trades, error = [], str(exc)
            self.stats["fill_errors"] += 1
            self.log.warning("venue.fill_error", venue_symbol=job.venue_symbol, error=error)
        recovered = []
        for trade in sorted(trades, key=lambda t: (t.seq or 0, t.timestamp)):
            if gap is not None and (trade.seq is None or trade.seq not in gap.missing):
                continue  # before or after the gap, or came meanwhile
            if await self._on_trade(trade, _rest_row(trade), live=False):
                recovered.append(trade)
        self.stats["filled"] += len(recovered)
        if gap is not None:
            still = len(gap.missing)
            tracker.close_gap(gap)
            detail = f"recovered {len(recovered)} of {gap.size} from REST; {still} still missing"
            await self._event(
                job.venue_symbol, "gap_filled", detail + (f" ({error})" if error else ""),
                gap.first, gap.last, len(recovered),
            )  # fmt: skip
        elif recovered:
            first, last = recovered[0].trade_id, recovered[-1].trade_id
            detail = f"recovered {len(recovered)} trades since the last one seen, from REST"
            await self._event(job.venue_symbol, "gap_filled", detail, first, last, len(recovered))

    # Events and dead letters ----------------------------------------------------------------

    async def _connection_event(self, kind: FeedEventKind, detail: str) -> None:
        for vs in self.venue_symbols:
            await self._event(vs, kind, detail)

    async def _event(
        self,
        venue_symbol: str,
        kind: FeedEventKind,
        detail: str,
        first: int | str | None = None,
        last: int | str | None = None,
        count: int | None = None,
    ) -> None:
        now = time.time_ns() // 1_000_000
        symbol = self.instruments[venue_symbol].unified
        event = FeedEvent(
            venue=self.name,
            symbol=symbol,
            kind=kind,
            timestamp=now,
            from_id=None if first is None else str(first),
            to_id=None if last is None else str(last),
            detail=detail,
            venue_symbol=venue_symbol,
            count=count,
        )
        identity = f"{first}-{last}" if first is not None else str(now)
        msg_id = f"{self.name}:{venue_symbol}:{kind}:{identity}"
        self.log.info(f"venue.{kind}", venue_symbol=venue_symbol, detail=detail, from_id=first, to_id=last)
        await self.emit(Outgoing(event_subject(self.name, symbol), encode(event), msg_id=msg_id), None)

    async def _dead(
        self, frame: str | bytes, reason: str, venue_symbol: str | None, field: str = "frame"
    ) -> None:
        instrument = self.instruments.get(venue_symbol) if venue_symbol else None
        subject = tick_subject(self.name, instrument.unified) if instrument else dead_subject(self.name)
        data = frame.encode() if isinstance(frame, str) else bytes(frame)
        self.stats["dead_letters"] += 1
        self.log.warning("venue.refused", reason=reason[:300], subject=subject)
        await self.emit(DeadFrame(subject, data, reason, field), None)


def _rest_row(trade: Trade) -> bytes:
    """What a refused REST trade is kept as (the REST page itself is not kept)."""
    row = {
        "source": "rest",
        "venue_symbol": trade.venue_symbol,
        "trade_id": trade.trade_id,
        "price": str(trade.price),
        "size": str(trade.size),
        "side": trade.side,
        "timestamp": trade.timestamp,
    }
    return json.dumps(row).encode()
