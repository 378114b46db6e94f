"""Synthetic market data: a geometric random walk per symbol, reproducible from a seed.

The walk runs in floats (it is a simulation), and every value that leaves it is quantized to the
instrument's tick or lot size as a ``Decimal``: what goes on the bus is exact.
"""

from __future__ import annotations

import math
import random
from dataclasses import dataclass
from decimal import ROUND_DOWN, Decimal

from trader.messages import AltDatum, MarketTick

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
        side = "buy" if rng.random() < 0.5 else "sell"
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
