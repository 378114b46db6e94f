"""Drives one strategy: events in, the messages to publish out. Pure, like the strategy itself.

The runner routes each event to the strategy only when it concerns it (its symbols, its orders),
updates the context first (so the strategy sees its position and orders already changed), keeps a
failing callback from taking the service down, and hands back what the strategy asked for.
Before ``start`` the events only rebuild the context: the strategy hears of nothing from the past.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

import structlog

from trader.messages import Bar, ExecutionReport, MarketTick, Order
from trader.strategies.base import Strategy
from trader.strategies.context import Instruction, OrderContext

# A strategy that answers every halted (locally rejected) submit with another submit would loop:
# its notices are delivered this many rounds per event, the rest dropped with a warning.
MAX_NOTICE_ROUNDS = 3


@dataclass
class Actions:
    """What one event made a strategy do."""

    instructions: list[Instruction] = field(default_factory=list)
    suppressed: list[Order] = field(default_factory=list)  # submits not sent: trading halted
    error: str | None = None  # a callback raised: the exception, for the log

    def __bool__(self) -> bool:
        return bool(self.instructions or self.suppressed or self.error)


class StrategyRunner:
    def __init__(self, strategy: Strategy, ctx: OrderContext) -> None:
        self.strategy = strategy
        self.ctx = ctx
        self.name = strategy.name
        self.symbols = frozenset(strategy.symbols)
        self.started = False
        self.errors = 0
        self.events = 0
        self.log = structlog.get_logger("strategy").bind(strategy=self.name)

    def start(self) -> Actions:
        self.started = True
        return self._call(self.strategy.on_start)

    def stop(self) -> Actions:
        if not self.started:
            return Actions()
        self.started = False
        return self._call(self.strategy.on_stop)

    def on_tick(self, tick: MarketTick) -> Actions:
        if not self.started or tick.symbol not in self.symbols:
            return Actions()
        return self._call(self.strategy.on_tick, tick)

    def on_bar(self, bar: Bar) -> Actions:
        if not self.started or not bar.closed or bar.symbol not in self.symbols:
            return Actions()
        return self._call(self.strategy.on_bar, bar)

    def on_order(self, order: Order) -> Actions:
        if order.strategy != self.name:
            return Actions()
        changed = self.ctx.apply_order(order)
        if changed is None or not self.started:
            return Actions()
        return self._call(self.strategy.on_order, changed)

    def on_fill(self, report: ExecutionReport) -> Actions:
        if report.strategy != self.name:
            return Actions()
        try:
            new = self.ctx.apply_fill(report)
        except ValueError as exc:  # a "fill" without a price or quantity: nothing to apply
            self.errors += 1
            return Actions(error=f"fill {report.exec_id} not applied: {exc}")
        if not new or not self.started:
            return Actions()
        return self._call(self.strategy.on_fill, report)

    def describe(self) -> dict[str, Any]:
        ctx = self.ctx
        rejection = ctx.last_rejection
        try:
            state = self.strategy.describe()
        except Exception as exc:  # the health endpoint must answer whatever the strategy does
            state = {"describe_failed": repr(exc)}
        return {
            "kind": self.strategy.config.kind,
            "symbols": sorted(self.symbols),
            "started": self.started,
            "open_orders": len(ctx.open_orders()),
            "positions": {symbol: str(q) for symbol, q in ctx.positions().items()},
            "submitted": ctx.submitted,
            "suppressed": ctx.suppressed,
            "events": self.events,
            "errors": self.errors,
            "last_rejection": None
            if rejection is None
            else {"client_order_id": rejection.client_order_id, "reason": rejection.reason},
            "state": state,
        }

    def _call(self, callback: Callable[..., None], *args: object) -> Actions:
        self.events += 1
        actions = Actions()
        self._guarded(actions, callback, *args)
        for _ in range(MAX_NOTICE_ROUNDS):
            notices = self.ctx.take_notices()
            if not notices:
                break
            for order in notices:
                self._guarded(actions, self.strategy.on_order, order)
        else:
            dropped = self.ctx.take_notices()
            if dropped:
                self.log.warning("strategy.notices_dropped", count=len(dropped))
        actions.instructions = self.ctx.take_instructions()
        actions.suppressed = self.ctx.take_suppressed()
        return actions

    def _guarded(self, actions: Actions, callback: Callable[..., None], *args: object) -> None:
        try:
            callback(*args)
        except Exception as exc:
            # What the strategy asked for before it raised is already in the context's books, so it
            # is still sent: dropping it would leave orders the strategy believes are in flight.
            self.errors += 1
            actions.error = f"{callback.__name__}: {exc!r}"
            self.log.exception("strategy.callback_failed", callback=callback.__name__)
