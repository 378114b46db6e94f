"""The feature engine: a feature set per (venue, symbol, timeframe), fed closed bars in order. Pure.

- ``on_bar``: the bar's features (a ``Features`` message), or None for a bar it does not take: a
  timeframe or venue not configured, or a bar not after the last one of its series. An amended bar
  (published again by the normalizer with the same ``start``, after a late tick) is not taken again:
  the features of a bar are those known at its close, and a feature never changes once published
  (point in time). Gaps (a quiet minute has no bar) are not filled: the series is the bars there are,
  as TA-Lib would be given them.
- ``on_tick``: sided volume (ticks naming their aggressor side) summed per bar bucket of event time,
  taken by the bar of that bucket for ``imbalance``; buckets older than a bar taken are dropped, so a
  tick arriving after its bar's features were computed counts nowhere (it is late for them).
- ``on_spread``: the latest cross-venue spread of a symbol (spread-analyzer's best pair, gross basis
  points), taken by each bar of the symbol whose close is after it.

State: every series' features (their running state), the open tick buckets and the latest spreads,
as one msgspec value (``EngineState``) for the service's snapshots.
"""

from __future__ import annotations

from decimal import Decimal

import msgspec

from trader.analytics.features.base import BarInput
from trader.analytics.features.config import FeatureEngSettings
from trader.analytics.features.indicators import AnyFeature
from trader.marketdata.bars import timeframe_ms
from trader.messages import Bar, Features, MarketTick

ZERO = Decimal(0)
# Tick buckets kept per series while their bars have not come (a bar closes after the normalizer's
# lateness window, a few buckets of 1s later); past this the oldest goes.
MAX_OPEN_BUCKETS = 64


class Series(msgspec.Struct, kw_only=True):
    """One (venue, symbol, timeframe): its features and the last bar taken."""

    venue: str
    symbol: str
    timeframe: str
    features: list[AnyFeature]
    last_start: int = -1
    bars: int = 0


class SidedVolume(msgspec.Struct, kw_only=True):
    """The buy and sell volume of the ticks of one bucket of one series (exact, summed as Decimal)."""

    venue: str
    symbol: str
    timeframe: str
    start: int
    buy: Decimal = ZERO
    sell: Decimal = ZERO


class LatestSpread(msgspec.Struct, kw_only=True):
    symbol: str
    timestamp: int
    gross_bps: float | None
    before: tuple[int, float | None] | None = None  # the one before it: (timestamp, gross_bps)


class EngineState(msgspec.Struct, kw_only=True):
    """What the engine knows, whole (the service's snapshot)."""

    series: list[Series]
    sided: list[SidedVolume]
    spreads: list[LatestSpread]


class FeatureEngine:
    def __init__(self, settings: FeatureEngSettings) -> None:
        self.settings = settings
        self.frames = {tf: timeframe_ms(tf) for tf in settings.timeframes}
        self.venues = None if settings.venues is None else frozenset(settings.venues)
        self.columns = settings.columns()
        self.series: dict[tuple[str, str, str], Series] = {}
        self.sided: dict[tuple[str, str, str], dict[int, SidedVolume]] = {}
        self.spreads: dict[str, LatestSpread] = {}
        self.amended = 0  # bars not taken: not after the last one of their series

    # Bars ------------------------------------------------------------------------------------------

    def takes(self, bar: Bar) -> bool:
        return bar.timeframe in self.frames and (self.venues is None or bar.venue in self.venues)

    def on_bar(self, bar: Bar) -> Features | None:
        if not bar.closed or not self.takes(bar):
            return None
        key = (bar.venue, bar.symbol, bar.timeframe)
        series = self.series.get(key)
        if series is None:
            series = self.series[key] = Series(
                venue=bar.venue, symbol=bar.symbol, timeframe=bar.timeframe, features=self._fresh()
            )
        if bar.start <= series.last_start:
            self.amended += 1
            return None
        series.last_start = bar.start
        series.bars += 1
        buy, sell = self._take_sided(key, bar.start)
        end = bar.start + self.frames[bar.timeframe]
        point = BarInput.of(bar, buy, sell, self._spread_before(bar.symbol, end))
        values: dict[str, float | None] = {}
        for feature in series.features:
            feature.update(point, values)
        return Features(
            venue=bar.venue,
            symbol=bar.symbol,
            timeframe=bar.timeframe,
            start=bar.start,
            values=values,
            bars=series.bars,
        )

    def _fresh(self) -> list[AnyFeature]:
        return self.settings.build()  # type: ignore[return-value]

    # Ticks -----------------------------------------------------------------------------------------

    def on_tick(self, tick: MarketTick) -> None:
        if tick.side is None or (self.venues is not None and tick.venue not in self.venues):
            return
        for timeframe, size_ms in self.frames.items():
            key = (tick.venue, tick.symbol, timeframe)
            series = self.series.get(key)
            start = tick.timestamp - tick.timestamp % size_ms
            if series is not None and start <= series.last_start:
                continue  # its bar was taken: late for its features
            buckets = self.sided.setdefault(key, {})
            bucket = buckets.get(start)
            if bucket is None:
                if len(buckets) >= MAX_OPEN_BUCKETS:  # a series whose bars do not come: bounded
                    del buckets[min(buckets)]
                bucket = buckets[start] = SidedVolume(
                    venue=tick.venue, symbol=tick.symbol, timeframe=timeframe, start=start
                )
            if tick.side == "buy":
                bucket.buy += tick.size
            else:
                bucket.sell += tick.size

    def _take_sided(self, key: tuple[str, str, str], start: int) -> tuple[Decimal | None, Decimal | None]:
        buckets = self.sided.get(key)
        if not buckets:
            return None, None
        taken = buckets.pop(start, None)
        for old in [s for s in buckets if s < start]:
            del buckets[old]
        return (None, None) if taken is None else (taken.buy, taken.sell)

    # Spreads ---------------------------------------------------------------------------------------

    def on_spread(self, symbol: str, timestamp: int, gross_bps: float | None) -> None:
        latest = self.spreads.get(symbol)
        if latest is not None and timestamp < latest.timestamp:
            return
        before = None if latest is None else (latest.timestamp, latest.gross_bps)
        self.spreads[symbol] = LatestSpread(
            symbol=symbol, timestamp=timestamp, gross_bps=gross_bps, before=before
        )

    def _spread_before(self, symbol: str, end: int) -> float | None:
        latest = self.spreads.get(symbol)
        if latest is None:
            return None
        if latest.timestamp < end:
            return latest.gross_bps
        if latest.before is not None and latest.before[0] < end:
            return latest.before[1]
        return None

    # State -----------------------------------------------------------------------------------------

    def state(self) -> EngineState:
        return EngineState(
            series=list(self.series.values()),
            sided=[b for buckets in self.sided.values() for b in buckets.values()],
            spreads=list(self.spreads.values()),
        )

    def restore(self, state: EngineState) -> None:
        """The state of a snapshot; a series whose feature set differs from the settings' (the settings
        changed) starts afresh, its warm-up from the bars after the snapshot."""
        wanted = signature(self._fresh())
        self.series = {}
        for series in state.series:
            if signature(series.features) != wanted:
                series = Series(
                    venue=series.venue,
                    symbol=series.symbol,
                    timeframe=series.timeframe,
                    features=self._fresh(),
                )
            self.series[(series.venue, series.symbol, series.timeframe)] = series
        self.sided = {}
        for bucket in state.sided:
            self.sided.setdefault((bucket.venue, bucket.symbol, bucket.timeframe), {})[bucket.start] = bucket
        self.spreads = {s.symbol: s for s in state.spreads}


_CONFIG_FIELDS = ("window", "fast", "slow", "signal", "deviations")


def signature(features: list[AnyFeature]) -> list[tuple[str, dict[str, object]]]:
    """What a feature set is: each feature's kind and windows (not its running state)."""
    return [
        (f.__struct_config__.tag, {k: getattr(f, k) for k in _CONFIG_FIELDS if hasattr(f, k)})  # type: ignore[misc]
        for f in features
    ]
