"""Moving-average crossover: long when the fast average of closes is above the slow one.

Parameters (strings): ``fast`` (default 5) and ``slow`` (default 20) bars, ``timeframe`` of the bars
(default ``1m``), ``quantity`` (required), ``allow_short`` (default false).

On closed bars of its timeframe, per symbol: the simple moving averages of the last ``fast`` and
``slow`` closes (exact Decimal). When the fast one crosses above the slow one the target position
becomes ``+quantity``; when it crosses below, flat (or ``-quantity`` with ``allow_short``). The first
bar with enough closes only learns which side the fast average is on: a trade needs a cross.

At every bar the position is brought to the target with one market order, never more than one in
flight per symbol (the next bar tries again if an order ended without reaching the target). A
rejection stops trading the symbol until the next cross: the same order would be denied again.
A bar that comes again amended (same ``start``) corrects the last close without a new decision.

Warm-up: at start it asks for the last ``slow`` bars of its timeframe (``warmup``), so the averages
are full and the side known before the first live bar, which trades if it crosses. A cross within
the warm-up bars sets no target: the strategy acts on crosses it sees live only.
"""

from __future__ import annotations

from collections import deque
from collections.abc import Sequence
from decimal import Decimal
from typing import Any

from trader.config import StrategyConfig
from trader.marketdata.bars import timeframe_ms
from trader.messages import Bar, Order
from trader.strategies.base import Strategy, StrategyConfigError, StrategyContext, Warmup

ZERO = Decimal(0)


class _Series:
    """The closes of one symbol and what the strategy decided on them."""

    def __init__(self, slow: int) -> None:
        self.closes: deque[Decimal] = deque(maxlen=slow)
        self.last_start: int | None = None
        self.fast_above: bool | None = None  # the side of the last averages; None until known
        self.target: Decimal | None = None  # the position wanted since the last cross
        self.blocked: str | None = None  # a rejection's reason: no trading until the next cross
        self.fast_ma: Decimal | None = None
        self.slow_ma: Decimal | None = None


class MaCross(Strategy):
    def __init__(self, config: StrategyConfig, ctx: StrategyContext) -> None:
        super().__init__(config, ctx)
        self.fast = self.param_int("fast", "5", minimum=1)
        self.slow = self.param_int("slow", "20", minimum=2)
        if self.fast >= self.slow:
            raise StrategyConfigError(
                f"strategy {self.name}: fast={self.fast} must be below slow={self.slow}"
            )
        self.timeframe = self.param_str("timeframe", "1m")
        try:
            timeframe_ms(self.timeframe)
        except ValueError as exc:
            raise StrategyConfigError(f"strategy {self.name}: {exc}") from None
        self.quantity = self.param_decimal("quantity", positive=True)
        self.allow_short = self.param_bool("allow_short", False)
        self.series = {symbol: _Series(self.slow) for symbol in self.symbols}

    def on_bar(self, bar: Bar) -> None:
        series = self.series.get(bar.symbol)
        if series is None or bar.timeframe != self.timeframe:
            return
        if series.last_start is not None and bar.start <= series.last_start:
            if bar.start == series.last_start:
                series.closes[-1] = bar.close  # an amendment: the decision on this bar stands
            return
        series.last_start = bar.start
        series.closes.append(bar.close)
        if len(series.closes) < self.slow:
            return
        if self.ctx.warming_up:
            self._learn_side(series)  # history primes the averages; only a live cross trades
            return
        self._decide(series)
        self._reconcile(bar.symbol, series)

    def warmup(self) -> Sequence[Warmup]:
        return (Warmup(self.timeframe, self.slow),)

    def on_order(self, order: Order) -> None:
        series = self.series.get(order.symbol)
        if series is not None and order.status == "REJECTED":
            series.blocked = order.reason or "rejected"
            self.log.warning("ma_cross.rejected", client_order_id=order.client_order_id, reason=order.reason)

    def describe(self) -> dict[str, Any]:
        return {
            symbol: {
                "fast_ma": _text(s.fast_ma),
                "slow_ma": _text(s.slow_ma),
                "target": _text(s.target),
                "blocked": s.blocked,
                "bars": len(s.closes),
            }
            for symbol, s in self.series.items()
        }

    def _decide(self, series: _Series) -> None:
        before = series.fast_above
        fast_above = self._learn_side(series)
        if fast_above is not None and before is not None and fast_above != before:
            series.target = self.quantity if fast_above else (-self.quantity if self.allow_short else ZERO)
            series.blocked = None

    def _learn_side(self, series: _Series) -> bool | None:
        """The averages of the closes and the side the fast one is on (kept when they touch)."""
        closes = list(series.closes)
        series.fast_ma = sum(closes[-self.fast :], ZERO) / self.fast
        series.slow_ma = sum(closes, ZERO) / self.slow
        if series.fast_ma != series.slow_ma:  # touching is not crossing: the side stays what it was
            series.fast_above = series.fast_ma > series.slow_ma
        return series.fast_above

    def _reconcile(self, symbol: str, series: _Series) -> None:
        if series.target is None or series.blocked is not None or self.ctx.open_orders(symbol):
            return
        position = self.ctx.position(symbol)
        difference = series.target - position
        if difference == 0:
            return
        # Only reducing (towards flat, not through it): reduce-only, so it can never open anything.
        reducing = abs(series.target) < abs(position) and series.target * position >= 0
        self.ctx.submit(
            "buy" if difference > 0 else "sell", symbol, abs(difference), type="market", reduce_only=reducing
        )


def _text(value: Decimal | None) -> str | None:
    return None if value is None else str(value)
