"""Strategies for the backtest tests: one that sends a script of orders, one that raises, one that
trades on alternative data."""

from __future__ import annotations

from decimal import Decimal

from trader.config import StrategyConfig
from trader.messages import AltDatum, ExecutionReport, Features, MarketTick, Order
from trader.strategies.base import Strategy, StrategyContext


class Scripted(Strategy):
    """``script``: ``<tick n>:<side>:<type>:<quantity>[:<price>[:<tif>]]`` items joined by ``;``, each sent
    on the n-th tick it hears of (from 1). It records what it hears, to check the engine feeds it."""

    def __init__(self, config: StrategyConfig, ctx: StrategyContext) -> None:
        super().__init__(config, ctx)
        self.script: dict[int, list[list[str]]] = {}
        for item in self.param_str("script").split(";"):
            n, *terms = item.split(":")
            self.script.setdefault(int(n), []).append(terms)
        self.ticks = 0
        self.fills: list[ExecutionReport] = []
        self.states: list[Order] = []

    def on_tick(self, tick: MarketTick) -> None:
        self.ticks += 1
        for side, kind, quantity, *rest in self.script.get(self.ticks, []):
            price = Decimal(rest[0]) if rest and rest[0] else None
            tif = rest[1] if len(rest) > 1 else "GTC"
            self.ctx.submit(side, tick.symbol, Decimal(quantity), type=kind, price=price, tif=tif)  # type: ignore[arg-type]

    def on_fill(self, report: ExecutionReport) -> None:
        self.fills.append(report)

    def on_order(self, order: Order) -> None:
        self.states.append(order)


class Raising(Strategy):
    """Raises on its ``at``-th tick."""

    def __init__(self, config: StrategyConfig, ctx: StrategyContext) -> None:
        super().__init__(config, ctx)
        self.at = self.param_int("at")
        self.ticks = 0

    def on_tick(self, tick: MarketTick) -> None:
        self.ticks += 1
        if self.ticks == self.at:
            raise ZeroDivisionError("the strategy's own bug")


class AltTrader(Strategy):
    """Records every tick and datum it hears, in order, and trades on funding: sells ``quantity`` of
    the spot symbol when the rate is above ``threshold``, buys when it is below minus that."""

    def __init__(self, config: StrategyConfig, ctx: StrategyContext) -> None:
        super().__init__(config, ctx)
        self.threshold = self.param_decimal("threshold")
        self.quantity = self.param_decimal("quantity", positive=True)
        self.heard: list[tuple[str, int, object]] = []  # (what, ctx.now_ms, the tick or datum)

    def on_tick(self, tick: MarketTick) -> None:
        self.heard.append(("tick", self.ctx.now_ms, tick))

    def on_alt(self, datum: AltDatum) -> None:
        self.heard.append(("alt", self.ctx.now_ms, datum))
        if datum.kind != "funding" or datum.symbol is None:
            return
        symbol = datum.symbol.removesuffix("-PERP")
        if datum.value > self.threshold:
            self.ctx.submit("sell", symbol, self.quantity)
        elif datum.value < -self.threshold:
            self.ctx.submit("buy", symbol, self.quantity)


class FundingOnly(AltTrader):
    alt_kinds = ("funding",)


class Featured(Scripted):
    """Takes features: a backtest has none to give it."""

    def on_features(self, features: Features) -> None:
        raise AssertionError("a backtest computes no features")
