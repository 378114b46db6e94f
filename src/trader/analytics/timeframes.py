"""Higher timeframes (5m, 15m, 1h, 4h, 1d, ...) from the normalizer's 1m bars: the engine of ohlcv-agg.

Pure: no I/O. Each higher bar is exactly the bar of the ticks of its interval, to the last digit:

- Buckets are UTC, aligned to the epoch (so 1d starts at 00:00 UTC), ``start`` inclusive, ``end``
  exclusive; a bar's ``start`` is its bucket's start.
- open is the open of the earliest 1m bar in the bucket, close the close of the latest (minutes do not
  overlap, so the first and last trade of the bucket are there); high and low the extremes; volume,
  notional and trades the sums. Sums are exact (a 60-digit context, like the normalizer's), and VWAP is
  notional / volume rounded to 18 places half-even, as the normalizer rounds the VWAP of its bars.
  Exactness needs the 1m bar's notional (``Bar.notional``): a VWAP times a volume is already rounded. A
  1m bar without it (published before the field existed) counts ``vwap * volume``, and is not exact.
- A minute without ticks has no 1m bar and adds nothing: the higher bar spans the minutes that exist,
  as venues' own candles do. A bucket without any 1m bar makes no bar at all.
- A 1m bar published again for the same minute (the normalizer amends a bar a late tick belongs to)
  replaces the one before it: every higher bar holding that minute changes, and is written and, if it
  had closed, published again. An amendment is a superset of the bar it replaces, so it has more trades.

When a higher bar closes (it is then published; before that it is only written, ``closed`` false):

- when the 1m bar of its last minute, or of any later minute of the series, arrives;
- when the wall clock passes its end plus ``close_after_ms`` (a series whose last minutes were quiet);
  the service gives the wall clock only once it has caught up with the stream, so a replay is not cut.

When the engine forgets a minute, and refuses it if it comes again (``TooLate``): when the series'
event clock (the end of the latest 1m bar of the series) is ``amend_window_ms`` past the minute's end.
The normalizer amends a 1m bar only until its lateness window has passed, and it has seen the end of
every minute it publishes, so with a window at least its lateness plus the time between its flushes no
amendment is refused. That clock is of the messages alone: a replay forgets and refuses exactly as the
first run did. A higher bar is dropped from memory once all its minutes are forgotten and it is stored.
"""

from __future__ import annotations

import heapq
from dataclasses import dataclass, field
from decimal import ROUND_HALF_EVEN, Context, Decimal, localcontext

import msgspec

from trader.marketdata.bars import SCALE, timeframe_ms
from trader.messages import Bar

MINUTE_MS = 60_000
SOURCE_TIMEFRAME = "1m"
DEFAULT_TIMEFRAMES = ("5m", "15m", "1h", "4h", "1d")
_WIDE = Context(prec=60)  # sums of 18-place decimals stay exact, as in trader.marketdata.bars


class TooLate(ValueError):
    """A 1m bar whose minute the engine has already forgotten (its amend window has passed)."""


@dataclass(frozen=True)
class TimeframeConfig:
    timeframes: tuple[str, ...] = DEFAULT_TIMEFRAMES
    amend_window_ms: int = 65_000  # how long after its end a minute may still be amended
    close_after_ms: int = 10_000  # how long after its end the wall clock closes a quiet bucket

    def sizes(self) -> list[tuple[str, int]]:
        """Each timeframe with its size in ms; refuses one that is not a whole number of minutes
        above 1m dividing a day (so that buckets are aligned to the day)."""
        out = []
        for tf in self.timeframes:
            size = timeframe_ms(tf)
            if size % MINUTE_MS or size <= MINUTE_MS:
                raise ValueError(f"timeframe {tf!r} is not a whole number of minutes above 1m")
            out.append((tf, size))
        if len({size for _, size in out}) != len(out):
            raise ValueError(f"timeframes {list(self.timeframes)} name one size twice")
        return out


class Sum(msgspec.Struct):
    """What some minutes of one bucket add up to: the open of the earliest, the close of the latest."""

    open_start: int
    open: Decimal
    close_start: int
    close: Decimal
    high: Decimal
    low: Decimal
    volume: Decimal
    notional: Decimal
    trades: int

    @classmethod
    def of(cls, bar: Bar) -> Sum:
        return cls(
            bar.start,
            bar.open,
            bar.start,
            bar.close,
            bar.high,
            bar.low,
            bar.volume,
            notional_of(bar),
            bar.trades,
        )

    def fold(self, other: Sum) -> None:
        if other.open_start < self.open_start:
            self.open_start, self.open = other.open_start, other.open
        if other.close_start > self.close_start:
            self.close_start, self.close = other.close_start, other.close
        if other.high > self.high:
            self.high = other.high
        if other.low < self.low:
            self.low = other.low
        self.volume = _WIDE.add(self.volume, other.volume)
        self.notional = _WIDE.add(self.notional, other.notional)
        self.trades += other.trades

    def copy(self) -> Sum:
        return msgspec.structs.replace(self)


def notional_of(bar: Bar) -> Decimal:
    if bar.notional is not None:
        return bar.notional
    return _WIDE.multiply(bar.vwap, bar.volume)  # a bar from before the field: not exact


def bar_of(venue: str, symbol: str, timeframe: str, start: int, total: Sum, closed: bool) -> Bar:
    with localcontext(_WIDE):
        vwap = total.notional / total.volume if total.volume else total.close
    return Bar(
        venue=venue,
        symbol=symbol,
        timeframe=timeframe,
        start=start,
        open=total.open,
        high=total.high,
        low=total.low,
        close=total.close,
        volume=total.volume,
        vwap=vwap.quantize(SCALE, rounding=ROUND_HALF_EVEN),
        trades=total.trades,
        closed=closed,
        notional=total.notional,
    )


class Bucket(msgspec.Struct):
    """One higher bar of a series: the minutes already forgotten, summed (``settled``), and flags."""

    timeframe: str
    start: int
    end: int
    settled: Sum | None = None
    closed: bool = False
    written: bool = False  # stored as it is now
    announced: bool = False  # published as it is now (only closed bars are published)


class Series(msgspec.Struct):
    """One (venue, symbol): its recent 1m bars by start, its open buckets, its event clock."""

    venue: str
    symbol: str
    minutes: dict[int, Bar] = msgspec.field(default_factory=dict)
    buckets: list[Bucket] = msgspec.field(default_factory=list)
    event_end: int = 0  # the end of the latest minute seen


class EngineState(msgspec.Struct, frozen=True):
    """Everything the engine knows, for a snapshot."""

    series: list[Series]


@dataclass
class Output:
    """Bars to write (every changed one, open or closed) and to publish (closed and not yet published)."""

    write: list[Bar] = field(default_factory=list)
    publish: list[Bar] = field(default_factory=list)


BucketKey = tuple[str, str, str, int]  # venue, symbol, timeframe, start


class HigherTimeframes:
    """Feed it 1m bars (``add``), take what to store and publish (``take``)."""

    def __init__(self, config: TimeframeConfig | None = None) -> None:
        self.config = config or TimeframeConfig()
        self.sizes = self.config.sizes()
        self._series: dict[tuple[str, str], Series] = {}
        self._buckets: dict[BucketKey, Bucket] = {}
        self._changed: dict[BucketKey, Bucket] = {}  # not written, or closed and not announced
        self._unclosed: list[tuple[int, BucketKey]] = []  # a heap by end, for the wall clock

    # Input ---------------------------------------------------------------------------------------

    def add(self, bar: Bar) -> None:
        """Count a 1m bar (new, or an amendment of its minute). Raises ``TooLate`` or ``ValueError``."""
        if bar.timeframe != SOURCE_TIMEFRAME or bar.start % MINUTE_MS:
            raise ValueError(f"not a 1m bar aligned to the minute: {bar.timeframe} at {bar.start}")
        series = self._series.get((bar.venue, bar.symbol))
        if series is None:
            series = self._series[(bar.venue, bar.symbol)] = Series(bar.venue, bar.symbol)
        end = bar.start + MINUTE_MS
        if end + self.config.amend_window_ms <= series.event_end:
            raise TooLate(
                f"the minute {bar.start} of {bar.venue}:{bar.symbol} came {series.event_end - end} ms after "
                f"later minutes of its series; it may be amended only {self.config.amend_window_ms} ms"
            )
        known = series.minutes.get(bar.start)
        if known is not None and known.trades >= bar.trades:
            return  # the same bar again (a replay), or an older version after a newer one
        series.minutes[bar.start] = bar
        for timeframe, size in self.sizes:
            self._touch(series, timeframe, bar.start - bar.start % size, size)
        if end > series.event_end:
            series.event_end = end
            self._close_through(series, end)
            self._forget(series)

    def _touch(self, series: Series, timeframe: str, start: int, size: int) -> None:
        key = (series.venue, series.symbol, timeframe, start)
        bucket = self._buckets.get(key)
        if bucket is None:
            bucket = self._buckets[key] = Bucket(timeframe, start, start + size)
            series.buckets.append(bucket)
            heapq.heappush(self._unclosed, (bucket.end, key))
        bucket.written = bucket.announced = False
        self._changed[key] = bucket

    def _close_through(self, series: Series, end: int) -> None:
        """A minute ending at ``end`` closes every bucket of its series that ends by then."""
        for bucket in series.buckets:
            if not bucket.closed and bucket.end <= end:
                bucket.closed, bucket.written, bucket.announced = True, False, False
                self._changed[(series.venue, series.symbol, bucket.timeframe, bucket.start)] = bucket

    def _forget(self, series: Series) -> None:
        """Minutes past their amend window are summed into their buckets; buckets of forgotten minutes
        only, and stored, are dropped."""
        horizon = series.event_end - self.config.amend_window_ms  # minutes ending by then are settled
        for start in [s for s in series.minutes if s + MINUTE_MS <= horizon]:
            piece = Sum.of(series.minutes.pop(start))
            for bucket in series.buckets:
                if bucket.start <= start < bucket.end:
                    if bucket.settled is None:
                        bucket.settled = piece.copy()
                    else:
                        bucket.settled.fold(piece)
        self._drop_final(series, horizon)

    def _drop_final(self, series: Series, horizon: int) -> None:
        kept = []
        for bucket in series.buckets:
            key = (series.venue, series.symbol, bucket.timeframe, bucket.start)
            if bucket.end <= horizon and bucket.closed and key not in self._changed:
                del self._buckets[key]
            else:
                kept.append(bucket)
        series.buckets = kept

    # Output --------------------------------------------------------------------------------------

    def take(self, now_ms: int | None = None) -> Output:
        """Close what the wall clock ``now_ms`` closes; the bars to write (changed since written) and
        to publish (closed, and not published as they are), each marked stored."""
        if now_ms is not None:
            self._close_by_clock(now_ms)
        out = Output()
        for key, bucket in self._changed.items():
            bar = self._bar(self._series[(key[0], key[1])], bucket)
            if not bucket.written:
                out.write.append(bar)
                bucket.written = True
            if bucket.closed and not bucket.announced:
                out.publish.append(bar)
                bucket.announced = True
        done, self._changed = self._changed, {}
        for venue, symbol in {(k[0], k[1]) for k in done}:
            series = self._series[(venue, symbol)]
            self._drop_final(series, series.event_end - self.config.amend_window_ms)
        return out

    def _close_by_clock(self, now_ms: int) -> None:
        horizon = now_ms - self.config.close_after_ms
        while self._unclosed and self._unclosed[0][0] <= horizon:
            _, key = heapq.heappop(self._unclosed)
            bucket = self._buckets.get(key)
            if bucket is not None and not bucket.closed:
                bucket.closed, bucket.written, bucket.announced = True, False, False
                self._changed[key] = bucket

    def _total(self, series: Series, bucket: Bucket) -> Sum:
        total = bucket.settled.copy() if bucket.settled is not None else None
        for start, minute in series.minutes.items():
            if bucket.start <= start < bucket.end:
                if total is None:
                    total = Sum.of(minute)
                else:
                    total.fold(Sum.of(minute))
        assert total is not None, "a bucket is made for a minute"
        return total

    def _bar(self, series: Series, bucket: Bucket) -> Bar:
        total = self._total(series, bucket)
        return bar_of(series.venue, series.symbol, bucket.timeframe, bucket.start, total, bucket.closed)

    def bar(self, venue: str, symbol: str, timeframe: str, start: int) -> Bar | None:
        """The bar of a bucket as it is now (None once dropped, or never made)."""
        bucket = self._buckets.get((venue, symbol, timeframe, start))
        if bucket is None:
            return None
        return self._bar(self._series[(venue, symbol)], bucket)

    # State ---------------------------------------------------------------------------------------

    def state(self) -> EngineState:
        # The snapshot is encoded at once (trader.runtime.snapshots), before the engine changes again.
        return EngineState(list(self._series.values()))

    def restore(self, state: EngineState) -> None:
        self._series, self._buckets, self._changed, self._unclosed = {}, {}, {}, []
        for series in state.series:
            self._series[(series.venue, series.symbol)] = series
            for bucket in series.buckets:
                key = (series.venue, series.symbol, bucket.timeframe, bucket.start)
                self._buckets[key] = bucket
                if not bucket.closed:
                    heapq.heappush(self._unclosed, (bucket.end, key))
                if not bucket.written or (bucket.closed and not bucket.announced):
                    self._changed[key] = bucket

    def open_buckets(self) -> int:
        return len(self._buckets)

    def series_count(self) -> int:
        return len(self._series)
