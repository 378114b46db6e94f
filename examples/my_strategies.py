"""A strategy of your own, as an example: a channel breakout on closed bars.

Put a module like this one in the directory you run `trader` from (or anywhere on the Python path) and
name its class in the configuration, as ``examples/breakout.yaml`` does: ``kind:
"my_strategies:Breakout"`` (from this repository's root, ``examples.my_strategies:Breakout``). Its
tests (``tests/unit/strategies/test_example_breakout.py``) drive it with ``trader.strategies.testing``.
``docs/strategies.md`` walks through all of it.
"""

from __future__ import annotations

from collections import deque
from decimal import Decimal
from typing import Any, NamedTuple

from trader.config import StrategyConfig
from trader.messages import Bar, ExecutionReport, Order
from trader.strategies.base import Strategy, StrategyContext, Warmup


class Range(NamedTuple):
    start: int
    high: Decimal
    low: Decimal


class Breakout(Strategy):
    """Long ``quantity`` when a bar closes above the highest high of the ``lookback`` bars before it;
    flat again when one closes below their lowest low. Market orders, long only, one order at a time.

    Parameters (strings in the configuration, parsed exactly): ``quantity`` (required), ``lookback``
    (bars, default 20), ``timeframe`` (default ``1m``)."""

    def __init__(self, config: StrategyConfig, ctx: StrategyContext) -> None:
        super().__init__(config, ctx)  # a missing or malformed parameter stops only this strategy
        self.quantity = self.param_decimal("quantity", positive=True)
        self.lookback = self.param_int("lookback", "20", minimum=1)
        self.timeframe = self.param_str("timeframe", "1m")
        self.ranges: dict[str, deque[Range]] = {s: deque(maxlen=self.lookback) for s in self.symbols}
        self.breakouts = 0

    def warmup(self) -> list[Warmup]:
        # The channel is full before the first live bar: the service feeds these bars at every start.
        return [Warmup(self.timeframe, self.lookback)]

    def on_bar(self, bar: Bar) -> None:
        if bar.timeframe != self.timeframe:
            return  # on_bar gets every timeframe of the strategy's symbols
        ranges = self.ranges[bar.symbol]
        if ranges and ranges[-1].start == bar.start:
            ranges[-1] = Range(bar.start, bar.high, bar.low)  # the same bar again, amended by a late tick
            return
        # Warm-up bars only fill the channel (orders asked for then would be dropped anyway).
        if len(ranges) == self.lookback and not self.ctx.warming_up:
            self._trade(bar, max(r.high for r in ranges), min(r.low for r in ranges))
        ranges.append(Range(bar.start, bar.high, bar.low))

    def _trade(self, bar: Bar, highest: Decimal, lowest: Decimal) -> None:
        if self.ctx.open_orders(bar.symbol):
            return  # the last order has not ended yet
        held = self.ctx.position(bar.symbol)
        if held == 0 and bar.close > highest:
            self.breakouts += 1
            self.ctx.submit("buy", bar.symbol, self.quantity)
        elif held > 0 and bar.close < lowest:
            self.ctx.submit("sell", bar.symbol, held, reduce_only=True)

    def on_order(self, order: Order) -> None:
        if order.status == "REJECTED":  # a risk limit, or trading halted: the reason says which
            self.log.warning("breakout.rejected", client_order_id=order.client_order_id, reason=order.reason)

    def on_fill(self, report: ExecutionReport) -> None:
        self.log.info(
            "breakout.filled",
            symbol=report.symbol,
            side=report.side,
            quantity=str(report.last_quantity),
            price=str(report.last_price),
            position=str(self.ctx.position(report.symbol)),
        )

    def describe(self) -> dict[str, Any]:
        """Shown in the strategy service's /health."""
        return {"breakouts": self.breakouts, "bars_in_channel": {s: len(r) for s, r in self.ranges.items()}}
