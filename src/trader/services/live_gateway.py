"""live-gateway: trades and top of book from real exchanges (Binance, Coinbase, Kraken, Bybit, OKX).

Consumes: the venues' public websocket APIs (and their REST APIs to fill gaps), as configured in
``live_gateway.venues``; with no venue configured (the default) the service is ready and idle.
Produces: ``market.tick.<venue>.<SYMBOL>`` (stream MARKET_TICKS; the venue is the live_gateway.venues
name, binance, ...; ``Nats-Msg-Id`` ``<venue>:<venue symbol>:<trade id>``, so a trade replayed after a
reconnect or fetched again is stored once), ``market.event.<venue>.<SYMBOL>`` (stream MARKET_EVENTS:
gaps, fills, reconnects, stale streams) and dead letters for the frames
it cannot read (``dlq.live-gateway.<subject>``, the subject being the tick's or ``live.<venue>``).
With ``live_gateway.alt`` set, also the venues' derivatives data (``trader.marketdata.feeds.alt_feed``):
``alt.norm.<kind>`` (stream ALT_DATA: funding, mark_price, index_price, open_interest, liquidation;
``Nats-Msg-Id`` ``<venue>:<kind>:<venue symbol>:<event time>``), its refused frames on
``dlq.live-gateway.alt.live.<venue>``. It keeps no state for them: after a restart the venue's REST
API gives the latest again, and what was published twice is dropped by the stream's duplicate window.
State: per venue and symbol, the last trade id and time stored, checkpointed in the TRADER_STATE bucket
(key ``live-gateway.<venue>``): after a restart the first trade shows what was missed, and it is filled
from REST like any gap (what was published twice is dropped by the stream's duplicate window).
"""

from __future__ import annotations

import asyncio
import time
from typing import Any

import msgspec
from nats.js.kv import KeyValue

from trader.bus.publish import Outgoing
from trader.bus.streams import STATE_BUCKET
from trader.config import Settings
from trader.marketdata.feeds import load_alt_venue, load_venue
from trader.marketdata.feeds.alt_feed import AltVenueFeed
from trader.marketdata.feeds.feed import DeadFrame, Stored, VenueFeed
from trader.runtime.health import Problem, duration
from trader.runtime.service import Refused, Runtime, Service

MAX_BATCH = 500
QUEUE_SIZE = 10_000
RECONNECT_GRACE_S = 5.0  # a venue down this long after a drop is a problem; a reconnect takes less


def checkpoint_key(venue: str) -> str:
    return f"live-gateway.{venue}"


class LiveGateway(Service):
    name = "live-gateway"

    def __init__(self, settings: Settings) -> None:
        super().__init__(settings)
        self.feeds: list[VenueFeed] = []
        self.alt_feeds: list[AltVenueFeed] = []
        self.kv: KeyValue | None = None
        # What the feeds produce, in order; None tells the publisher that the feeds have ended.
        self._queue: asyncio.Queue[tuple[Outgoing | DeadFrame, Stored | None] | None] = asyncio.Queue(
            QUEUE_SIZE
        )
        # venue -> venue symbol -> {"last": id, "last_ts": ms}: what is stored, what a restart resumes from
        self._stored: dict[str, dict[str, dict[str, int | None]]] = {}
        self._saved: dict[str, bytes] = {}

    async def start(self, rt: Runtime) -> None:
        cfg = self.settings.live_gateway
        self.kv = await rt.js.key_value(STATE_BUCKET)
        self.feeds = []
        for name, venue_cfg in cfg.venues.items():
            if not venue_cfg.enabled or not venue_cfg.symbols:
                continue
            restored = await self._load_checkpoint(name)
            self._stored[name] = {vs: dict(state) for vs, state in restored.items()}
            log = rt.log.bind(venue=name)
            self.feeds.append(VenueFeed(load_venue(name)(), venue_cfg, cfg, self._emit, log, restored))
        self.alt_feeds = [
            AltVenueFeed(load_alt_venue(name)(), alt_cfg, cfg, self._emit, rt.log.bind(venue=name, alt=True))
            for name, alt_cfg in cfg.alt.items()
            if alt_cfg.enabled and alt_cfg.symbols and alt_cfg.kinds
        ]
        for alt in self.alt_feeds:
            rt.log.info("live_gateway.alt", venue=alt.name, url=alt.ws_url, **alt.health())
        if not self.feeds and not self.alt_feeds:
            rt.log.info("live_gateway.idle", reason="no venue configured (live_gateway.venues)")
            return
        for feed in self.feeds:
            rt.log.info(
                "live_gateway.venue",
                venue=feed.name,
                url=feed.ws_url,
                rest=feed.rest_url,
                symbols=feed.health()["symbols"],
            )

    async def run(self, rt: Runtime) -> None:
        if not self.feeds and not self.alt_feeds:
            await rt.stopping.wait()
            return
        running: list[VenueFeed | AltVenueFeed] = [*self.feeds, *self.alt_feeds]
        feeds = [asyncio.create_task(feed.run(rt.stopping)) for feed in running]
        publisher = asyncio.create_task(self._publish(rt))
        checkpoints = asyncio.create_task(self._checkpoint_loop(rt))
        await rt.stopping.wait()
        await asyncio.gather(*feeds, return_exceptions=True)
        checkpoints.cancel()
        await self._queue.put(None)
        await publisher

    async def stop(self, rt: Runtime) -> None:
        await self._save_checkpoints(rt)

    def health_details(self) -> dict[str, Any]:
        return {
            "venues": {feed.name: feed.health() for feed in self.feeds},
            "alt": {feed.name: feed.health() for feed in self.alt_feeds},
        }

    def problems(self) -> list[Problem]:
        now = time.monotonic()
        running: list[VenueFeed | AltVenueFeed] = [*self.feeds, *[f for f in self.alt_feeds if f.streamed]]
        return [problem for feed in running if (problem := venue_problem(feed, now)) is not None]

    # Publishing -------------------------------------------------------------------------------

    async def _emit(self, item: Outgoing | DeadFrame, stored: Stored | None) -> None:
        await self._queue.put((item, stored))  # bounded: a slow NATS slows the feeds, nothing is dropped

    async def _publish(self, rt: Runtime) -> None:
        ending = False
        while not ending:
            taken = [await self._queue.get()]
            while len(taken) < MAX_BATCH and not self._queue.empty():
                taken.append(self._queue.get_nowait())
            ending = None in taken
            batch = [entry for entry in taken if entry is not None]
            messages = [item for item, _ in batch if isinstance(item, Outgoing)]
            refused: dict[str, list[Refused]] = {}
            for item, _ in batch:
                if isinstance(item, DeadFrame):
                    refusal = Refused(None, item.subject, item.data, None, item.field, item.reason)
                    refused.setdefault(item.stream, []).append(refusal)
            if messages:
                rt.metrics.count_in(len(messages))
                await rt.publish_reliably(messages)
                self._mark_stored([s for _, s in batch if s is not None])
            for stream, refusals in refused.items():
                await rt.dead_letter(stream, refusals)

    def _mark_stored(self, stored: list[Stored]) -> None:
        for s in stored:
            state = self._stored.setdefault(s.venue, {}).setdefault(
                s.venue_symbol, {"last": None, "last_ts": None}
            )
            if s.seq is not None and (state["last"] is None or s.seq > state["last"]):
                state["last"] = s.seq
            if state["last_ts"] is None or s.timestamp > state["last_ts"]:
                state["last_ts"] = s.timestamp

    # Checkpoints ------------------------------------------------------------------------------

    async def _load_checkpoint(self, venue: str) -> dict[str, dict[str, int | None]]:
        assert self.kv is not None
        try:
            entry = await self.kv.get(checkpoint_key(venue))
        except Exception:  # no checkpoint yet: a first start
            return {}
        if entry.value is None:
            return {}
        try:
            return msgspec.json.decode(entry.value, type=dict[str, dict[str, int | None]])
        except msgspec.DecodeError:
            return {}

    async def _checkpoint_loop(self, rt: Runtime) -> None:
        while not rt.stopping.is_set():
            await asyncio.sleep(self.settings.live_gateway.checkpoint_interval_s)
            try:
                await self._save_checkpoints(rt)
            except Exception as exc:  # the next round tries again; meanwhile a restart only refills more
                rt.metrics.count_error("checkpoint")
                rt.log.warning("checkpoint.failed", error=repr(exc))

    async def _save_checkpoints(self, rt: Runtime) -> None:
        if self.kv is None:
            return
        for venue, states in self._stored.items():
            value = msgspec.json.encode(states)
            if self._saved.get(venue) != value:
                await self.kv.put(checkpoint_key(venue), value)
                self._saved[venue] = value


def venue_problem(feed: VenueFeed | AltVenueFeed, now: float) -> Problem | None:
    """Its job is to be connected: a venue not connected yet, or down past a reconnect's time, is one."""
    if feed.connected:
        return None
    if feed.last_error is None:
        return Problem(f"{feed.name}: connecting to {feed.ws_url}")
    if feed.connections == 0:
        return Problem(f"{feed.name}: disconnected, never connected to {feed.ws_url}: {feed.last_error}")
    down_s = now - (feed.disconnected_at or now)
    if down_s < RECONNECT_GRACE_S:
        return None
    return Problem(f"{feed.name}: disconnected for {duration(down_s)} ({feed.ws_url}): {feed.last_error}")


SERVICE = LiveGateway
