"""Bars of replayed ticks (venue replay-<venue>, old event times) beside live ones: each on its own clock,
runs that start over, the last bars closed once a replay is quiet, and a restart that rebuilds the same
rows (trader.marketdata.replay_bars)."""

from __future__ import annotations

from decimal import Decimal

from trader.marketdata.bars import BarBuilder
from trader.marketdata.replay_bars import BarsWithReplays
from trader.messages import Bar, MarketTick

T0 = 1_795_600_000_000  # a whole minute, UTC: the replayed range
NOW = T0 + 6 * 3_600_000  # the wall clock while it is replayed: six hours later
LATENESS = 2_000
Entry = tuple[MarketTick, int, int]


def tick(ts: int, price: str, venue: str = "replay-mock", symbol: str = "BTCUSDT") -> MarketTick:
    return MarketTick(
        timestamp=ts,
        exchange="mock",
        venue=venue,
        symbol=symbol,
        price=Decimal(price),
        size=Decimal("0.5"),
        volume=Decimal("0.5"),
    )


def history(first_seq: int, count: int = 300, step_ms: int = 700) -> list[Entry]:
    """A replay of ``count`` ticks from T0, two symbols, arriving now (one stream sequence each)."""
    return [
        (
            tick(T0 + i * step_ms, f"{100 + (i * 7) % 13}.{i % 10}", symbol=("BTCUSDT", "ETHUSDT")[i % 2]),
            first_seq + i,
            NOW + i,
        )
        for i in range(count)
    ]


def written(rows: dict[tuple[str, str, str, int], Bar], *outputs: object) -> None:
    """QuestDB's table after the writes of ``outputs``: one row per bar, the last written wins."""
    for out in outputs:
        for bar in out.bars + out.open_bars:  # type: ignore[attr-defined]
            rows[(bar.venue, bar.symbol, bar.timeframe, bar.start)] = bar


def reference(entries: list[Entry]) -> dict[tuple[str, str, str, int], Bar]:
    """The bars a plain builder makes of the ticks with their event time as arrival, all closed."""
    builder = BarBuilder(["1s", "1m"], LATENESS)
    builder.add_many([(t, seq, t.timestamp) for t, seq, _ in entries])
    rows: dict[tuple[str, str, str, int], Bar] = {}
    written(rows, builder.advance(2**62))
    return rows


def test_replayed_ticks_arriving_hours_later_make_the_bars_of_their_event_time() -> None:
    bars = BarsWithReplays(["1s", "1m"], LATENESS)
    entries = history(first_seq=1)
    assert bars.add_many(entries) == []  # none late, none refused
    rows: dict[tuple[str, str, str, int], Bar] = {}
    written(rows, bars.advance(None))
    expected = reference(entries)
    closed = {k: b for k, b in rows.items() if b.closed}
    assert closed
    assert all(closed[k] == expected[k] for k in closed)
    # The last bar of each series stays open until the replay ends: nothing tells the end from a pause.
    assert {k for k, b in rows.items() if not b.closed} == {
        k for k in expected if k[3] in {max(s for v, y, tf, s in expected if (y, tf) == (k[1], k[2]))}
    }
    written(rows, bars.advance(NOW + 300 + bars.quiet_ms))  # quiet for a bar and the lateness: over
    assert rows == expected
    assert bars.open_bars() == 0


def test_live_ticks_keep_their_own_clock_and_lateness_beside_a_replay() -> None:
    bars = BarsWithReplays(["1s"], LATENESS)
    live = [
        (tick(NOW + 100, "5", venue="mock"), 1, NOW + 150),
        (tick(NOW - 10_000, "6", venue="mock"), 2, NOW + 200),  # 10 s late: refused, as ever
    ]
    replayed = [(tick(T0 + 10, "7"), 3, NOW + 250), (tick(T0 + 1_500, "8"), 4, NOW + 260)]
    assert bars.add_many([live[0], replayed[0], live[1], replayed[1]]) == [(2, "late")]
    out = bars.advance(NOW + 3_100)  # the wall clock closes the live bar, not the replayed ones
    assert [(b.venue, b.start, b.closed) for b in out.bars] == [
        ("mock", NOW, True),
        ("replay-mock", T0, True),
    ]
    assert [(b.venue, b.start, b.closed) for b in out.open_bars] == [("replay-mock", T0 + 1_000, False)]
    assert bars.final_before == NOW + 3_100
    assert bars.replay_final_before == T0 + 1_500
    out = bars.advance(NOW + 260 + bars.quiet_ms)  # no replayed tick for 1 s + the lateness: it is over
    assert [(b.venue, b.start, b.closed) for b in out.bars] == [("replay-mock", T0 + 1_000, True)]


def test_a_second_replay_of_the_same_range_is_a_new_run_with_the_same_bars() -> None:
    bars = BarsWithReplays(["1s", "1m"], LATENESS)
    first, second = history(first_seq=1), history(first_seq=1_001)
    assert bars.add_many(first) == []
    rows: dict[tuple[str, str, str, int], Bar] = {}
    written(rows, bars.advance(None))
    assert bars.add_many(second[:50]) == []  # back in time: not late, a new run; the first one closes
    out = bars.advance(None)
    assert bars.replay_done_seq == 300
    written(rows, out)
    assert bars.add_many(second[50:]) == []
    written(rows, bars.advance(None), bars.advance(NOW + 10**6))
    assert rows == reference(second) == reference(first)


def _run(
    bars: BarsWithReplays, batches: list[list[Entry]], rows: dict, wall: int
) -> list[tuple[int, int, int, int, int]]:
    """Process the batches as the normalizer does; the checkpoint after each."""
    checkpoints = []
    for batch in batches:
        bars.add_many(batch)
        written(rows, bars.advance(wall))
        last = batch[-1][1]
        checkpoints.append(
            (
                bars.resume_seq(last + 1),
                bars.final_before,
                last,
                bars.replay_final_before,
                bars.replay_done_seq,
            )
        )
    return checkpoints


def test_a_restart_from_any_checkpoint_rebuilds_the_same_rows() -> None:
    # A live tick whose open bar keeps the resume point at its start, then two replays of the range.
    stream = [
        (tick(NOW, "1", venue="mock"), 1, NOW),
        *history(first_seq=2, count=120),
        *history(first_seq=122, count=120),
    ]
    batches = [stream[i : i + 17] for i in range(0, len(stream), 17)]
    wall = NOW - 10  # the live bar stays open: the resume point stays at its tick
    expected: dict = {}
    checkpoints = _run(BarsWithReplays(["1s", "1m"], LATENESS), batches, expected, wall)
    for crash_after, (resume, final, last, replay_final, done) in enumerate(checkpoints[:-1]):
        rows: dict = {}
        _run(BarsWithReplays(["1s", "1m"], LATENESS), batches[: crash_after + 1], rows, wall)
        restarted = BarsWithReplays(
            ["1s", "1m"],
            LATENESS,
            final_before=final,
            replay_final_before=replay_final,
            replay_done_seq=done,
            replayed_to=last,
        )
        again = [e for e in stream if e[1] >= resume]
        _run(restarted, [again[i : i + 17] for i in range(0, len(again), 17)], rows, wall)
        assert rows == expected, f"a restart after batch {crash_after}"
