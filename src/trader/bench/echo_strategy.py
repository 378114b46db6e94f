"""The strategy of `trader bench trading`: one order per tick, so that every tick is an order to time.

Configured with ``kind: trader.bench.echo_strategy:EchoStrategy`` (kept apart from the benchmark's
harness so that the strategy service imports only this). On every tick of its symbols that carries a
quote it submits one IOC limit order of ``quantity`` (a parameter, ``0.001`` by default), buying at the
tick's ask and selling at its bid in turn: marketable on the paper venue, so it fills (or expires when a
newer quote moved away), and the position stays near zero. The limit price is the tick's ask or bid,
which is how the benchmark maps each order back to its tick.
"""

from __future__ import annotations

from typing import Any

from trader.config import StrategyConfig
from trader.messages import MarketTick, Side
from trader.strategies.base import Strategy, StrategyContext


class EchoStrategy(Strategy):
    def __init__(self, config: StrategyConfig, ctx: StrategyContext) -> None:
        super().__init__(config, ctx)
        self.quantity = self.param_decimal("quantity", "0.001", positive=True)
        self.buy_next = True
        self.sent = 0

    def on_tick(self, tick: MarketTick) -> None:
        side: Side = "buy" if self.buy_next else "sell"
        price = tick.ask if side == "buy" else tick.bid
        if price is None:
            return
        self.buy_next = not self.buy_next
        self.ctx.submit(side, tick.symbol, self.quantity, type="limit", price=price, tif="IOC")
        self.sent += 1

    def describe(self) -> dict[str, Any]:
        return {"sent": self.sent, "next_side": "buy" if self.buy_next else "sell"}
