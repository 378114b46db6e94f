"""The one interface of a streaming feature, what it is fed, and the rolling window features share.

Numbers: features are analytics, not money. They are binary floats (float64), as TA-Lib computes them
and as models take them; a price or volume enters from a ``Decimal`` bar once, in ``BarInput.of``,
and nothing computed here ever flows back into an order or a PnL.

A feature is a mutable msgspec struct: its configuration (windows) and its running state are its
fields, so the service snapshots every feature as it is (MessagePack, the ``kind`` tag tells which)
and a restart resumes the very same arithmetic, digit for digit.

Point in time: ``update`` is called once per closed bar, in order, with that bar only; a feature keeps
nothing but what came before, so the value stamped at bar t is computed from bars up to t's close.
Every update is O(1): a running mean and sum of squared deviations over a ring of the last
``window`` values, recomputed exactly (``math.fsum``) once per ``window`` updates so that rounding
never drifts (amortised O(1) too).
"""

from __future__ import annotations

import math
import sys
from decimal import Decimal

import msgspec

from trader.messages import Bar

Values = dict[str, float | None]
EPS = sys.float_info.epsilon
EXACT_ENOUGH = 1e-12  # the rolling variance is recomputed before its rounding bound passes this share


class BarInput(msgspec.Struct, frozen=True, gc=False):
    """One closed bar as the features see it: floats, and what the service knows beside the bar at its
    close (the sided volume of its ticks, the latest cross-venue spread), None when it knows nothing."""

    start: int
    open: float
    high: float
    low: float
    close: float
    volume: float
    vwap: float
    buy_volume: float | None = None
    sell_volume: float | None = None
    spread_bps: float | None = None

    @staticmethod
    def of(
        bar: Bar,
        buy_volume: Decimal | None = None,
        sell_volume: Decimal | None = None,
        spread_bps: float | None = None,
    ) -> BarInput:
        """The one place where a bar's ``Decimal`` prices and volumes become floats."""
        return BarInput(
            bar.start,
            float(bar.open),
            float(bar.high),
            float(bar.low),
            float(bar.close),
            float(bar.volume),
            float(bar.vwap),
            None if buy_volume is None else float(buy_volume),
            None if sell_volume is None else float(sell_volume),
            spread_bps,
        )


class Feature(msgspec.Struct, tag_field="kind", kw_only=True):
    """A streaming feature: ``update`` takes the next closed bar and writes the feature's values (one
    per name in ``columns``; None while warming up) into ``out``. O(1) per bar."""

    names: tuple[str, ...] = ()  # ``columns()``, kept: formatted once, not at every bar

    def __post_init__(self) -> None:
        self.names = self.columns()

    def columns(self) -> tuple[str, ...]:
        raise NotImplementedError

    def lookback(self) -> int:
        """Bars before the first value (TA-Lib's lookback): the warm-up the feature needs."""
        raise NotImplementedError

    def update(self, bar: BarInput, out: Values) -> None:
        raise NotImplementedError


class Rolling(msgspec.Struct, kw_only=True):
    """The last ``n`` values with their mean and sum of squared deviations, updated in O(1) per push by
    Welford's sliding-window step on the values less a reference (the window's mean at the last exact
    recomputation): no sum of squares, and no level, eats the variance's digits (at a price of 60,000
    moving by cents, both would). Recomputed exactly from the window (``math.fsum``, two passes) every
    ``n`` pushes, so that rounding never drifts, and sooner when the variance has fallen so far that the
    rounding bound of the steps since is more than 1e-12 of it (a window of two nearly equal values
    after two far apart): rare, so still O(1) per push on average."""

    n: int
    ring: list[float] = msgspec.field(default_factory=list)
    pos: int = 0
    shift: float = 0.0  # the reference the running mean is kept from
    avg: float = 0.0  # the mean of (value - shift)
    m2: float = 0.0  # the sum of squared deviations from the mean
    m2_error: float = 0.0  # a bound on the rounding m2 has taken since it was exact
    since_exact: int = 0

    def push(self, x: float) -> None:
        ring, n = self.ring, self.n
        if not ring:
            self.shift = x
        d = x - self.shift
        avg = self.avg
        if len(ring) < n:
            ring.append(x)
            delta = d - avg
            self.avg = avg = avg + delta / len(ring)
            self.m2 += delta * (d - avg)
        else:
            pos = self.pos
            old = ring[pos] - self.shift
            ring[pos] = x
            self.pos = pos + 1 if pos + 1 < n else 0
            self.avg = new_avg = avg + (d - old) / n
            change = (d - old) * (d - new_avg + old - avg)
            m2 = self.m2 = self.m2 + change
            self.m2_error += EPS * ((change if change > 0 else -change) + m2)
        self.since_exact += 1
        if (self.since_exact >= n or self.m2_error > EXACT_ENOUGH * self.m2) and len(ring) == n:
            self._exact()  # due, or the variance has shrunk to the size of the rounding it took

    def _exact(self) -> None:
        self.shift = math.fsum(self.ring) / self.n
        deviations = [v - self.shift for v in self.ring]
        self.avg = math.fsum(deviations) / self.n
        self.m2 = math.fsum((d - self.avg) ** 2 for d in deviations)
        self.m2_error, self.since_exact = 0.0, 0

    @property
    def full(self) -> bool:
        return len(self.ring) == self.n

    def mean(self) -> float:
        return self.shift + self.avg

    def std(self) -> float:
        """Population standard deviation (TA-Lib's STDDEV and BBANDS)."""
        return math.sqrt(self.m2 / self.n) if self.m2 > 0 else 0.0
