"""One venue's websocket kept open: what the market-data feed (``feed.VenueFeed``) and the
alternative-data feed (``alt_feed.AltVenueFeed``) share, so that both reconnect the same way.

- Connect, subscribe, read. No frame at all for ``stale_after_s`` (heartbeats and pongs count): the
  stream is stale and the connection is replaced. Application pings go out where the venue wants them
  (``ping_interval_s``); websocket pings are answered by the library, and sent by it every 20 s as well.
- Any disconnect (refused, reset, a failed handshake, closed mid-stream): reconnect with exponential
  backoff and jitter (``trader.bus.backoff.Backoff``, reset once data flows again), and subscribe again.

A feed says what is its own: its URL and subscriptions, what a frame means (``_on_frame``: True when it
carried data), what follows a connection (``_after_connect``: events, a refill from REST) and the end
of a session (``_session_ended``), and what a stale stream is told as (``_on_stale``). ``LOG`` prefixes
its log events (``venue.connected``, ``alt.disconnected``, ...).
"""

from __future__ import annotations

import asyncio
import time
from collections import Counter
from collections.abc import Iterable
from typing import Any, ClassVar, Protocol

from websockets.asyncio.client import connect

from trader.bus.backoff import Backoff, set_within
from trader.config import LiveGatewaySettings

MAX_FRAME_BYTES = 8 * 1024 * 1024
POLL_S = 0.25  # how often a quiet connection checks for staleness, pings and the stop signal


class FeedVenue(Protocol):
    """What the connection asks of a venue (``base.Venue``, ``alt.AltVenue``): its addresses, its
    defaults, and application pings where it wants them."""

    @property
    def name(self) -> str: ...
    @property
    def ws_url(self) -> str: ...
    @property
    def rest_url(self) -> str: ...
    @property
    def rest_rate_per_s(self) -> float: ...
    @property
    def stale_after_s(self) -> float: ...
    @property
    def ping_interval_s(self) -> float | None: ...

    def ping_frame(self) -> str | None: ...


class FeedSettings(Protocol):
    """A venue's settings (``LiveVenueSettings``, ``LiveAltSettings``): None takes the venue's own."""

    @property
    def ws_url(self) -> str | None: ...
    @property
    def rest_url(self) -> str | None: ...
    @property
    def rest_rate_per_s(self) -> float | None: ...
    @property
    def stale_after_s(self) -> float | None: ...


class WebSocketFeed:
    """The connection loop of a feed, and the state it keeps of the connection (``health``)."""

    LOG: ClassVar[str] = "venue"

    def __init__(
        self, venue: FeedVenue, settings: FeedSettings, gateway: LiveGatewaySettings, log: Any
    ) -> None:
        self.venue = venue
        self.name = venue.name
        self.ws_url = settings.ws_url or venue.ws_url
        self.rest_url = settings.rest_url or venue.rest_url
        self.stale_after_s = settings.stale_after_s or venue.stale_after_s
        self.rest_rate = settings.rest_rate_per_s or venue.rest_rate_per_s
        self.gateway = gateway
        self.log = log
        self.stats: Counter[str] = Counter()
        self.connected = False
        self.connections = 0
        self.disconnected_at: float | None = None  # monotonic: since when it is down (None: up, or first try)
        self.last_error: str | None = None  # why the last connection ended

    def _connect_url(self) -> str:
        raise NotImplementedError

    def _subscriptions(self) -> Iterable[str]:
        raise NotImplementedError

    async def _on_frame(self, frame: str | bytes) -> bool:
        """Handle one frame; True when it carried data."""
        raise NotImplementedError

    async def _after_connect(self, previous: str) -> None:
        """Connected and subscribed; ``previous``: why the connection before ended."""

    async def _session_ended(self) -> None:
        """The connection is gone (or the feed stops)."""

    async def _on_stale(self, silent_s: float) -> None:
        """No frame for ``silent_s``: the connection is about to be replaced."""

    async def _connection_loop(self, stop: asyncio.Event) -> None:
        backoff = Backoff(initial=self.gateway.reconnect_initial_s, maximum=self.gateway.reconnect_max_s)
        reason = "first connection"
        while not stop.is_set():
            try:
                reason = await self._session(stop, backoff, reason)
            except asyncio.CancelledError:
                raise
            except Exception as exc:  # refused, reset, handshake failed, closed mid-stream: all reconnect
                reason = f"{type(exc).__name__}: {exc}"
            self.connected = False
            if stop.is_set():
                return
            self.last_error = reason
            if self.disconnected_at is None:
                self.disconnected_at = time.monotonic()
            self.stats["disconnects"] += 1
            delay = backoff.next_delay()
            self.log.warning(f"{self.LOG}.disconnected", reason=reason, retry_in_s=round(delay, 2))
            await set_within(stop, delay)

    async def _session(self, stop: asyncio.Event, backoff: Backoff, previous: str) -> str:
        """One connection, until it ends; why it ended."""
        url = self._connect_url()
        async with connect(url, open_timeout=10, close_timeout=2, max_size=MAX_FRAME_BYTES) as ws:
            for request in self._subscriptions():
                await ws.send(request)
            self.connections += 1
            self.connected = True
            self.disconnected_at = None
            self.log.info(f"{self.LOG}.connected", url=url, connection=self.connections)
            try:
                await self._after_connect(previous)
                return await self._read(ws, stop, backoff)
            finally:
                await self._session_ended()

    async def _read(self, ws: Any, stop: asyncio.Event, backoff: Backoff) -> str:
        loop = asyncio.get_running_loop()
        last_frame = last_ping = loop.time()
        flowing = False
        while not stop.is_set():
            try:
                async with asyncio.timeout(POLL_S):  # not wait_for: see trader.bus.backoff.set_within
                    frame = await ws.recv()
            except TimeoutError:
                frame = None
            now = loop.time()
            if frame is not None:
                last_frame = now
                self.stats["frames"] += 1
                if await self._on_frame(frame) and not flowing:
                    flowing = True
                    backoff.reset()  # data flows again: the next outage starts from a short delay
            elif now - last_frame >= self.stale_after_s:
                await self._on_stale(now - last_frame)
                self.stats["stale"] += 1
                return f"stale: no frame for {self.stale_after_s} s"
            interval = self.venue.ping_interval_s
            if interval is not None and now - last_ping >= interval:
                ping = self.venue.ping_frame()
                if ping is not None:
                    await ws.send(ping)
                last_ping = now
        return "stopping"
