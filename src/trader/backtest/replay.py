"""The replay engine: stored ticks back onto the bus under a replay venue, paced by their event time.

Pure (no I/O): ``trader.cli.replay`` reads the lake, publishes and sleeps; this module decides what a
tick becomes on the bus and when it is due.

- **Venue**: a tick of venue ``mock`` is republished as venue ``replay-mock`` on
  ``market.tick.replay-mock.<SYMBOL>`` (``trader.config.replay_venue``), with its event time, prices and
  trade id unchanged: a venue of its own, so the normalizer builds its bars apart, and a strategy,
  exeq's paper venue or pnl take it only when pointed at it.
- **Identity**: ``Nats-Msg-Id`` is ``replay:<run>:<venue>:<symbol>:<trade id>`` (a tick without a trade
  id: its event time and lake stream sequence instead). A publish retried within the run is stored
  once; a second replay of the same range is a new run, with new ids.
- **Pacing**: a tick is due ``(event time - first tick's event time) / speed`` after the replay began
  (``Pacer``); speed 0 means as fast as the bus takes them.
"""

from __future__ import annotations

import secrets
from dataclasses import dataclass
from datetime import UTC, datetime

import msgspec

from trader.bus.publish import Outgoing
from trader.bus.streams import tick_subject
from trader.config import replay_venue
from trader.messages import MarketTick, encode


def new_run_id(now_ms: int) -> str:
    """A run id that sorts by start time and never repeats: ``20261203T071500-3f9a1c``."""
    stamp = datetime.fromtimestamp(now_ms / 1000, tz=UTC).strftime("%Y%m%dT%H%M%S")
    return f"{stamp}-{secrets.token_hex(3)}"


def parse_speed(text: str) -> float:
    """``--speed``: a positive multiple of real time, or ``0`` / ``max`` for as fast as possible."""
    if text.strip().lower() in ("max", "0"):
        return 0.0
    try:
        speed = float(text)
    except ValueError:
        raise ValueError(f"--speed {text!r}: a number (10 = ten times real time), or 0 / max") from None
    if not speed > 0 or speed == float("inf"):
        raise ValueError(f"--speed {text!r}: must be above 0 (or 0 / max: as fast as possible)")
    return speed


def replay_message(tick: MarketTick, stream_seq: int | None, run_id: str) -> Outgoing:
    """``tick`` as the replay publishes it: under its replay venue, with the run's message id."""
    venue = replay_venue(tick.venue)
    replayed = msgspec.structs.replace(tick, venue=venue)
    identity = tick.trade_id if tick.trade_id is not None else f"{tick.timestamp}:{stream_seq}"
    msg_id = f"replay:{run_id}:{tick.venue}:{tick.symbol}:{identity}"
    return Outgoing(tick_subject(venue, tick.symbol), encode(replayed), msg_id=msg_id)


@dataclass
class Pacer:
    """Event time to wall time at ``speed``: the first tick asked about is due at once, each later one
    ``(its event time - the first's) / speed`` seconds of wall time after it. ``speed`` 0: all at once.
    Ticks come in time order; one earlier than the one before is due at once."""

    speed: float
    _first_event_ms: int | None = None
    _first_wall_s: float = 0.0

    def wait_s(self, event_ms: int, now_s: float) -> float:
        """How long to wait, from wall time ``now_s``, before a tick of event time ``event_ms`` is due."""
        if self.speed <= 0:
            return 0.0
        if self._first_event_ms is None:
            self._first_event_ms, self._first_wall_s = event_ms, now_s
            return 0.0
        due = self._first_wall_s + (event_ms - self._first_event_ms) / 1000 / self.speed
        return max(due - now_s, 0.0)


@dataclass
class Progress:
    """How far a replay of ``[start_ms, end_ms)`` got: ticks acknowledged, the event time reached, the
    rate since it began (wall seconds from the caller's clock)."""

    start_ms: int
    end_ms: int
    total: int
    started_s: float
    acknowledged: int = 0
    stored: int = 0
    duplicates: int = 0
    event_ms: int | None = None

    def acked(self, event_ms: int, duplicate: bool) -> None:
        self.acknowledged += 1
        if duplicate:
            self.duplicates += 1
        else:
            self.stored += 1
        if self.event_ms is None or event_ms > self.event_ms:
            self.event_ms = event_ms

    def range_fraction(self) -> float:
        """The share of the range's event time the acknowledged ticks reach."""
        if self.event_ms is None:
            return 0.0
        span = max(self.end_ms - self.start_ms, 1)
        return min(max((self.event_ms + 1 - self.start_ms) / span, 0.0), 1.0)

    def rate(self, now_s: float) -> float:
        elapsed = now_s - self.started_s
        return self.acknowledged / elapsed if elapsed > 0 else 0.0

    def line(self, now_s: float) -> str:
        """``12,345 of 50,000 ticks, 24.7% of the range (at 2026-12-01T10:00:05.250Z), 8,123 ticks/s``"""
        at = f" (at {iso_ms(self.event_ms)})" if self.event_ms is not None else ""
        return (
            f"{self.acknowledged:,} of {self.total:,} ticks, {self.range_fraction():.1%} of the range{at}, "
            f"{self.rate(now_s):,.0f} ticks/s"
        )


def iso_ms(ms: int) -> str:
    moment = datetime.fromtimestamp(ms / 1000, tz=UTC)
    return moment.isoformat(timespec="milliseconds").replace("+00:00", "Z")
