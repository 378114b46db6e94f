"""Bars of live and replayed ticks side by side: each kind on a clock of its own.

The normalizer's ``BarBuilder`` keeps one clock, the latest arrival, and calls a tick late when it
arrived more than the lateness window after its event time. Ticks that ``trader replay`` republishes
(venue ``replay-<venue>``, docs/backtest.md "Replay") keep their event time from the lake: by arrival
every one is late, and its buckets were final long ago. So they go to a builder of their own, in which
a tick's event time stands for its arrival (as in a backtest): bars cut by event time, closed when a
tick of a later bucket comes, never late, whatever the live clock says.

A replay is a run through a range in time order. A run ends, its bars all closed, and the builder
begins again when
- a replayed tick comes more than the lateness window before the replay clock (the latest replayed event
  time): a new run, so a second replay of the same range builds the same bars again rather than its
  ticks being refused as late;
- or no replayed tick has arrived for the largest timeframe plus the lateness window of wall time: the
  replay is over, and its last bars close. A replay paced at real time or faster never pauses that long
  inside a bar; one slower than real time may, and then a bar is stored in two parts, the later
  overwriting the earlier in QuestDB.
One replay at a time: two of different ranges at once would be taken for runs starting over and over.

Restarts: the checkpoint keeps the current run's horizon (``replay_final_before``: its ticks of final
bars are skipped when read again, as live ones are) and the last stream sequence of the runs that ended
(``replay_done_seq``: their ticks are skipped). Ticks at or below ``replayed_to`` (processed before the
restart) never start a run.
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence

from trader.config import is_replay_venue
from trader.marketdata.bars import BarBuilder, Output, timeframe_ms
from trader.messages import MarketTick

Entry = tuple[MarketTick, int, int]  # a tick, its stream sequence, its arrival time (ms)
_END_OF_TIME = 2**62


class BarsWithReplays:
    """``BarBuilder``'s interface over two builders: live venues' ticks and replay venues' ticks."""

    def __init__(
        self,
        timeframes: Iterable[str],
        lateness_ms: int,
        *,
        final_before: int = 0,
        replay_final_before: int = 0,
        replay_done_seq: int = 0,
        replayed_to: int = 0,
    ) -> None:
        self.timeframes = list(timeframes)
        self.lateness_ms = lateness_ms
        self.replayed_to = replayed_to
        self.replay_done_seq = replay_done_seq  # the ticks of ended runs reach this far
        self.quiet_ms = max(timeframe_ms(tf) for tf in self.timeframes) + lateness_ms
        self._last_seq = replay_done_seq  # the last replayed tick taken
        self._last_arrival_ms: int | None = None  # when it arrived (None: no run open since the start)
        self.live = BarBuilder(self.timeframes, lateness_ms, final_before=final_before)
        self.replay = BarBuilder(self.timeframes, lateness_ms, final_before=replay_final_before)
        self._ended = Output()  # bars of runs that ended, for the next ``advance``

    @property
    def final_before(self) -> int:
        return self.live.final_before

    @property
    def replay_final_before(self) -> int:
        return self.replay.final_before

    def add_many(self, entries: Sequence[Entry]) -> list[tuple[int, str]]:
        """As ``BarBuilder.add_many``: (index, 'late' or 'replayed') of the ticks not counted."""
        live: list[tuple[int, Entry]] = []
        replayed: list[tuple[int, Entry]] = []
        done: list[tuple[int, str]] = []
        for i, entry in enumerate(entries):
            if not is_replay_venue(entry[0].venue):
                live.append((i, entry))
            elif entry[1] <= self.replay_done_seq:
                done.append((i, "replayed"))  # a run that ended before a restart: its bars are stored
            else:
                replayed.append((i, entry))
        if not replayed and not done:
            return self.live.add_many(entries)
        outcomes = done + self._add(self.live, live)
        for run in self._runs(replayed):
            outcomes += self._add(self.replay, run)
        if replayed:
            self._last_arrival_ms = max(arrival for _, (_, _, arrival) in replayed)
        return sorted(outcomes)

    def _runs(self, replayed: list[tuple[int, Entry]]) -> list[list[tuple[int, Entry]]]:
        """The replayed ticks, event time standing for arrival, cut where a new run begins (the builder
        is renewed there: the later pieces go to the new one)."""
        runs: list[list[tuple[int, Entry]]] = [[]]
        clock = self.replay.clock
        for i, (tick, seq, _arrival) in replayed:
            ts = tick.timestamp
            if seq > self.replayed_to and ts < clock - self.lateness_ms:
                runs.append([])
                clock = ts
            clock = max(clock, ts)
            runs[-1].append((i, (tick, seq, ts)))
        return runs

    def _add(self, builder: BarBuilder, indexed: list[tuple[int, Entry]]) -> list[tuple[int, str]]:
        if builder is self.replay and indexed and self._starts_run(indexed[0][1]):
            self._end_run()
            builder = self.replay
        if not indexed:
            return []
        outcomes = builder.add_many([entry for _, entry in indexed])
        if builder is self.replay:
            self._last_seq = max(self._last_seq, max(seq for _, (_, seq, _) in indexed))
        return [(indexed[j][0], outcome) for j, outcome in outcomes]

    def _starts_run(self, entry: Entry) -> bool:
        tick, seq, _ = entry
        return seq > self.replayed_to and tick.timestamp < self.replay.clock - self.lateness_ms

    def _end_run(self) -> None:
        """Close every bar of the run so far and begin a builder of no history."""
        self.replay_done_seq = self._last_seq
        ended = self.replay.advance(_END_OF_TIME)
        self._ended.bars += ended.bars
        self._ended.open_bars += ended.open_bars
        self._ended.finalized += ended.finalized
        self.replay = BarBuilder(self.timeframes, self.lateness_ms)

    def advance(self, now_ms: int | None = None) -> Output:
        """The live bars the clock (and ``now_ms``, the wall clock) closes, the replayed bars their own
        clock closes, and those of ended runs."""
        last = self._last_arrival_ms
        if last is not None and now_ms is not None and now_ms - last >= self.quiet_ms:
            self._end_run()
            self._last_arrival_ms = None
        out, self._ended = self._ended, Output()
        for part in (self.live.advance(now_ms), self.replay.advance(None)):
            out.bars += part.bars
            out.open_bars += part.open_bars
            out.finalized += part.finalized
        return out

    def resume_seq(self, next_seq: int) -> int:
        return min(self.live.resume_seq(next_seq), self.replay.resume_seq(next_seq))

    def open_bars(self) -> int:
        return self.live.open_bars() + self.replay.open_bars()
