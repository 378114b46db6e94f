"""Higher timeframes from 1m bars equal the bars computed directly from the ticks, to the last digit."""

from __future__ import annotations

from decimal import ROUND_HALF_EVEN, Context, Decimal, localcontext

import msgspec
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from trader.analytics.timeframes import (
    EngineState,
    HigherTimeframes,
    TimeframeConfig,
    TooLate,
)
from trader.marketdata.bars import SCALE, BarBuilder, timeframe_ms
from trader.messages import Bar, MarketTick

DAY = 86_400_000
MIDNIGHT = 19_676 * DAY  # 2023-11-15 00:00 UTC: the ticks straddle a day boundary
LATENESS = 5_000
TIMEFRAMES = ("2m", "5m", "15m", "1h", "1d")
WIDE = Context(prec=60)


def tick(ts: int, price: Decimal, size: Decimal, symbol: str = "BTCUSDT") -> MarketTick:
    return MarketTick(
        timestamp=ts, exchange="mock", venue="mock", symbol=symbol, price=price, size=size, volume=size
    )


def reference_bars(ticks: list[tuple[MarketTick, int]], timeframe: str) -> dict[tuple[str, int], Bar]:
    """The bars of ``timeframe`` straight from accepted ticks (with their stream sequence): first and
    last trade by event time, then by stream order; exact sums; VWAP rounded as the normalizer does."""
    size_ms = timeframe_ms(timeframe)
    groups: dict[tuple[str, int], list[tuple[MarketTick, int]]] = {}
    for t, seq in ticks:
        groups.setdefault((t.symbol, t.timestamp - t.timestamp % size_ms), []).append((t, seq))
    out = {}
    for (symbol, start), items in groups.items():
        items.sort(key=lambda item: (item[0].timestamp, item[1]))
        prices = [t.price for t, _ in items]
        volume = sum((t.size for t, _ in items), Decimal(0))
        notional = sum((WIDE.multiply(t.price, t.size) for t, _ in items), Decimal(0))
        with localcontext(WIDE):
            vwap = (notional / volume).quantize(SCALE, rounding=ROUND_HALF_EVEN)
        out[(symbol, start)] = Bar(
            venue="mock",
            symbol=symbol,
            timeframe=timeframe,
            start=start,
            open=prices[0],
            high=max(prices),
            low=min(prices),
            close=prices[-1],
            volume=volume,
            vwap=vwap,
            trades=len(items),
            closed=True,
            notional=notional,
        )
    return out


prices = st.decimals(min_value=Decimal("0.00000001"), max_value=Decimal("99999"), places=8)
sizes = st.decimals(min_value=Decimal("0.00000001"), max_value=Decimal("50"), places=8)
raw_ticks = st.lists(
    st.tuples(
        # event time around midnight: anywhere, or a few seconds from the end of a 5m bucket, where a
        # late tick amends a 1m bar after the higher bars holding it have closed
        st.one_of(
            st.integers(-3 * 3_600_000, 3 * 3_600_000),
            st.builds(lambda k, d: k * 300_000 + d, st.integers(-2, 2), st.integers(-3_000, 3_000)),
        ),
        prices,
        sizes,
        # arrival delay: mostly on time, some late within the window (amendments), some refused
        st.one_of(st.integers(0, 300), st.integers(300, LATENESS), st.integers(LATENESS + 1, 30_000)),
        st.sampled_from(["BTCUSDT", "ETHUSDT"]),
    ),
    min_size=1,
    max_size=150,
)


def run_pipeline(raw, cuts: list[int] | None, snapshot_at: int | None):
    """Ticks through the normalizer's builder (1m), its closed bars through the engine; with a snapshot
    taken and restored into a new engine once. Returns (accepted ticks, written, published). ``cuts``
    None: every tick a batch of its own, the normalizer flushing after each (most amendments)."""
    # Quiet periods come from the random event times; a tick arrives at event time plus its delay.
    ticks = sorted(
        ((tick(MIDNIGHT + ts, p, s, sym), MIDNIGHT + ts + delay) for ts, p, s, delay, sym in raw),
        key=lambda item: item[1],
    )
    builder = BarBuilder(["1m"], LATENESS)
    engine = HigherTimeframes(TimeframeConfig(TIMEFRAMES, amend_window_ms=600_000, close_after_ms=10_000))
    accepted: list[tuple[MarketTick, int]] = []
    written: dict[tuple, Bar] = {}
    published: dict[tuple, list[Bar]] = {}

    def feed(bars: list[Bar], now: int | None) -> None:
        for bar in bars:
            engine.add(bar)
        out = engine.take(now)
        for bar in out.write:
            written[(bar.symbol, bar.timeframe, bar.start)] = bar
        for bar in out.publish:
            assert bar.closed
            published.setdefault((bar.symbol, bar.timeframe, bar.start), []).append(bar)

    # Batches: cut at the random points, and whenever a batch would span more than a minute of arrivals
    # (the normalizer flushes at least every few seconds; the amend window covers that).
    batches, batch = [], []
    for i, item in enumerate(ticks):
        if batch and (cuts is None or i in cuts or item[1] - batch[0][1] > 60_000):
            batches.append(batch)
            batch = []
        batch.append(item)
    batches.append(batch)
    seq = 0
    for n, batch in enumerate(batches):
        entries = []
        for t, arrival in batch:
            seq += 1
            entries.append((t, seq, arrival))
        refused = {i for i, _ in builder.add_many(entries)}
        accepted += [(t, s) for i, (t, s, _) in enumerate(entries) if i not in refused]
        feed(builder.advance(None).bars, None)
        if snapshot_at == n:
            data = msgspec.json.encode(engine.state())
            engine = HigherTimeframes(engine.config)
            engine.restore(msgspec.json.decode(data, type=EngineState))
    end = max(arrival for _, arrival in ticks) + DAY + 60_000
    feed(builder.advance(end).bars, end)
    return accepted, written, published


@settings(max_examples=150, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(
    raw=raw_ticks,
    cuts=st.none() | st.lists(st.integers(0, 150), max_size=40),
    snapshot_at=st.none() | st.integers(0, 6),
    amendment=st.none() | st.tuples(st.integers(-2, 2), prices, prices, prices),
)
def test_higher_bars_equal_the_bars_of_their_ticks(raw, cuts, snapshot_at, amendment) -> None:
    if amendment is not None:
        # A tick of a bucket's last minute, one of the next bucket (it closes the bars of the first),
        # then a late tick of the last minute again: it amends them after they closed.
        k, p1, p2, p3 = amendment
        end, one = k * 300_000, Decimal(1)
        raw = [*raw, (end - 2_000, p1, one, 0, "BTCUSDT"), (end + 500, p2, one, 0, "BTCUSDT")]
        raw.append((end - 1_000, p3, one, 3_000, "BTCUSDT"))
    accepted, written, published = run_pipeline(raw, cuts, snapshot_at)
    for timeframe in TIMEFRAMES:
        expected = reference_bars(accepted, timeframe)
        got = {(s, start): bar for (s, tf, start), bar in written.items() if tf == timeframe}
        assert got == expected, timeframe
        # The last version published of each bar is the exact one; versions only grow.
        last = {(s, start): bars[-1] for (s, tf, start), bars in published.items() if tf == timeframe}
        assert last == expected, timeframe
        for bars in published.values():
            trades = [b.trades for b in bars]
            assert trades == sorted(set(trades)), "a version published twice, or out of order"


def minute_bar(start: int, price: str, trades: int = 1, *, symbol: str = "BTCUSDT", volume: str = "1") -> Bar:
    p, v = Decimal(price), Decimal(volume)
    return Bar(
        venue="mock",
        symbol=symbol,
        timeframe="1m",
        start=start,
        open=p,
        high=p,
        low=p,
        close=p,
        volume=v,
        vwap=p,
        trades=trades,
        notional=p * v,
    )


def test_a_bucket_closes_with_its_last_minute_and_is_published_once() -> None:
    engine = HigherTimeframes(TimeframeConfig(("5m",)))
    engine.add(minute_bar(MIDNIGHT, "10"))
    out = engine.take()
    assert [b.closed for b in out.write] == [False]
    assert out.publish == []
    engine.add(minute_bar(MIDNIGHT + 4 * 60_000, "12"))  # the last minute of the bucket: it closes
    out = engine.take()
    assert [(b.open, b.close, b.trades, b.closed) for b in out.publish] == [
        (Decimal(10), Decimal(12), 2, True)
    ]
    assert engine.take().write == []  # nothing changed: nothing to write or publish again
    engine.add(minute_bar(MIDNIGHT + 4 * 60_000, "12"))  # the same bar replayed: no change
    assert engine.take().publish == []


def test_an_amended_minute_amends_and_republishes_the_closed_bucket() -> None:
    engine = HigherTimeframes(TimeframeConfig(("5m", "15m"), amend_window_ms=600_000))
    engine.add(minute_bar(MIDNIGHT, "10"))
    engine.add(minute_bar(MIDNIGHT + 5 * 60_000, "11"))  # a later bucket: the first 5m closes
    first = engine.take().publish
    assert [(b.timeframe, b.trades) for b in first] == [("5m", 1)]
    amended = msgspec.structs.replace(minute_bar(MIDNIGHT, "10", trades=2, volume="3"), high=Decimal(15))
    engine.add(amended)
    again = engine.take()
    assert [(b.timeframe, b.high, b.volume, b.trades) for b in again.publish] == [
        ("5m", Decimal(15), Decimal(3), 2)
    ]
    assert {(b.timeframe, b.trades) for b in again.write} == {("5m", 2), ("15m", 3)}


def test_the_wall_clock_closes_a_quiet_bucket() -> None:
    engine = HigherTimeframes(TimeframeConfig(("5m",), close_after_ms=10_000))
    engine.add(minute_bar(MIDNIGHT + 60_000, "10"))  # minutes 2 to 5 have no ticks
    assert engine.take(MIDNIGHT + 5 * 60_000 + 9_999).publish == []
    [bar] = engine.take(MIDNIGHT + 5 * 60_000 + 10_000).publish
    assert (bar.start, bar.trades, bar.closed) == (MIDNIGHT, 1, True)


def test_a_minute_past_its_amend_window_is_refused_and_memory_is_freed() -> None:
    engine = HigherTimeframes(TimeframeConfig(("5m",), amend_window_ms=65_000))
    for minute in range(12):
        engine.add(minute_bar(MIDNIGHT + minute * 60_000, str(10 + minute)))
        engine.take()
    assert engine.open_buckets() == 1  # the first two buckets' minutes are all forgotten: gone
    with pytest.raises(TooLate):
        engine.add(minute_bar(MIDNIGHT + 3 * 60_000, "99", trades=5))
    # A minute within its window still amends its bucket.
    engine.add(minute_bar(MIDNIGHT + 10 * 60_000, "99", trades=5))
    bar = engine.bar("mock", "BTCUSDT", "5m", MIDNIGHT + 10 * 60_000)
    assert bar is not None
    assert (bar.high, bar.trades) == (Decimal(99), 6)


def test_vwap_uses_the_exact_notional() -> None:
    engine = HigherTimeframes(TimeframeConfig(("5m",)))
    # Two minutes whose VWAPs are rounded: their notional gives the exact VWAP of the bucket.
    a = msgspec.structs.replace(
        minute_bar(MIDNIGHT, "1"),
        volume=Decimal(3),
        notional=Decimal(1),
        vwap=Decimal("0.333333333333333333"),
    )
    b = msgspec.structs.replace(
        minute_bar(MIDNIGHT + 60_000, "1"),
        volume=Decimal(3),
        notional=Decimal(1),
        vwap=Decimal("0.333333333333333333"),
    )
    engine.add(a)
    engine.add(b)
    bar = engine.bar("mock", "BTCUSDT", "5m", MIDNIGHT)
    assert bar is not None
    assert (bar.notional, bar.vwap) == (Decimal(2), Decimal("0.333333333333333333"))
    assert bar.volume == Decimal(6)


def test_configuration_is_checked() -> None:
    with pytest.raises(ValueError, match="whole number of minutes"):
        HigherTimeframes(TimeframeConfig(("90s",)))
    with pytest.raises(ValueError, match="does not divide a day"):
        HigherTimeframes(TimeframeConfig(("7m",)))
    with pytest.raises(ValueError, match="name one size twice"):
        HigherTimeframes(TimeframeConfig(("60m", "1h")))
    engine = HigherTimeframes()
    with pytest.raises(ValueError, match="not a 1m bar"):
        engine.add(msgspec.structs.replace(minute_bar(MIDNIGHT, "1"), timeframe="5m"))
