"""The feature engine: point in time (changing the future changes no past feature), one series per
(venue, symbol, timeframe), amendments not taken, ticks' sided volume per bar, the spread known at the
close, and a snapshot at any point resuming the very same numbers."""

from __future__ import annotations

import random
from decimal import Decimal

import msgspec
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from trader.analytics.features.config import FeatureEngSettings, FeatureSpec
from trader.analytics.features.engine import EngineState, FeatureEngine
from trader.messages import Bar, Features, MarketTick

MINUTE = 60_000


def make_bars(seed: int, n: int, venue: str = "mock", symbol: str = "BTCUSDT", tf: str = "1m") -> list[Bar]:
    rng = random.Random(seed)
    price = Decimal("60000")
    bars = []
    for i in range(n):
        open_ = price
        price = (price * Decimal(1 + rng.gauss(0, 0.002))).quantize(Decimal("0.01"))
        high = max(open_, price) + Decimal(rng.randint(0, 500)) / 100
        low = min(open_, price) - Decimal(rng.randint(0, 500)) / 100
        volume = Decimal(rng.randint(1, 10_000)) / 1000
        bars.append(
            Bar(
                venue=venue,
                symbol=symbol,
                timeframe=tf,
                start=i * MINUTE,
                open=open_,
                high=high,
                low=low,
                close=price,
                volume=volume,
                vwap=((high + low) / 2).quantize(Decimal("0.01")),
                trades=rng.randint(1, 50),
            )
        )
    return bars


def engine() -> FeatureEngine:
    return FeatureEngine(FeatureEngSettings(timeframes=["1m"]))


def run(bars: list[Bar]) -> list[Features]:
    e = engine()
    return [f for bar in bars if (f := e.on_bar(bar)) is not None]


@settings(max_examples=25, deadline=None)
@given(seed=st.integers(0, 10_000), cut=st.integers(1, 199), future_seed=st.integers(0, 10_000))
def test_changing_the_future_changes_no_past_feature(seed: int, cut: int, future_seed: int) -> None:
    bars = make_bars(seed, 200)
    other_future = make_bars(future_seed, 200)
    changed = bars[:cut] + [b for b in other_future[cut:]]
    a, b = run(bars), run(changed)
    assert a[:cut] == b[:cut]
    assert len(a) == len(b) == 200


def test_every_feature_has_its_value_once_warmed_up_and_none_before() -> None:
    features = run(make_bars(1, 60))
    columns = FeatureEngSettings().columns()
    assert set(features[0].values) == set(columns)
    last = features[-1].values
    for column in columns:
        if column in ("imbalance", "spread_bps"):
            assert last[column] is None  # no ticks, no spreads given
        else:
            assert isinstance(last[column], float), column
    assert features[0].values["sma_20"] is None
    assert features[19].values["sma_20"] is not None
    assert features[32].values["macd_12_26_9"] is None
    assert features[33].values["macd_12_26_9"] is not None
    assert [f.bars for f in features] == list(range(1, 61))


def test_an_amended_or_older_bar_is_not_taken_again() -> None:
    e = engine()
    bars = make_bars(2, 30)
    for bar in bars:
        assert e.on_bar(bar) is not None
    amended = msgspec.structs.replace(bars[-1], volume=bars[-1].volume + 1, trades=bars[-1].trades + 1)
    assert e.on_bar(amended) is None
    assert e.on_bar(bars[3]) is None
    assert e.amended == 2
    assert e.on_bar(msgspec.structs.replace(bars[-1], start=30 * MINUTE)) is not None


def test_series_are_kept_apart_by_venue_symbol_and_timeframe() -> None:
    e = FeatureEngine(FeatureEngSettings(timeframes=["1m", "1s"], venues=["mock", "binance"]))
    mock, binance = make_bars(3, 40), make_bars(4, 40, venue="binance")
    eth = make_bars(5, 40, symbol="ETHUSDT")
    out = {}
    for trio in zip(mock, binance, eth, strict=True):
        for bar in trio:
            f = e.on_bar(bar)
            assert f is not None
            out.setdefault((f.venue, f.symbol), []).append(f)
    assert out[("mock", "BTCUSDT")] == run(mock)
    assert out[("binance", "BTCUSDT")] == run(binance)
    assert e.on_bar(make_bars(6, 1, venue="kraken")[0]) is None  # a venue not configured
    assert e.on_bar(make_bars(6, 1, tf="5m")[0]) is None  # a timeframe not configured


def tick(ts: int, side: str | None, size: str, venue: str = "mock") -> MarketTick:
    return MarketTick(
        timestamp=ts,
        exchange=venue,
        venue=venue,
        symbol="BTCUSDT",
        price=Decimal("60000"),
        size=Decimal(size),
        volume=Decimal(size),
        side=side,  # type: ignore[arg-type]
    )


def test_imbalance_is_of_the_ticks_of_the_bar_and_late_ticks_count_nowhere() -> None:
    e = engine()
    bars = make_bars(7, 3)
    e.on_tick(tick(10, "buy", "3"))
    e.on_tick(tick(20, "sell", "1"))
    e.on_tick(tick(30, None, "100"))  # no side: not counted
    e.on_tick(tick(MINUTE + 5, "sell", "2"))  # the next bar's
    e.on_tick(tick(40, "buy", "5", venue="binance"))  # another venue's
    first = e.on_bar(bars[0])
    assert first is not None
    assert first.values["imbalance"] == pytest.approx(0.5)  # (3 - 1) / 4
    e.on_tick(tick(50, "buy", "9"))  # late: its bar's features are out
    second = e.on_bar(bars[1])
    assert second is not None
    assert second.values["imbalance"] == -1.0
    third = e.on_bar(bars[2])
    assert third is not None
    assert third.values["imbalance"] is None  # no sided tick
    assert not e.sided[("mock", "BTCUSDT", "1m")]  # taken, or dropped as older than a bar taken


def test_the_spread_is_the_latest_published_before_the_close() -> None:
    e = engine()
    bars = make_bars(8, 3)
    e.on_spread("BTCUSDT", 30_000, 12.5)
    e.on_spread("BTCUSDT", MINUTE + 10, 7.25)  # after the first bar's close
    e.on_spread("ETHUSDT", 10, 99.0)
    first, second = e.on_bar(bars[0]), e.on_bar(bars[1])
    assert first is not None
    assert first.values["spread_bps"] == 12.5
    assert second is not None
    assert second.values["spread_bps"] == 7.25


@settings(max_examples=20, deadline=None)
@given(seed=st.integers(0, 10_000), cut=st.integers(0, 120))
def test_a_snapshot_at_any_point_resumes_the_same_numbers(seed: int, cut: int) -> None:
    bars = make_bars(seed, 120)
    e = engine()
    e.on_spread("BTCUSDT", 1, 3.5)
    first = [e.on_bar(b) for b in bars[:cut]]
    e.on_tick(tick(cut * MINUTE + 1, "buy", "2"))
    state = msgspec.msgpack.decode(msgspec.msgpack.encode(e.state()), type=EngineState)
    resumed = engine()
    resumed.restore(state)
    rest = [resumed.on_bar(b) for b in bars[cut:]]
    whole = engine()
    whole.on_spread("BTCUSDT", 1, 3.5)
    expected = [whole.on_bar(b) for b in bars[:cut]]
    whole.on_tick(tick(cut * MINUTE + 1, "buy", "2"))
    expected += [whole.on_bar(b) for b in bars[cut:]]
    assert first + rest == expected


def test_a_snapshot_of_another_feature_set_starts_the_series_afresh() -> None:
    bars = make_bars(9, 40)
    e = engine()
    for bar in bars[:30]:
        e.on_bar(bar)
    other = FeatureEngine(FeatureEngSettings(timeframes=["1m"], features=[FeatureSpec(kind="sma", window=5)]))
    other.restore(e.state())
    out = [other.on_bar(b) for b in bars[30:]]
    assert out[0] is not None
    assert out[0].values == {"sma_5": None}
    assert out[4] is not None
    assert out[4].values["sma_5"] is not None
