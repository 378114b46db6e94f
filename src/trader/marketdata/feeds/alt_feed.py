"""Running one venue's alternative data: the websocket, the REST polls, and what keeps them whole.

- The connection is the market-data feed's (``trader.marketdata.feeds.connection``): connect,
  subscribe to the streamed kinds, read; no frame for ``stale_after_s``: the connection is replaced.
  Application pings where the venue wants them. Any disconnect: reconnect with exponential backoff
  and jitter (reset once data flows), subscribe again. The frames are this feed's own (``AltVenue``).
- After a reconnect, what the venue's REST API tells of the streamed kinds is fetched once per symbol
  (the latest funding, prices and open interest; OKX also the recent liquidations): what changed while
  the connection was down is not lost where the venue allows it.
- Kinds the venue does not stream (Binance's open interest) are polled over REST every
  ``poll_interval_s`` per symbol, every request paid for from the venue's token bucket.
- Each observation becomes an ``AltDatum`` on ``alt.norm.<kind>`` with ``Nats-Msg-Id``
  ``<venue>:<kind>:<venue symbol>:<event time>`` (liquidations: with side, price and quantity), so a
  replay after a reconnect, a REST answer that repeats the stream, or a repeated frame is stored once;
  the feed also drops the identities it has just seen. Out-of-order observations are kept (they are
  history; the latest is chosen by event time downstream) and counted.
- A frame that cannot be read, or an observation that is not a valid datum, goes to the dead letters
  with the reason; the feed goes on.
"""

from __future__ import annotations

import asyncio
from collections import OrderedDict
from collections.abc import Iterable
from typing import Any

from trader.bus.backoff import set_within
from trader.bus.publish import Outgoing
from trader.bus.streams import alt_subject
from trader.config import LiveAltSettings, LiveGatewaySettings
from trader.marketdata.decode import InvalidMessage, decode_alt
from trader.marketdata.feeds.alt import KINDS, AltVenue, Observation
from trader.marketdata.feeds.base import FrameError, Notice
from trader.marketdata.feeds.connection import WebSocketFeed
from trader.marketdata.feeds.feed import DeadFrame, Emit
from trader.marketdata.feeds.rest import RestClient, RestError
from trader.marketdata.feeds.symbols import Instrument, parse_perpetual
from trader.messages import AltDatum, encode

ALT_STREAM = "ALT_DATA"
RECENT_IDS = 20_000  # identities remembered to drop repeats before they reach NATS
QUIET_STALE_AFTER_S = 600.0


def alt_dead_subject(venue: str) -> str:
    return f"alt.live.{venue}"


def datum_of(venue: str, observation: Observation, instrument: Instrument) -> AltDatum:
    """The bus message of an observation, with the unit its kind has on this instrument."""
    unit = observation.unit
    if unit is None:
        unit = {"funding": "rate", "mark_price": instrument.quote, "index_price": instrument.quote}.get(
            observation.kind, instrument.base
        )
    return AltDatum(
        timestamp=observation.timestamp,
        kind=observation.kind,
        source=venue,
        value=observation.value,
        symbol=instrument.unified,
        unit=unit,
        venue_symbol=observation.venue_symbol,
        predicted=observation.predicted,
        next_time=observation.next_time,
        price=observation.price,
        side=observation.side,
    )


class AltVenueFeed(WebSocketFeed):
    LOG = "alt"

    def __init__(
        self,
        venue: AltVenue,
        settings: LiveAltSettings,
        gateway: LiveGatewaySettings,
        emit: Emit,
        log: Any,
    ) -> None:
        super().__init__(venue, settings, gateway, log)
        self.venue = venue  # with its own type: what parses its frames and fetches from its REST API
        self.emit = emit
        self.instruments: dict[str, Instrument] = {}
        for symbol in settings.symbols:
            instrument = parse_perpetual(symbol)
            self.instruments[venue.venue_symbol(instrument)] = instrument
        wanted = frozenset(k for k in settings.kinds if k in KINDS)
        self.kinds = wanted
        self.streamed = wanted & venue.streamed
        if self.streamed <= {"liquidation"} and venue.ping_interval_s is None and not settings.stale_after_s:
            # Liquidations alone may not come for minutes, and no pong counts as a frame: only a long
            # silence means a dead connection (the library's own pings find one sooner).
            self.stale_after_s = QUIET_STALE_AFTER_S
        self.polls = {
            kind: settings.poll_interval_s or interval
            for kind, interval in venue.polled.items()
            if kind in wanted and kind not in self.streamed
        }
        self._recent: OrderedDict[str, None] = OrderedDict()
        self._latest: dict[tuple[str, str], int] = {}
        self._rest: RestClient | None = None
        self._refilling: asyncio.Task[None] | None = None

    @property
    def venue_symbols(self) -> list[str]:
        return list(self.instruments)

    def health(self) -> dict[str, Any]:
        return {
            "connected": self.connected if self.streamed else None,
            "connections": self.connections,
            "symbols": {vs: i.unified for vs, i in self.instruments.items()},
            "streamed": sorted(self.streamed),
            "polled": self.polls,
            "rest_requests": self._rest.requests if self._rest else 0,
            **self.stats,
        }

    # Running --------------------------------------------------------------------------------

    async def run(self, stop: asyncio.Event) -> None:
        self._rest = RestClient(self.rest_url, self.rest_rate, max(1, self.venue.rest_burst))
        tasks = [asyncio.create_task(self._poll(kind, every, stop)) for kind, every in self.polls.items()]
        if self.streamed:
            tasks.append(asyncio.create_task(self._prepare_and_connect(stop)))
        try:
            await stop.wait()
        finally:
            for task in tasks:
                task.cancel()
            await asyncio.gather(*tasks, return_exceptions=True)
            await self._rest.aclose()

    async def _prepare(self) -> None:
        assert self._rest is not None
        try:
            await self.venue.prepare(self._rest, self.venue_symbols)
        except (RestError, FrameError) as exc:  # parsing goes on without it (OKX: sizes in contracts)
            self.stats["rest_errors"] += 1
            self.log.warning("alt.prepare_failed", error=str(exc))

    async def _prepare_and_connect(self, stop: asyncio.Event) -> None:
        await self._prepare()
        await self._connection_loop(stop)

    def _connect_url(self) -> str:
        return self.venue.connect_url(self.ws_url, self.venue_symbols, self.streamed)

    def _subscriptions(self) -> Iterable[str]:
        return self.venue.subscribe_frames(self.venue_symbols, self.streamed)

    async def _after_connect(self, previous: str) -> None:
        if self.connections > 1 and self.gateway.fill_gaps:
            self._refilling = asyncio.create_task(self._refill())

    async def _session_ended(self) -> None:
        if self._refilling is not None and not self._refilling.done():
            self._refilling.cancel()
        self._refilling = None

    async def _refill(self) -> None:
        """After a reconnect: the latest of each streamed kind from REST, where the venue has it."""
        for vs in self.venue_symbols:
            for kind in self.venue.refill_kinds(self.streamed):
                await self._fetch(vs, kind, "refilled")

    async def _poll(self, kind: str, every_s: float, stop: asyncio.Event) -> None:
        while not stop.is_set():
            for vs in self.venue_symbols:
                await self._fetch(vs, kind, "polled")
            await set_within(stop, every_s)

    async def _fetch(self, venue_symbol: str, kind: str, counter: str) -> None:
        assert self._rest is not None
        try:
            found = await self.venue.fetch(self._rest, venue_symbol, kind)
        except (RestError, FrameError) as exc:
            self.stats["rest_errors"] += 1
            self.log.warning("alt.rest_failed", venue_symbol=venue_symbol, kind=kind, error=str(exc))
            return
        self.stats[counter] += await self.publish(found, None)

    # Frames and observations ------------------------------------------------------------------

    async def _on_frame(self, frame: str | bytes) -> bool:
        """Handle one frame; True when it carried data."""
        try:
            parsed = self.venue.parse(frame)
        except FrameError as exc:
            await self._dead(frame, exc.reason)
            return False
        except Exception as exc:  # a parser bug must not stop the feed: the frame is kept for a look
            self.log.exception("alt.parser_failed")
            await self._dead(frame, f"parser failed: {exc!r}")
            return False
        observations = [item for item in parsed.items if isinstance(item, Observation)]
        for item in parsed.items:
            if isinstance(item, Notice) and item.kind == "error":
                self.stats["venue_errors"] += 1
                self.log.warning("alt.venue_error", detail=item.detail)
        await self.publish(observations, frame)
        if parsed.errors:
            await self._dead(frame, "; ".join(parsed.errors))
        return bool(observations)

    async def publish(self, observations: Iterable[Observation], frame: str | bytes | None) -> int:
        """Emit the new ones; how many were."""
        published = 0
        for observation in observations:
            if observation.kind not in self.kinds:
                continue  # one answer (a Bybit ticker) holds kinds not asked for
            instrument = self.instruments.get(observation.venue_symbol)
            if instrument is None:
                if frame is not None:
                    await self._dead(
                        frame, f"{observation.kind} of {observation.venue_symbol!r}: not configured"
                    )
                continue
            msg_id = f"{self.name}:{observation.identity}"
            if msg_id in self._recent:
                self.stats["duplicates"] += 1
                continue
            datum = datum_of(self.name, observation, instrument)
            data = encode(datum)
            try:
                decode_alt(data)  # the rule sink-alt applies: refused here, with the frame, not there
            except InvalidMessage as exc:
                await self._dead(frame if frame is not None else data, f"{exc.field}: {exc.reason}")
                continue
            self._remember(msg_id)
            key = (observation.kind, observation.venue_symbol)
            if observation.timestamp < self._latest.get(key, 0):
                self.stats["out_of_order"] += 1
            else:
                self._latest[key] = observation.timestamp
            await self.emit(Outgoing(alt_subject(observation.kind), data, msg_id=msg_id), None)
            self.stats[observation.kind] += 1
            published += 1
        return published

    def _remember(self, msg_id: str) -> None:
        self._recent[msg_id] = None
        if len(self._recent) > RECENT_IDS:
            self._recent.popitem(last=False)

    async def _dead(self, frame: str | bytes, reason: str) -> None:
        data = frame.encode() if isinstance(frame, str) else bytes(frame)
        self.stats["dead_letters"] += 1
        self.log.warning("alt.refused", reason=reason[:300])
        await self.emit(DeadFrame(alt_dead_subject(self.name), data, reason, stream=ALT_STREAM), None)
