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


def _pushed(ring: Rolling | None, window: int, x: float) -> Rolling:
    """``ring`` with ``x`` pushed (made at the first value: a new feature's fields are its settings)."""
    if ring is None:
        ring = Rolling(n=window)
    ring.push(x)
    return ring


class Windowed(Feature):
    """A feature of one column over the last ``window`` bars, named ``<kind>_<window>``; its first value
    comes at the window's last bar (one bar later for a feature of moves from the previous close)."""

    window: int = 20

    def columns(self) -> tuple[str, ...]:
        return (f"{self.__struct_config__.tag}_{self.window}",)

    def lookback(self) -> int:
        return self.window - 1


class FromPrevious(Windowed):
    """A windowed feature of each bar against the previous close (returns, moves, true ranges): None at
    the first bar, then ``step``'s value; its warm-up is a bar longer."""

    prev_close: float | None = None

    def lookback(self) -> int:
        return self.window

    def update(self, bar: BarInput, out: Values) -> None:
        prev, self.prev_close = self.prev_close, bar.close
        out[self.names[0]] = None if prev is None else self.step(bar, prev)

    def step(self, bar: BarInput, prev: float) -> float | None:
        raise NotImplementedError


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


class Volatility(FromPrevious, tag="volatility"):
    """Rolling volatility: the population standard deviation of the last ``window`` log returns
    (TA-Lib ``STDDEV(log returns, window, 1)``); per bar, not annualised."""

    returns: Rolling | None = None

    def step(self, bar: BarInput, prev: float) -> float | None:
        self.returns = returns = _pushed(self.returns, self.window, math.log(bar.close / prev))
        return returns.std() if returns.full else None


class Sma(Windowed, tag="sma"):
    """Simple moving average of the close (TA-Lib ``SMA``)."""

    closes: Rolling | None = None

    def update(self, bar: BarInput, out: Values) -> None:
        self.closes = closes = _pushed(self.closes, self.window, bar.close)
        out[self.names[0]] = closes.mean() if closes.full else None


class Ema(Windowed, tag="ema"):
    """Exponential moving average of the close, k = 2 / (window + 1), started at the mean of the first
    ``window`` closes (TA-Lib ``EMA``)."""

    seed: list[float] = msgspec.field(default_factory=list)
    value: float | None = None

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


class Rsi(FromPrevious, tag="rsi"):
    """Relative strength index with Wilder's smoothing (TA-Lib ``RSI``)."""

    window: int = 14
    gain: float = 0.0
    loss: float = 0.0
    moves: int = 0

    def step(self, bar: BarInput, prev: float) -> float | None:
        move = bar.close - prev
        n = self.window
        self.moves += 1
        if self.moves <= n:  # the first averages: plain sums, divided once complete
            if move < 0:
                self.loss -= move
            else:
                self.gain += move
            if self.moves < n:
                return None
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
        return 100.0 * (self.gain / total) if not -RSI_ZERO < total < RSI_ZERO else 0.0


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


class BollingerWidth(Windowed, tag="bb_width"):
    """Bollinger band width: (upper - lower) / middle of TA-Lib ``BBANDS(window, deviations,
    deviations, SMA)``, that is 2 * deviations * population std / SMA of the close."""

    deviations: float = 2.0
    closes: Rolling | None = None

    def update(self, bar: BarInput, out: Values) -> None:
        self.closes = closes = _pushed(self.closes, self.window, bar.close)
        middle = closes.mean() if closes.full else 0.0  # None until full, and for a zero mean
        out[self.names[0]] = 2.0 * self.deviations * closes.std() / middle if middle else None


class Atr(FromPrevious, tag="atr"):
    """Average true range with Wilder's smoothing, started at the mean of the first ``window`` true
    ranges (TA-Lib ``ATR``)."""

    window: int = 14
    ranges: list[float] = msgspec.field(default_factory=list)
    value: float | None = None

    def step(self, bar: BarInput, prev: float) -> float | None:
        true_range = max(bar.high - bar.low, abs(prev - bar.high), abs(prev - bar.low))
        n = self.window
        if self.value is None:
            self.ranges.append(true_range)
            if len(self.ranges) < n:
                return None
            self.value = sum(self.ranges) / n
            self.ranges.clear()
        else:
            self.value = (self.value * (n - 1) + true_range) / n
        return self.value


class VwapDeviation(Windowed, tag="vwap_dev"):
    """close / rolling VWAP - 1, the VWAP of the last ``window`` bars (sum of vwap * volume over sum of
    volume); None while those bars have no volume."""

    notional: Rolling | None = None
    volume: Rolling | None = None

    def update(self, bar: BarInput, out: Values) -> None:
        self.notional = notional = _pushed(self.notional, self.window, bar.vwap * bar.volume)
        self.volume = volumes = _pushed(self.volume, self.window, bar.volume)
        volume = volumes.mean() if volumes.full else 0.0  # None until full, and without volume
        out[self.names[0]] = bar.close / (notional.mean() / volume) - 1.0 if volume > 0 else None


class VolumeZ(Windowed, tag="volume_z"):
    """Volume z-score: (volume - its mean) / its population std over the last ``window`` bars, this
    one included (TA-Lib ``SMA`` and ``STDDEV`` of the volume); None when the std is 0."""

    volumes: Rolling | None = None

    def update(self, bar: BarInput, out: Values) -> None:
        self.volumes = volumes = _pushed(self.volumes, self.window, bar.volume)
        std = volumes.std() if volumes.full else 0.0  # None until full, and for a constant volume
        out[self.names[0]] = (bar.volume - volumes.mean()) / std if std > 0 else None


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
