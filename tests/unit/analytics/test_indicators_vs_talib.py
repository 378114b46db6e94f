"""Every streaming feature equals TA-Lib's batch computation over long random bar series, within 1e-9
relative after its warm-up, and is None during it (point in time: the warm-up is exactly TA-Lib's
lookback). Seeded random series, several seeds, windows and price levels."""

from __future__ import annotations

import math

import numpy as np
import pytest

from trader.analytics.features.base import BarInput, Feature
from trader.analytics.features.indicators import (
    Atr,
    BollingerWidth,
    Ema,
    Imbalance,
    LogReturn,
    Macd,
    Rsi,
    Sma,
    Volatility,
    VolumeZ,
    VwapDeviation,
)

talib = pytest.importorskip("talib")

N = 5_000
REL = 1e-9


def random_bars(seed: int, n: int = N, level: float = 100.0) -> dict[str, np.ndarray]:
    """A random walk of closes with highs above and lows below, positive volumes and VWAPs in range."""
    rng = np.random.default_rng(seed)
    close = level * np.exp(np.cumsum(rng.normal(0, 0.01, n)))
    open_ = np.concatenate([[close[0]], close[:-1]]) * np.exp(rng.normal(0, 0.002, n))
    high = np.maximum(open_, close) * (1 + rng.uniform(0, 0.01, n))
    low = np.minimum(open_, close) * (1 - rng.uniform(0, 0.01, n))
    volume = rng.lognormal(2, 1, n)
    vwap = low + (high - low) * rng.uniform(0, 1, n)
    return {"open": open_, "high": high, "low": low, "close": close, "volume": volume, "vwap": vwap}


def stream(feature: Feature, bars: dict[str, np.ndarray], **extra: np.ndarray) -> dict[str, np.ndarray]:
    """The feature fed bar by bar: one array per column, NaN where it gave None."""
    out: dict[str, list[float]] = {c: [] for c in feature.columns()}
    values: dict[str, float | None] = {}
    for i in range(len(bars["close"])):
        bar = BarInput(
            i,
            *(float(bars[k][i]) for k in ("open", "high", "low", "close", "volume", "vwap")),
            **{k: float(v[i]) for k, v in extra.items()},
        )
        feature.update(bar, values)
        for column in out:
            value = values[column]
            out[column].append(math.nan if value is None else value)
    return {c: np.array(v) for c, v in out.items()}


def assert_matches(got: np.ndarray, want: np.ndarray, lookback: int) -> None:
    """None exactly where the reference has no value yet, and within 1e-9 relative after."""
    assert np.isnan(got[:lookback]).all(), "a value before the warm-up is done"
    assert not np.isnan(want[lookback:]).any()
    assert not np.isnan(got[lookback:]).any(), "no value after the warm-up"
    np.testing.assert_allclose(got[lookback:], want[lookback:], rtol=REL, atol=0)


SEEDS = [1, 2, 3]


@pytest.mark.parametrize("seed", SEEDS)
@pytest.mark.parametrize("window", [2, 14, 20, 50])
def test_sma_ema_equal_talib(seed: int, window: int) -> None:
    bars = random_bars(seed)
    for feature, reference in ((Sma(window=window), talib.SMA), (Ema(window=window), talib.EMA)):
        (got,) = stream(feature, bars).values()
        assert_matches(got, reference(bars["close"], timeperiod=window), feature.lookback())


@pytest.mark.parametrize("seed", SEEDS)
@pytest.mark.parametrize("window", [2, 14, 30])
def test_rsi_equals_talib(seed: int, window: int) -> None:
    bars = random_bars(seed)
    feature = Rsi(window=window)
    (got,) = stream(feature, bars).values()
    assert_matches(got, talib.RSI(bars["close"], timeperiod=window), feature.lookback())


@pytest.mark.parametrize("seed", SEEDS)
@pytest.mark.parametrize(("fast", "slow", "signal"), [(12, 26, 9), (5, 35, 5), (3, 4, 2)])
def test_macd_equals_talib(seed: int, fast: int, slow: int, signal: int) -> None:
    bars = random_bars(seed)
    feature = Macd(fast=fast, slow=slow, signal=signal)
    got = list(stream(feature, bars).values())
    want = talib.MACD(bars["close"], fastperiod=fast, slowperiod=slow, signalperiod=signal)
    for g, w in zip(got, want, strict=True):
        assert_matches(g, w, feature.lookback())


def exact_moments(values: np.ndarray, window: int) -> tuple[np.ndarray, np.ndarray]:
    """Each window's mean and population std by a two-pass, exactly summed computation."""
    mean, std = np.full(len(values), math.nan), np.full(len(values), math.nan)
    for i in range(window - 1, len(values)):
        xs = [float(x) for x in values[i - window + 1 : i + 1]]
        m = math.fsum(xs) / window
        mean[i], std[i] = m, math.sqrt(math.fsum((x - m) ** 2 for x in xs) / window)
    return mean, std


# TA-Lib takes a variance as E[x^2] - E[x]^2 from running sums over the whole series, which loses
# digits where the values of a window are close together against their level (a narrow band at a high
# price, two nearly equal volumes): there it is TA-Lib that is off, by 1e-8 and more. So the features
# built on a standard deviation are compared with TA-Lib on series where its arithmetic has 1e-9 to give
# (a spread of a few percent of the level), and with an exact two-pass computation everywhere,
# including the series where TA-Lib's digits run out (test_narrow_bands_keep_their_digits).


def noisy_bars(seed: int, n: int = N, level: float = 100.0, noise: float = 0.05) -> dict[str, np.ndarray]:
    """Closes scattered around a level, a few percent apart: TA-Lib's variance is exact to 1e-12."""
    bars = random_bars(seed, n, level)
    rng = np.random.default_rng(seed + 100)
    bars["close"] = level * (1 + noise * rng.standard_normal(n))
    bars["volume"] = rng.uniform(10, 20, n)
    return bars


@pytest.mark.parametrize("seed", SEEDS)
@pytest.mark.parametrize(("window", "deviations"), [(20, 2.0), (5, 1.5), (100, 3.0)])
def test_bollinger_width_equals_talib(seed: int, window: int, deviations: float) -> None:
    bars = noisy_bars(seed)
    close = bars["close"]
    feature = BollingerWidth(window=window, deviations=deviations)
    (got,) = stream(feature, bars).values()
    upper, middle, lower = talib.BBANDS(
        close, timeperiod=window, nbdevup=deviations, nbdevdn=deviations, matype=0
    )
    assert_matches(got, (upper - lower) / middle, feature.lookback())
    mean, std = exact_moments(close, window)
    assert_matches(got, 2 * deviations * std / mean, feature.lookback())


@pytest.mark.parametrize("seed", SEEDS)
@pytest.mark.parametrize("window", [1, 14, 30])
def test_atr_equals_talib(seed: int, window: int) -> None:
    bars = random_bars(seed)
    feature = Atr(window=window)
    (got,) = stream(feature, bars).values()
    want = talib.ATR(bars["high"], bars["low"], bars["close"], timeperiod=window)
    assert_matches(got, want, feature.lookback())


@pytest.mark.parametrize("seed", SEEDS)
@pytest.mark.parametrize("window", [3, 20, 60])
def test_log_return_and_volatility_equal_talib(seed: int, window: int) -> None:
    bars = random_bars(seed)
    close = bars["close"]
    returns = np.concatenate([[math.nan], np.log(close[1:] / close[:-1])])
    (got,) = stream(LogReturn(), bars).values()
    assert_matches(got, returns, 1)
    feature = Volatility(window=window)
    (got,) = stream(feature, bars).values()
    want = np.concatenate([[math.nan], talib.STDDEV(returns[1:], timeperiod=window, nbdev=1)])
    assert_matches(got, want, feature.lookback())
    _, std = exact_moments(returns[1:], window)
    assert_matches(got, np.concatenate([[math.nan], std]), feature.lookback())


@pytest.mark.parametrize("seed", SEEDS)
@pytest.mark.parametrize("window", [3, 20, 60])
def test_volume_z_equals_talib(seed: int, window: int) -> None:
    bars = noisy_bars(seed)
    volume = bars["volume"]
    feature = VolumeZ(window=window)
    (got,) = stream(feature, bars).values()
    talib_mean, talib_std = talib.SMA(volume, window), talib.STDDEV(volume, window, 1)
    # A z-score near 0 is a difference of nearly equal numbers (the volume and its mean), so both
    # sides are compared as the volume they imply: within 1e-9 of it, with TA-Lib's mean and std.
    assert_matches(
        talib_mean + got * talib_std, np.where(np.isnan(talib_mean), np.nan, volume), feature.lookback()
    )
    mean, std = exact_moments(volume, window)
    assert_matches(got, (volume - mean) / std, feature.lookback())


@pytest.mark.parametrize("seed", SEEDS)
def test_volume_z_of_two_bars_is_exactly_one_either_way(seed: int) -> None:
    """Over two bars the z-score is +1 or -1 whatever the volumes: a window of two nearly equal
    volumes after two far apart keeps its digits (where TA-Lib's does not)."""
    bars = random_bars(seed)
    bars["volume"][::7] *= 1 + 1e-9  # some pairs nearly equal
    bars["volume"][1::7] = bars["volume"][::7][: len(bars["volume"][1::7])]
    (got,) = stream(VolumeZ(window=2), bars).values()
    defined = ~np.isnan(got[1:])
    assert defined.mean() > 0.7
    np.testing.assert_allclose(np.abs(got[1:][defined]), 1.0, rtol=REL, atol=0)


@pytest.mark.parametrize("seed", SEEDS)
@pytest.mark.parametrize("window", [1, 20, 60])
def test_vwap_deviation_equals_the_batch_formula(seed: int, window: int) -> None:
    bars = random_bars(seed)
    notional = np.convolve(bars["vwap"] * bars["volume"], np.ones(window), "full")[:N]
    volume = np.convolve(bars["volume"], np.ones(window), "full")[:N]
    want = bars["close"] / (notional / volume) - 1
    want[: window - 1] = math.nan
    feature = VwapDeviation(window=window)
    (got,) = stream(feature, bars).values()
    assert_matches(got, want, feature.lookback())


def test_imbalance_is_the_share_of_buy_volume_minus_sell() -> None:
    bars = random_bars(4, n=200)
    rng = np.random.default_rng(4)
    buy, sell = rng.uniform(0, 5, 200), rng.uniform(0, 5, 200)
    (got,) = stream(Imbalance(), bars, buy_volume=buy, sell_volume=sell).values()
    np.testing.assert_allclose(got, (buy - sell) / (buy + sell), rtol=REL)
    values: dict[str, float | None] = {}
    Imbalance().update(BarInput(0, 1, 1, 1, 1, 1, 1), values)
    assert values == {"imbalance": None}  # no sided tick: unknown, not 0


def test_narrow_bands_keep_their_digits() -> None:
    """At BTC's level moving by cents, where TA-Lib's variance loses digits, the width still equals
    the exact one to 1e-9 (a window kept from its mean, recomputed exactly before rounding tells)."""
    n = 3_000
    bars = random_bars(7, n=n, level=60_000.0)
    bars["close"] = 60_000.0 + np.cumsum(np.random.default_rng(7).normal(0, 0.01, n))
    feature = BollingerWidth(window=20, deviations=2.0)
    (got,) = stream(feature, bars).values()
    mean, std = exact_moments(bars["close"], 20)
    assert_matches(got, 4 * std / mean, 19)
    upper, middle, lower = talib.BBANDS(bars["close"], 20, 2.0, 2.0, 0)
    talib_error = np.abs((upper - lower) / middle / (4 * std / mean) - 1)[19:]
    assert talib_error.max() > 1e-9, "a series where TA-Lib's own digits run out"
