"""The bar builder: event-time buckets, lateness, closing, amendments and replay after a restart."""

from __future__ import annotations

from decimal import Decimal
from typing import Any

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from trader.marketdata.bars import BarBuilder, timeframe_ms
from trader.messages import Bar, MarketTick

T0 = 1_795_600_000_000  # a whole minute, UTC


def tick(ts: int, price: str, size: str = "1", symbol: str = "BTCUSDT") -> MarketTick:
    return MarketTick(
        timestamp=ts,
        exchange="x",
        venue="x",
        symbol=symbol,
        price=Decimal(price),
        size=Decimal(size),
        volume=Decimal(size),
    )


def by_start(bars: list[Bar], timeframe: str = "1s") -> dict[int, Bar]:
    return {b.start: b for b in bars if b.timeframe == timeframe}


def test_timeframes_parse_and_bad_ones_are_refused() -> None:
    assert timeframe_ms("1s") == 1_000
    assert timeframe_ms("5m") == 300_000
    for bad in ("0s", "7m", "1w", "s", "1.5s"):
        with pytest.raises(ValueError, match="timeframe"):
            timeframe_ms(bad)


def test_a_bar_is_exact_ohlcv_vwap_and_count() -> None:
    b = BarBuilder(["1s"], lateness_ms=1_000)
    for ts, price, size in [(T0 + 10, "100.5", "2"), (T0 + 500, "101.25", "1"), (T0 + 900, "99.75", "3")]:
        assert b.add(tick(ts, price, size), seq=ts, arrival_ms=ts) == "ok"
    b.add(tick(T0 + 1_100, "100", "1"), seq=T0 + 1_100, arrival_ms=T0 + 1_100)  # next bucket closes it
    bar = by_start(b.advance().bars)[T0]
    assert (bar.open, bar.high, bar.low, bar.close) == tuple(
        Decimal(v) for v in ("100.5", "101.25", "99.75", "99.75")
    )
    assert bar.volume == Decimal(6)
    assert bar.vwap == (Decimal("201") + Decimal("101.25") + Decimal("299.25")) / 6
    assert bar.trades == 3
    assert bar.closed is True


def test_a_late_tick_is_refused_and_one_inside_the_window_amends_the_closed_bar() -> None:
    b = BarBuilder(["1s"], lateness_ms=2_000)
    b.add(tick(T0 + 100, "10"), 1, T0 + 100)
    b.add(tick(T0 + 1_200, "11"), 2, T0 + 1_200)
    first = by_start(b.advance().bars)[T0]
    assert first.trades == 1
    assert b.add(tick(T0 + 50, "9"), 3, T0 + 1_500) == "ok"  # 1.45 s after its event: inside
    amended = by_start(b.advance().bars)[T0]
    assert (amended.open, amended.low, amended.trades) == (Decimal(9), Decimal(9), 2)
    assert b.add(tick(T0 + 60, "8"), 4, T0 + 2_100) == "late"  # 2.04 s after its event: beyond


def test_the_bar_in_progress_is_written_open_and_published_only_once_closed() -> None:
    b = BarBuilder(["1s"], lateness_ms=1_000)
    b.add(tick(T0 + 100, "10"), 1, T0 + 100)
    out = b.advance()
    assert out.bars == []
    assert [bar.closed for bar in out.open_bars] == [False]
    assert b.advance().open_bars == [], "an unchanged open bar is not written again"
    out = b.advance(now_ms=T0 + 2_000)  # quiet: the wall clock passes end + lateness
    assert [(bar.start, bar.closed) for bar in out.bars] == [(T0, True)]
    assert out.finalized == 1
    assert b.open_bars() == 0


def test_a_replay_after_restart_rebuilds_the_same_bars_and_skips_final_ones() -> None:
    ticks = [(tick(T0 + i * 300, str(100 + i)), i + 1, T0 + i * 300 + 5) for i in range(10)]
    first = BarBuilder(["1s"], lateness_ms=500)
    for t, seq, arrival in ticks[:6]:
        first.add(t, seq, arrival)
    written = by_start(first.advance().bars)
    resume, final_before = first.resume_seq(7), first.final_before
    second = BarBuilder(["1s"], lateness_ms=500, final_before=final_before)
    outcomes = [second.add(t, seq, arrival) for t, seq, arrival in ticks[resume - 1 : 6]]
    assert "ok" in outcomes
    assert all(o in ("ok", "replayed") for o in outcomes)
    for t, seq, arrival in ticks[6:]:
        first.add(t, seq, arrival)
        second.add(t, seq, arrival)
    end = T0 + 10_000
    assert by_start(first.advance(end).bars) == by_start(second.advance(end).bars)
    assert set(written).isdisjoint(by_start(second.advance(end).bars))


def tick_rows(
    *more: st.SearchStrategy[Any], within_ms: int, min_thousandths: int, max_rows: int
) -> st.SearchStrategy[list[tuple[Any, ...]]]:
    """Rows of (event time offset, delay to arrival, price in cents, size in thousandths, *more)."""
    row = st.tuples(
        st.integers(0, within_ms - 1),
        st.integers(0, 3_000),
        st.integers(1, 9_999),
        st.integers(min_thousandths, 999),
        *more,
    )
    return st.lists(row, min_size=1, max_size=max_rows)


@settings(max_examples=60, deadline=None)
@given(tick_rows(within_ms=6_000, min_thousandths=1, max_rows=60))
def test_bars_equal_an_independent_computation(rows: list[tuple[int, int, int, int]]) -> None:
    lateness = 1_500
    builder = BarBuilder(["1s", "1m"], lateness_ms=lateness)
    accepted: list[tuple[int, int, Decimal, Decimal]] = []
    written: dict[tuple[str, int], Bar] = {}
    # Arrival order: the stream is ordered by arrival, so sort by it (ties by input order).
    ordered = sorted(enumerate(rows), key=lambda r: (r[1][0] + r[1][1], r[0]))
    for seq, (_, (offset, delay, cents, thousandths)) in enumerate(ordered, start=1):
        t = tick(T0 + offset, str(Decimal(cents) / 100), str(Decimal(thousandths) / 1000))
        if builder.add(t, seq, T0 + offset + delay) == "ok":
            accepted.append((T0 + offset, seq, t.price, t.size))
        for bar in builder.advance().bars:
            written[(bar.timeframe, bar.start)] = bar
    for bar in builder.advance(T0 + 10 * 60_000).bars:
        written[(bar.timeframe, bar.start)] = bar
    for timeframe, size in (("1s", 1_000), ("1m", 60_000)):
        buckets: dict[int, list[tuple[int, int, Decimal, Decimal]]] = {}
        for row in accepted:
            buckets.setdefault(row[0] - row[0] % size, []).append(row)
        assert {s for tf, s in written if tf == timeframe} == set(buckets)
        for start, members in buckets.items():
            members.sort(key=lambda r: (r[0], r[1]))
            bar = written[(timeframe, start)]
            prices = [r[2] for r in members]
            volume = sum((r[3] for r in members), Decimal(0))
            assert (bar.open, bar.close) == (prices[0], prices[-1])
            assert (bar.high, bar.low) == (max(prices), min(prices))
            assert (bar.volume, bar.trades) == (volume, len(members))
            notional = sum((r[2] * r[3] for r in members), Decimal(0))
            assert abs(bar.vwap - notional / volume) < Decimal("1e-17")


@settings(max_examples=80, deadline=None)
@given(
    tick_rows(st.sampled_from(["BTCUSDT", "ETHUSDT"]), within_ms=10_000, min_thousandths=0, max_rows=80),
    st.lists(st.integers(1, 20), min_size=1, max_size=10),  # batch sizes
    st.sampled_from([["1s", "1m"], ["2s", "3s"], ["1s"]]),
    st.integers(0, 4_000),  # bars final before a restart: T0 + this
)
def test_a_batch_counts_exactly_as_its_ticks_one_by_one(
    rows: list[tuple[int, int, int, int, str]],
    sizes: list[int],
    timeframes: list[str],
    final_offset: int,
) -> None:
    one_by_one = BarBuilder(timeframes, lateness_ms=1_500, final_before=T0 + final_offset)
    batched = BarBuilder(timeframes, lateness_ms=1_500, final_before=T0 + final_offset)
    entries = [
        (
            tick(T0 + offset, str(Decimal(cents) / 100), str(Decimal(size) / 1000), symbol),
            seq,
            T0 + offset + delay,
        )
        for seq, (offset, delay, cents, size, symbol) in enumerate(rows, start=1)
    ]
    start = 0
    while start < len(entries):
        batch = entries[start : start + sizes[start % len(sizes)]]
        expected = [(i, o) for i, e in enumerate(batch) if (o := one_by_one.add(*e)) != "ok"]
        assert batched.add_many(batch) == expected
        assert batched.clock == one_by_one.clock
        wall = batch[-1][2]
        assert batched.advance(wall) == one_by_one.advance(wall)
        assert batched.resume_seq(batch[-1][1] + 1) == one_by_one.resume_seq(batch[-1][1] + 1)
        start += len(batch)
    assert batched.advance(T0 + 120_000) == one_by_one.advance(T0 + 120_000)
