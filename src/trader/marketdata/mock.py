"""Synthetic market data: a geometric random walk per symbol, reproducible from a seed.

The walk runs in floats (it is a simulation), and every value that leaves it is quantized to the
instrument's tick or lot size as a ``Decimal``: what goes on the bus is exact.

Several venues (``MultiVenueTicks``): the main venue's walk is the market's price; every other mock
venue quotes the same instruments around it, each with its own noise (a mean-reverting deviation, in
basis points), its own latency (its prices follow the market's that many milliseconds late) and its own
taker fee (read by spread-analyzer), so their quotes are correlated but not equal, and now and then one
venue's bid passes another's ask by more than the fees: a cross-venue opportunity.
"""

from __future__ import annotations

import math
import random
import zlib
from collections import deque
from dataclasses import dataclass
from decimal import ROUND_DOWN, Decimal

from pydantic import BaseModel, Field

from trader.messages import AltDatum, MarketTick, Side

SECONDS_PER_YEAR = 365 * 24 * 3600
DEFAULT_START_PRICE = Decimal("100.00")


@dataclass
class _Walk:
    symbol: str
    mid: float
    tick_size: Decimal
    lot_size: Decimal
    next_trade_id: int
    seq: int = 0


def _lot_size(price: Decimal) -> Decimal:
    # About one dollar's worth at least, as on the real books: 0.00001 BTC, 0.0001 ETH, 0.01 SOL.
    exponent = max(0, math.ceil(math.log10(float(price))))
    return Decimal(1).scaleb(-exponent)


class TickGenerator:
    """Ticks round-robin over ``symbols``. ``step_seconds`` is the simulated time between two ticks of
    one symbol, which sets the per-step volatility; prices do not depend on the wall clock, so the
    same seed gives the same path whatever the publishing rate achieved."""

    def __init__(
        self,
        symbols: list[str],
        *,
        venue: str = "mock",
        seed: int | None = None,
        volatility: float = 0.6,
        step_seconds: float = 0.1,
        start_prices: dict[str, str] | None = None,
        first_trade_id: int = 1,
    ) -> None:
        if not symbols:
            raise ValueError("the mock feed needs at least one symbol")
        self.venue = venue
        self._rng = random.Random(seed)
        self._sigma = volatility * math.sqrt(step_seconds / SECONDS_PER_YEAR)
        prices = start_prices or {}
        self._walks = []
        for symbol in symbols:
            start = Decimal(prices.get(symbol, DEFAULT_START_PRICE))
            self._walks.append(
                _Walk(symbol, float(start), Decimal("0.01"), _lot_size(start), next_trade_id=first_trade_id)
            )
        self._next = 0

    def next_tick(self, timestamp_ms: int) -> MarketTick:
        walk = self._walks[self._next]
        self._next = (self._next + 1) % len(self._walks)
        rng = self._rng
        walk.mid *= math.exp(-0.5 * self._sigma**2 + self._sigma * rng.gauss(0.0, 1.0))
        mid = max(walk.mid, float(walk.tick_size) * 10)
        half_spread = rng.randint(1, 3) * float(walk.tick_size) / 2
        bid = _quantize(mid - half_spread, walk.tick_size)
        ask = max(_quantize(mid + half_spread, walk.tick_size), bid + walk.tick_size)
        side: Side = "buy" if rng.random() < 0.5 else "sell"
        notional = math.exp(rng.gauss(math.log(2_000.0), 1.0))
        size = max(_quantize(notional / mid, walk.lot_size), walk.lot_size)
        walk.seq += 1
        trade_id = walk.next_trade_id
        walk.next_trade_id += 1
        return MarketTick(
            timestamp=timestamp_ms,
            exchange=self.venue,
            venue=self.venue,
            symbol=walk.symbol,
            price=ask if side == "buy" else bid,  # the aggressor pays the touch
            size=size,
            volume=size,
            bid=bid,
            ask=ask,
            side=side,
            trade_id=str(trade_id),
            source_seq=walk.seq,
        )


class MockVenueSettings(BaseModel):
    """Another mock venue quoting the main one's instruments (``gateway.venues``)."""

    noise_bps: float = Field(default=3.0, ge=0, description="its own deviation's step, in bps")
    latency_ms: int = Field(default=0, ge=0, description="its prices follow the market's this late")
    taker_fee_bps: Decimal = Field(default=Decimal(5), description="what it charges a taker (spreads)")


# Each step keeps this much of a venue's deviation from the market: deviations last a few dozen ticks.
_DEVIATION_KEEP = 0.9
_HISTORY_MS = 10_000  # of the market's mids, for the venues that lag it


class _Follower:
    """One other venue: its deviation per symbol, trade ids and sequence numbers, its own random stream."""

    def __init__(
        self, venue: str, settings: MockVenueSettings, seed: int | None, first_trade_id: int
    ) -> None:
        self.venue, self.settings = venue, settings
        # Its own stream of randomness, the same for the same seed and venue name.
        self.rng = random.Random(None if seed is None else seed * 1_000_003 + zlib.crc32(venue.encode()))
        self.deviation: dict[str, float] = {}
        self.next_trade_id: dict[str, int] = {}
        self.seq: dict[str, int] = {}
        self.first_trade_id = first_trade_id

    def tick(self, market: MarketTick, mid: float) -> MarketTick:
        rng, symbol = self.rng, market.symbol
        step = rng.gauss(0.0, self.settings.noise_bps)
        deviation = _DEVIATION_KEEP * self.deviation.get(symbol, 0.0) + step
        self.deviation[symbol] = deviation
        tick_size = Decimal("0.01")
        mid *= 1 + deviation / 10_000
        mid = max(mid, float(tick_size) * 10)
        half_spread = rng.randint(1, 3) * float(tick_size) / 2
        bid = _quantize(mid - half_spread, tick_size)
        ask = max(_quantize(mid + half_spread, tick_size), bid + tick_size)
        side: Side = "buy" if rng.random() < 0.5 else "sell"
        lot = _lot_size(market.price)
        size = max(_quantize(math.exp(rng.gauss(math.log(2_000.0), 1.0)) / mid, lot), lot)
        trade_id = self.next_trade_id.get(symbol, self.first_trade_id)
        self.next_trade_id[symbol] = trade_id + 1
        self.seq[symbol] = seq = self.seq.get(symbol, 0) + 1
        return MarketTick(
            timestamp=market.timestamp,
            exchange=self.venue,
            venue=self.venue,
            symbol=symbol,
            price=ask if side == "buy" else bid,
            size=size,
            volume=size,
            bid=bid,
            ask=ask,
            side=side,
            trade_id=str(trade_id),
            source_seq=seq,
        )


class MultiVenueTicks:
    """The main venue's ticks (``TickGenerator``, unchanged: the same seed gives the same path), each
    followed by one tick of the same instrument on every other venue, quoted around the market's mid as
    it was ``latency_ms`` before, moved by the venue's own deviation."""

    def __init__(
        self,
        main: TickGenerator,
        venues: dict[str, MockVenueSettings],
        *,
        seed: int | None = None,
        first_trade_id: int = 1,
    ) -> None:
        if main.venue in venues:
            raise ValueError(
                f"mock venue {main.venue!r} is the main venue; the others need names of their own"
            )
        self.main = main
        self._followers = [_Follower(v, s, seed, first_trade_id) for v, s in venues.items()]
        self._mids: dict[str, deque[tuple[int, float]]] = {}

    @property
    def venues(self) -> list[str]:
        return [self.main.venue, *(f.venue for f in self._followers)]

    def next_ticks(self, timestamp_ms: int) -> list[MarketTick]:
        """The main venue's next tick, then the same instrument's on every other venue."""
        market = self.main.next_tick(timestamp_ms)
        if not self._followers:
            return [market]
        assert market.bid is not None  # the main walk always quotes
        assert market.ask is not None
        mids = self._mids.setdefault(market.symbol, deque())
        mids.append((timestamp_ms, (float(market.bid) + float(market.ask)) / 2))
        while mids[0][0] < timestamp_ms - _HISTORY_MS:
            mids.popleft()
        ticks = [market]
        for follower in self._followers:
            ticks.append(follower.tick(market, _mid_at(mids, timestamp_ms - follower.settings.latency_ms)))
        return ticks


def _mid_at(mids: deque[tuple[int, float]], when: int) -> float:
    """The market's mid as it was at ``when``: the latest one at or before it (the oldest kept if none)."""
    found = mids[0][1]
    for at, mid in reversed(mids):
        if at <= when:
            return mid
    return found


def _quantize(value: float, step: Decimal) -> Decimal:
    return (Decimal(repr(value)) / step).to_integral_value(rounding=ROUND_DOWN) * step


class AltGenerator:
    """Funding rates and open interest per symbol, and one market-wide sentiment index (0-100)."""

    def __init__(self, symbols: list[str], *, seed: int | None = None, source: str = "mock") -> None:
        self._rng = random.Random(seed)
        self.source = source
        self._funding = dict.fromkeys(symbols, 0.0001)
        self._open_interest = dict.fromkeys(symbols, 50_000.0)
        self._sentiment = 50.0

    def next_batch(self, timestamp_ms: int) -> list[AltDatum]:
        rng = self._rng
        out: list[AltDatum] = []
        for symbol in self._funding:
            self._funding[symbol] = min(0.0075, max(-0.0075, self._funding[symbol] + rng.gauss(0, 0.00002)))
            self._open_interest[symbol] = max(
                1.0, self._open_interest[symbol] * math.exp(rng.gauss(0, 0.002))
            )
            out.append(
                self._datum(timestamp_ms, "funding_rate", self._funding[symbol], "0.000001", symbol, "rate")
            )
            out.append(
                self._datum(
                    timestamp_ms, "open_interest", self._open_interest[symbol], "0.001", symbol, "contracts"
                )
            )
        self._sentiment = min(100.0, max(0.0, self._sentiment + rng.gauss(0, 1.0)))
        out.append(self._datum(timestamp_ms, "sentiment", self._sentiment, "0.01", None, "index"))
        return out

    def _datum(self, ts: int, kind: str, value: float, step: str, symbol: str | None, unit: str) -> AltDatum:
        return AltDatum(
            timestamp=ts,
            kind=kind,
            source=self.source,
            value=_quantize(value, Decimal(step)),
            symbol=symbol,
            unit=unit,
        )
