"""Every streaming feature, one small class each (the interface: ``trader.analytics.features.base``).

Each equals TA-Lib's batch function over the same bars after its warm-up (tests/unit/analytics): the
same seeds (an EMA starts at the plain mean of its first ``window`` values, RSI and ATR at Wilder's
averages, MACD's fast average starts at the bar where the slow one does), the same population standard
deviation, the same zero rule (RSI is 0 when the average move is below 1e-8, as TA-Lib's
``TA_IS_ZERO``). Where TA-Lib has no such function (VWAP deviation, volume z-score, imbalance, spread)
the docstring says what is computed. Values are None until the warm-up is done or where the value is
undefined (no volume, a zero mean).
"""

from __future__ import annotations

import math

import msgspec

from trader.analytics.features.base import BarInput, Feature, Rolling, Values

RSI_ZERO = 1e-8  # TA-Lib's TA_IS_ZERO: an average move below this gives RSI 0


def _k(window: int) -> float:
    return 2.0 / (window + 1)


class LogReturn(Feature, tag="log_return"):
    """ln(close / previous close)."""

    prev_close: float | None = None

    def columns(self) -> tuple[str, ...]:
        return ("log_return",)

    def lookback(self) -> int:
        return 1

    def update(self, bar: BarInput, out: Values) -> None:
        prev, self.prev_close = self.prev_close, bar.close
        out["log_return"] = None if prev is None else math.log(bar.close / prev)


class Volatility(Feature, tag="volatility"):
    """Rolling volatility: the population standard deviation of the last ``window`` log returns
    (TA-Lib ``STDDEV(log returns, window, 1)``); per bar, not annualised."""

    window: int = 20
    prev_close: float | None = None
    returns: Rolling | None = None

    def columns(self) -> tuple[str, ...]:
        return (f"volatility_{self.window}",)

    def lookback(self) -> int:
        return self.window

    def update(self, bar: BarInput, out: Values) -> None:
        name = self.names[0]
        prev, self.prev_close = self.prev_close, bar.close
        if prev is None:
            out[name] = None
            return
        if self.returns is None:
            self.returns = Rolling(n=self.window)
        self.returns.push(math.log(bar.close / prev))
        out[name] = self.returns.std() if self.returns.full else None


class Sma(Feature, tag="sma"):
    """Simple moving average of the close (TA-Lib ``SMA``)."""

    window: int = 20
    closes: Rolling | None = None

    def columns(self) -> tuple[str, ...]:
        return (f"sma_{self.window}",)

    def lookback(self) -> int:
        return self.window - 1

    def update(self, bar: BarInput, out: Values) -> None:
        if self.closes is None:
            self.closes = Rolling(n=self.window)
        self.closes.push(bar.close)
        out[self.names[0]] = self.closes.mean() if self.closes.full else None


class Ema(Feature, tag="ema"):
    """Exponential moving average of the close, k = 2 / (window + 1), started at the mean of the first
    ``window`` closes (TA-Lib ``EMA``)."""

    window: int = 20
    seed: list[float] = msgspec.field(default_factory=list)
    value: float | None = None

    def columns(self) -> tuple[str, ...]:
        return (f"ema_{self.window}",)

    def lookback(self) -> int:
        return self.window - 1

    def update(self, bar: BarInput, out: Values) -> None:
        self.value = _ema_step(self.value, self.seed, self.window, bar.close)
        out[self.names[0]] = self.value


def _ema_step(value: float | None, seed: list[float], window: int, x: float) -> float | None:
    """One step of TA-Lib's EMA: the mean of the first ``window`` values, then (x - ema) * k + ema."""
    if value is not None:
        return (x - value) * _k(window) + value
    seed.append(x)
    if len(seed) < window:
        return None
    first = sum(seed) / window
    seed.clear()
    return first


class Rsi(Feature, tag="rsi"):
    """Relative strength index with Wilder's smoothing (TA-Lib ``RSI``)."""

    window: int = 14
    prev_close: float | None = None
    gain: float = 0.0
    loss: float = 0.0
    moves: int = 0

    def columns(self) -> tuple[str, ...]:
        return (f"rsi_{self.window}",)

    def lookback(self) -> int:
        return self.window

    def update(self, bar: BarInput, out: Values) -> None:
        name = self.names[0]
        prev, self.prev_close = self.prev_close, bar.close
        if prev is None:
            out[name] = None
            return
        move = bar.close - prev
        n = self.window
        self.moves += 1
        if self.moves <= n:  # the first averages: plain sums, divided once complete
            if move < 0:
                self.loss -= move
            else:
                self.gain += move
            if self.moves < n:
                out[name] = None
                return
            self.gain /= n
            self.loss /= n
        else:
            self.loss *= n - 1
            self.gain *= n - 1
            if move < 0:
                self.loss -= move
            else:
                self.gain += move
            self.loss /= n
            self.gain /= n
        total = self.gain + self.loss
        out[name] = 100.0 * (self.gain / total) if not -RSI_ZERO < total < RSI_ZERO else 0.0


class Macd(Feature, tag="macd"):
    """MACD: EMA(fast) - EMA(slow) of the close, its EMA(signal), and their difference (TA-Lib
    ``MACD``: both averages start at bar ``slow``, the fast one at the mean of the ``fast`` closes up
    to it)."""

    fast: int = 12
    slow: int = 26
    signal: int = 9
    first: list[float] = msgspec.field(default_factory=list)  # the first ``slow`` closes
    fast_ema: float | None = None
    slow_ema: float | None = None
    signal_seed: list[float] = msgspec.field(default_factory=list)
    signal_ema: float | None = None

    def _suffix(self) -> str:
        return f"{self.fast}_{self.slow}_{self.signal}"

    def columns(self) -> tuple[str, ...]:
        s = self._suffix()
        return (f"macd_{s}", f"macd_signal_{s}", f"macd_hist_{s}")

    def lookback(self) -> int:
        return self.slow - 1 + self.signal - 1

    def update(self, bar: BarInput, out: Values) -> None:
        macd_name, signal_name, hist_name = self.names
        x = bar.close
        if self.slow_ema is None or self.fast_ema is None:
            self.first.append(x)
            if len(self.first) < self.slow:
                out[macd_name] = out[signal_name] = out[hist_name] = None
                return
            self.slow_ema = sum(self.first) / self.slow
            self.fast_ema = sum(self.first[-self.fast :]) / self.fast
            self.first.clear()
        else:
            self.slow_ema = (x - self.slow_ema) * _k(self.slow) + self.slow_ema
            self.fast_ema = (x - self.fast_ema) * _k(self.fast) + self.fast_ema
        macd = self.fast_ema - self.slow_ema
        self.signal_ema = _ema_step(self.signal_ema, self.signal_seed, self.signal, macd)
        if self.signal_ema is None:
            out[macd_name] = out[signal_name] = out[hist_name] = None
            return
        out[macd_name] = macd
        out[signal_name] = self.signal_ema
        out[hist_name] = macd - self.signal_ema


class BollingerWidth(Feature, tag="bb_width"):
    """Bollinger band width: (upper - lower) / middle of TA-Lib ``BBANDS(window, deviations,
    deviations, SMA)``, that is 2 * deviations * population std / SMA of the close."""

    window: int = 20
    deviations: float = 2.0
    closes: Rolling | None = None

    def columns(self) -> tuple[str, ...]:
        return (f"bb_width_{self.window}",)

    def lookback(self) -> int:
        return self.window - 1

    def update(self, bar: BarInput, out: Values) -> None:
        name = self.names[0]
        if self.closes is None:
            self.closes = Rolling(n=self.window)
        self.closes.push(bar.close)
        if not self.closes.full:
            out[name] = None
            return
        middle = self.closes.mean()
        out[name] = 2.0 * self.deviations * self.closes.std() / middle if middle else None


class Atr(Feature, tag="atr"):
    """Average true range with Wilder's smoothing, started at the mean of the first ``window`` true
    ranges (TA-Lib ``ATR``)."""

    window: int = 14
    prev_close: float | None = None
    ranges: list[float] = msgspec.field(default_factory=list)
    value: float | None = None

    def columns(self) -> tuple[str, ...]:
        return (f"atr_{self.window}",)

    def lookback(self) -> int:
        return self.window

    def update(self, bar: BarInput, out: Values) -> None:
        name = self.names[0]
        prev, self.prev_close = self.prev_close, bar.close
        if prev is None:
            out[name] = None
            return
        true_range = max(bar.high - bar.low, abs(prev - bar.high), abs(prev - bar.low))
        n = self.window
        if self.value is None:
            self.ranges.append(true_range)
            if len(self.ranges) < n:
                out[name] = None
                return
            self.value = sum(self.ranges) / n
            self.ranges.clear()
        else:
            self.value = (self.value * (n - 1) + true_range) / n
        out[name] = self.value


class VwapDeviation(Feature, tag="vwap_dev"):
    """close / rolling VWAP - 1, the VWAP of the last ``window`` bars (sum of vwap * volume over sum of
    volume); None while those bars have no volume."""

    window: int = 20
    notional: Rolling | None = None
    volume: Rolling | None = None

    def columns(self) -> tuple[str, ...]:
        return (f"vwap_dev_{self.window}",)

    def lookback(self) -> int:
        return self.window - 1

    def update(self, bar: BarInput, out: Values) -> None:
        name = self.names[0]
        if self.notional is None or self.volume is None:
            self.notional, self.volume = Rolling(n=self.window), Rolling(n=self.window)
        self.notional.push(bar.vwap * bar.volume)
        self.volume.push(bar.volume)
        if not self.volume.full:
            out[name] = None
            return
        volume = self.volume.mean()
        out[name] = bar.close / (self.notional.mean() / volume) - 1.0 if volume > 0 else None


class VolumeZ(Feature, tag="volume_z"):
    """Volume z-score: (volume - its mean) / its population std over the last ``window`` bars, this
    one included (TA-Lib ``SMA`` and ``STDDEV`` of the volume); None when the std is 0."""

    window: int = 20
    volumes: Rolling | None = None

    def columns(self) -> tuple[str, ...]:
        return (f"volume_z_{self.window}",)

    def lookback(self) -> int:
        return self.window - 1

    def update(self, bar: BarInput, out: Values) -> None:
        name = self.names[0]
        if self.volumes is None:
            self.volumes = Rolling(n=self.window)
        self.volumes.push(bar.volume)
        if not self.volumes.full:
            out[name] = None
            return
        std = self.volumes.std()
        out[name] = (bar.volume - self.volumes.mean()) / std if std > 0 else None


class Imbalance(Feature, tag="imbalance"):
    """Buy/sell volume imbalance of the bar's ticks: (buy - sell) / (buy + sell), in [-1, 1], from the
    ticks that name their aggressor side; None when none did (or the ticks are not known)."""

    def columns(self) -> tuple[str, ...]:
        return ("imbalance",)

    def lookback(self) -> int:
        return 0

    def update(self, bar: BarInput, out: Values) -> None:
        buy, sell = bar.buy_volume, bar.sell_volume
        total = (buy or 0.0) + (sell or 0.0)
        out["imbalance"] = ((buy or 0.0) - (sell or 0.0)) / total if total > 0 else None


class Spread(Feature, tag="spread"):
    """The cross-venue spread of the symbol in basis points, as spread-analyzer last published it before
    the bar's close; None when it published none."""

    def columns(self) -> tuple[str, ...]:
        return ("spread_bps",)

    def lookback(self) -> int:
        return 0

    def update(self, bar: BarInput, out: Values) -> None:
        out["spread_bps"] = bar.spread_bps


FEATURE_TYPES: tuple[type[Feature], ...] = (
    LogReturn,
    Volatility,
    Sma,
    Ema,
    Rsi,
    Macd,
    BollingerWidth,
    Atr,
    VwapDeviation,
    VolumeZ,
    Imbalance,
    Spread,
)
KINDS: dict[str, type[Feature]] = {t.__struct_config__.tag: t for t in FEATURE_TYPES}  # type: ignore[misc]
AnyFeature = (
    LogReturn
    | Volatility
    | Sma
    | Ema
    | Rsi
    | Macd
    | BollingerWidth
    | Atr
    | VwapDeviation
    | VolumeZ
    | Imbalance
    | Spread
)
