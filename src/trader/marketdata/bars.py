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

import math
import re
from collections.abc import Iterable, Sequence
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
        self.fold(_Piece(tick, seq))

    def fold(self, piece: _Piece) -> None:
        """Count a piece: ticks of one bucket of the finest grain, summed up beforehand."""
        if piece.high > self.high:
            self.high = piece.high
        if piece.low < self.low:
            self.low = piece.low
        # Open and close are the first and last trade by event time; the stream order breaks ties,
        # so a late tick that is earlier in event time becomes the open, as it should.
        if (piece.open_ts, piece.open_seq) < (self.first_ts, self.first_seq_of_open):
            self.open, self.first_ts, self.first_seq_of_open = piece.open, piece.open_ts, piece.open_seq
        if (piece.close_ts, piece.close_seq) >= (self.last_ts, self.last_seq):
            self.close, self.last_ts, self.last_seq = piece.close, piece.close_ts, piece.close_seq
        self.volume = _WIDE.add(self.volume, piece.volume)
        self.notional = _WIDE.add(self.notional, piece.notional)
        self.trades += piece.trades
        self.first_seq = min(self.first_seq, piece.first_seq)
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
            notional=self.notional,  # exact, so that ohlcv-agg's higher bars are exact too
        )


class _Piece:
    """What ticks of one series and one bucket of the finest grain add to the bars that hold them.

    A batch is summed up in pieces first, then each piece is counted once per timeframe, instead of
    every tick once per timeframe. Sums are exact (``_WIDE``), so the order of adding changes nothing.
    """

    __slots__ = (
        "close",
        "close_seq",
        "close_ts",
        "first_seq",
        "high",
        "low",
        "notional",
        "open",
        "open_seq",
        "open_ts",
        "trades",
        "volume",
    )

    def __init__(self, tick: MarketTick, seq: int) -> None:
        price, ts = tick.price, tick.timestamp
        self.open = self.close = self.high = self.low = price
        self.open_ts = self.close_ts = ts
        self.open_seq = self.close_seq = self.first_seq = seq
        self.volume = tick.size
        self.notional = _WIDE.multiply(price, tick.size)
        self.trades = 1

    @classmethod
    def summed(
        cls,
        open_: tuple[Decimal, int, int],
        close: tuple[Decimal, int, int],
        high: Decimal,
        low: Decimal,
        volume: Decimal,
        notional: Decimal,
        trades: int,
    ) -> _Piece:
        """A piece summed up elsewhere (the backtest's column-wise bars): the open and close as (price,
        event time, stream sequence), the high and low, the exact sums of sizes and of price times size
        (with the exponents ``Decimal`` addition gives them), and the count of ticks."""
        piece = cls.__new__(cls)
        piece.open, piece.open_ts, piece.open_seq = open_
        piece.close, piece.close_ts, piece.close_seq = close
        piece.first_seq = piece.open_seq
        piece.high, piece.low = high, low
        piece.volume, piece.notional, piece.trades = volume, notional, trades
        return piece

    def add(self, tick: MarketTick, seq: int) -> None:
        price, ts = tick.price, tick.timestamp
        if price > self.high:
            self.high = price
        elif price < self.low:
            self.low = price
        if ts < self.open_ts or (ts == self.open_ts and seq < self.open_seq):
            self.open, self.open_ts, self.open_seq = price, ts, seq
        if ts > self.close_ts or (ts == self.close_ts and seq >= self.close_seq):
            self.close, self.close_ts, self.close_seq = price, ts, seq
        self.volume = _WIDE.add(self.volume, tick.size)
        self.notional = _WIDE.add(self.notional, _WIDE.multiply(price, tick.size))
        self.trades += 1
        if seq < self.first_seq:
            self.first_seq = seq


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
        # The finest grain that every timeframe's buckets are made of: ticks are summed up by it.
        self.grain = math.gcd(*(size for _, size in self.timeframes))

    def is_late(self, tick: MarketTick, arrival_ms: int) -> bool:
        return arrival_ms - tick.timestamp > self.lateness_ms

    def add(self, tick: MarketTick, seq: int, arrival_ms: int) -> str:
        """Take one accepted tick: 'ok', 'late' (refused) or 'replayed' (its bars are final)."""
        refused = self.add_many([(tick, seq, arrival_ms)])
        return refused[0][1] if refused else "ok"

    def add_many(self, entries: Sequence[tuple[MarketTick, int, int]]) -> list[tuple[int, str]]:
        """Take accepted ticks, each with its stream sequence and arrival time, in stream order: the
        same as ``add`` of each in turn. Returns (index, 'late' or 'replayed') of those not counted."""
        late, pieces = self._pieces(entries)
        replayed = [key for key, piece in pieces.items() if not self._count(key, piece)]
        if not replayed:
            return late
        gone = set(replayed)
        grain = self.grain
        for i, (tick, _, arrival_ms) in enumerate(entries):
            key = (tick.venue, tick.symbol, tick.timestamp - tick.timestamp % grain)
            if key in gone and not self.is_late(tick, arrival_ms):
                late.append((i, "replayed"))
        return sorted(late)

    def add_summed(self, venue: str, symbol: str, piece: _Piece, arrival_ms: int) -> bool:
        """Take ticks of one series and one bucket of the grain, none late, summed up beforehand
        (``_Piece.summed``), the latest arriving at ``arrival_ms``: the same as ``add_many`` of them.
        False if their bars are final (replayed)."""
        grain = self.grain
        start = piece.open_ts - piece.open_ts % grain
        if piece.close_ts - piece.close_ts % grain != start:
            raise ValueError("a summed piece must lie in one bucket of the grain")
        if arrival_ms > self.clock:
            self.clock = arrival_ms
        return self._count((venue, symbol, start), piece)

    def _pieces(
        self, entries: Sequence[tuple[MarketTick, int, int]]
    ) -> tuple[list[tuple[int, str]], dict[tuple[str, str, int], _Piece]]:
        """The late ticks, and the others summed up by series and grain, in order of first appearance
        (bars are created in the order their first tick came, as one by one)."""
        late: list[tuple[int, str]] = []
        pieces: dict[tuple[str, str, int], _Piece] = {}
        grain, lateness, clock = self.grain, self.lateness_ms, self.clock
        for i, (tick, seq, arrival_ms) in enumerate(entries):
            ts = tick.timestamp
            if arrival_ms - ts > lateness:
                late.append((i, "late"))
                continue
            if arrival_ms > clock:
                clock = arrival_ms
            key = (tick.venue, tick.symbol, ts - ts % grain)
            piece = pieces.get(key)
            if piece is None:
                pieces[key] = _Piece(tick, seq)
            else:
                piece.add(tick, seq)
        self.clock = clock
        return late, pieces

    def _count(self, key: tuple[str, str, int], piece: _Piece) -> bool:
        """Count a piece in the bar of each timeframe whose bucket is not final; False if none."""
        venue, symbol, grain_start = key
        counted = False
        for timeframe, size in self.timeframes:
            start = grain_start - grain_start % size
            if start + size + self.lateness_ms <= self.final_before:
                continue
            series = self._bars.setdefault((venue, symbol, timeframe), {})
            bar = series.get(start)
            if bar is None:
                bar = series[start] = _Bar(
                    venue,
                    symbol,
                    timeframe,
                    start,
                    start + size,
                    piece.open,
                    piece.open,
                    piece.open,
                    piece.open,
                    piece.open_ts,
                    piece.open_ts,
                    piece.open_seq,
                    piece.open_seq,
                    piece.open_seq,
                )
                # A tick of a later bucket closes the earlier bars of its series.
                for other in series.values():
                    if other.start < start:
                        other.closed = True
            bar.fold(piece)
            counted = True
        return counted

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
