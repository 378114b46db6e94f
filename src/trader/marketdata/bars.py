"""OHLCV bars from ticks, cut by event time, with deterministic lateness.

Rules, chosen so that a replay of the same stream messages gives the same bars to the last digit:

- A tick goes into the bucket of its *event* time, aligned to the timeframe in UTC.
- A tick is *late* when it reached the bus (its JetStream arrival time) more than ``lateness_ms``
  after its event time. That depends on the message alone, not on what was processed before it, so
  every run takes the same decision. Late ticks are refused (the caller dead-letters them).
- A bar in progress is written (not published) whenever it changed, marked not closed.
- A bar *closes* (is written and published) when a tick of a later bucket of its series arrives, or
  when the clock passes the bucket's end plus the lateness window while the series is quiet.
- A bar is *final* once the clock passes its end plus the lateness window: no accepted tick can
  belong to it any more. Until then a tick inside the window *amends* it; the bar is written again.
- The clock is the latest arrival time seen, and the wall clock only while the consumer has no
  backlog (so a replay is not cut short by the wall clock), minus a safety margin.
"""

from __future__ import annotations

import re
from collections.abc import Iterable
from dataclasses import dataclass, field
from decimal import ROUND_HALF_EVEN, Context, Decimal, localcontext

from trader.messages import Bar, MarketTick

SCALE = Decimal("1e-18")  # the stores keep DECIMAL(38, 18)
_WIDE = Context(prec=60)
_UNITS_MS = {"ms": 1, "s": 1000, "m": 60_000, "h": 3_600_000, "d": 86_400_000}


def timeframe_ms(timeframe: str) -> int:
    match = re.fullmatch(r"(\d+)(ms|s|m|h|d)", timeframe)
    if not match or int(match.group(1)) == 0:
        raise ValueError(f"timeframe {timeframe!r} is not like 1s, 5s, 1m, 1h or 1d")
    size = int(match.group(1)) * _UNITS_MS[match.group(2)]
    if _UNITS_MS["d"] % size:
        raise ValueError(f"timeframe {timeframe!r} does not divide a day evenly")
    return size


@dataclass
class _Bar:
    venue: str
    symbol: str
    timeframe: str
    start: int
    end: int
    open: Decimal
    high: Decimal
    low: Decimal
    close: Decimal
    first_ts: int
    last_ts: int
    last_seq: int  # stream sequence of the close: ties in event time go to the later message
    first_seq: int  # lowest stream sequence counted: where a replay must start to rebuild this bar
    first_seq_of_open: int  # stream sequence of the open
    volume: Decimal = Decimal(0)
    notional: Decimal = Decimal(0)
    trades: int = 0
    closed: bool = False
    dirty: bool = True  # changed since last written
    announced: bool = False  # published as closed, as it is now

    def add(self, tick: MarketTick, seq: int) -> None:
        price = tick.price
        if price > self.high:
            self.high = price
        if price < self.low:
            self.low = price
        # Open and close are the first and last trade by event time; the stream order breaks ties,
        # so a late tick that is earlier in event time becomes the open, as it should.
        if (tick.timestamp, seq) < (self.first_ts, self.first_seq_of_open):
            self.open, self.first_ts, self.first_seq_of_open = price, tick.timestamp, seq
        if (tick.timestamp, seq) >= (self.last_ts, self.last_seq):
            self.close, self.last_ts, self.last_seq = price, tick.timestamp, seq
        with localcontext(_WIDE):
            self.volume += tick.size
            self.notional += price * tick.size
        self.trades += 1
        self.first_seq = min(self.first_seq, seq)
        self.dirty = True
        self.announced = False

    def to_message(self) -> Bar:
        with localcontext(_WIDE):
            vwap = self.notional / self.volume if self.volume else self.close
        return Bar(
            venue=self.venue,
            symbol=self.symbol,
            timeframe=self.timeframe,
            start=self.start,
            open=self.open,
            high=self.high,
            low=self.low,
            close=self.close,
            volume=self.volume,
            vwap=vwap.quantize(SCALE, rounding=ROUND_HALF_EVEN),
            trades=self.trades,
            closed=self.closed,
        )


@dataclass
class Output:
    """What one step of the builder produced: closed bars to write and publish (new or amended), and
    open bars that changed, to write only, so the bar in progress can be queried too."""

    bars: list[Bar] = field(default_factory=list)
    open_bars: list[Bar] = field(default_factory=list)
    finalized: int = 0


class BarBuilder:
    def __init__(self, timeframes: Iterable[str], lateness_ms: int, *, final_before: int = 0) -> None:
        self.timeframes = [(tf, timeframe_ms(tf)) for tf in timeframes]
        if not self.timeframes:
            raise ValueError("at least one timeframe is needed")
        self.lateness_ms = lateness_ms
        # Buckets whose end + lateness is at or before this clock were final in an earlier run: their
        # bars are stored, so replayed ticks of theirs are skipped, not counted twice.
        self.final_before = final_before
        self.clock = final_before
        self._bars: dict[tuple[str, str, str], dict[int, _Bar]] = {}

    def is_late(self, tick: MarketTick, arrival_ms: int) -> bool:
        return arrival_ms - tick.timestamp > self.lateness_ms

    def add(self, tick: MarketTick, seq: int, arrival_ms: int) -> str:
        """Take one accepted tick: 'ok', 'late' (refused) or 'replayed' (its bars are final)."""
        if self.is_late(tick, arrival_ms):
            return "late"
        counted = False
        for timeframe, size in self.timeframes:
            start = tick.timestamp - tick.timestamp % size
            if start + size + self.lateness_ms <= self.final_before:
                continue
            series = self._bars.setdefault((tick.venue, tick.symbol, timeframe), {})
            bar = series.get(start)
            if bar is None:
                bar = series[start] = _Bar(
                    tick.venue,
                    tick.symbol,
                    timeframe,
                    start,
                    start + size,
                    tick.price,
                    tick.price,
                    tick.price,
                    tick.price,
                    tick.timestamp,
                    tick.timestamp,
                    seq,
                    seq,
                    seq,
                )
                # A tick of a later bucket closes the earlier bars of its series.
                for other in series.values():
                    if other.start < start:
                        other.closed = True
            bar.add(tick, seq)
            counted = True
        if arrival_ms > self.clock:
            self.clock = arrival_ms
        return "ok" if counted else "replayed"

    def advance(self, now_ms: int | None = None) -> Output:
        """Close what the clock closes; return the bars to write (closed and changed since written)
        and drop the final ones from memory. ``now_ms``: the wall clock, when there is no backlog."""
        if now_ms is not None and now_ms > self.clock:
            self.clock = now_ms
        out = Output()
        for series in self._bars.values():
            for start in sorted(series):
                bar = series[start]
                final = bar.end + self.lateness_ms <= self.clock
                if final:
                    bar.closed = True
                if bar.closed and not bar.announced:
                    out.bars.append(bar.to_message())
                    bar.dirty, bar.announced = False, True
                elif not bar.closed and bar.dirty:
                    out.open_bars.append(bar.to_message())
                    bar.dirty = False
                if final:
                    del series[start]
                    out.finalized += 1
        self.final_before = max(self.final_before, self.clock)
        return out

    def resume_seq(self, next_seq: int) -> int:
        """The first stream sequence a restart must replay from to rebuild every unfinished bar."""
        firsts = [bar.first_seq for series in self._bars.values() for bar in series.values()]
        return min([*firsts, next_seq])

    def open_bars(self) -> int:
        return sum(len(series) for series in self._bars.values())
