"""A trading desk for strategy tests: a runner on a settable clock, and an oms simulated with the real
``OrderBook``, so that the states a strategy sees are the ones the oms would publish."""

from __future__ import annotations

from decimal import Decimal
from itertools import count

from tests.factories import flat_bar
from trader.config import StrategyConfig
from trader.messages import (
    CancelRequest,
    ExecutionReport,
    MarketTick,
    Order,
    OrderRequest,
    RiskDecision,
    TradingState,
)
from trader.orders.book import OrderBook
from trader.strategies import Actions, Instruction, OrderContext, StrategyRunner, build_runner

D = Decimal
T0 = 1_700_000_000_000


class Desk:
    def __init__(
        self, kind: str, params: dict[str, str], symbols: tuple[str, ...] = ("BTCUSDT",), name: str = "s1"
    ) -> None:
        self.now = T0
        self.config = StrategyConfig(name=name, kind=kind, symbols=list(symbols), params=params)
        self.runner: StrategyRunner = build_runner(self.config, clock=lambda: self.now)
        self.book = OrderBook()
        self.requests: dict[str, OrderRequest] = {}
        self.sent: list[Instruction] = []
        self._exec_ids = count(1)
        self.take(self.runner.start())

    @property
    def ctx(self) -> OrderContext:
        return self.runner.ctx

    def take(self, actions: Actions) -> list[Instruction]:
        assert actions.error is None, actions.error
        for instruction in actions.instructions:
            if isinstance(instruction.message, OrderRequest):
                self.requests[instruction.message.client_order_id] = instruction.message
        self.sent.extend(actions.instructions)
        return actions.instructions

    # Market data -------------------------------------------------------------------------------

    def bar(
        self, start: int, close: str, symbol: str = "BTCUSDT", timeframe: str = "1m", closed: bool = True
    ) -> list[Instruction]:
        return self.take(self.runner.on_bar(flat_bar(start, close, symbol, timeframe, closed)))

    def tick(self, bid: str, ask: str, symbol: str = "BTCUSDT") -> list[Instruction]:
        tick = MarketTick(
            timestamp=self.now,
            exchange="test",
            venue="test",
            symbol=symbol,
            price=D(bid),
            size=D(1),
            volume=D(1),
            bid=D(bid),
            ask=D(ask),
        )
        return self.take(self.runner.on_tick(tick))

    def trade(self, price: str, symbol: str = "BTCUSDT") -> list[Instruction]:
        tick = MarketTick(
            timestamp=self.now,
            exchange="test",
            venue="test",
            symbol=symbol,
            price=D(price),
            size=D(1),
            volume=D(1),
        )
        return self.take(self.runner.on_tick(tick))

    # The simulated oms and venue ---------------------------------------------------------------

    def publish(self, order: Order | None) -> list[Instruction]:
        assert order is not None
        return self.take(self.runner.on_order(order))

    def work(self, client_order_id: str) -> list[Instruction]:
        """Risk approves, the oms makes the order NEW, the venue acknowledges it."""
        out = self.publish(self.book.submit(self.requests[client_order_id], self.now))
        return out + self.publish(self.book.apply_report(self.report(client_order_id, "accepted")))

    def reject(self, client_order_id: str, reason: str) -> list[Instruction]:
        decision = RiskDecision(
            request=self.requests[client_order_id], approved=False, reason=reason, timestamp=self.now
        )
        return self.publish(self.book.apply_decision(decision))

    def fill(
        self, client_order_id: str, quantity: str, price: str, *, report_first: bool = True
    ) -> list[Instruction]:
        """A fill: its report and the order state the oms makes of it, in either order."""
        report = self.report(client_order_id, "fill", last_quantity=D(quantity), last_price=D(price))
        state = self.book.apply_report(report)
        if report_first:
            return self.take(self.runner.on_fill(report)) + self.publish(state)
        return self.publish(state) + self.take(self.runner.on_fill(report))

    def oms_cancel(self, instruction: Instruction) -> list[Instruction]:
        """The oms takes a cancel or replace (PENDING_CANCEL) and the venue confirms it."""
        request = instruction.message
        assert isinstance(request, CancelRequest)
        out = self.publish(self.book.apply_cancel(request))
        kind = "replaced" if request.quantity is not None or request.price is not None else "canceled"
        return out + self.publish(self.book.apply_report(self.report(request.client_order_id, kind)))

    def halt(self, reason: str = "drawdown") -> None:
        self.ctx.set_trading_state(TradingState(mode="halted", reason=reason, since=self.now))

    def report(self, client_order_id: str, kind: str, **terms: object) -> ExecutionReport:
        request = self.requests[client_order_id]
        return ExecutionReport(
            exec_id=f"x-{next(self._exec_ids)}",
            kind=kind,  # type: ignore[arg-type]
            client_order_id=client_order_id,
            strategy=request.strategy,
            account=request.account,
            venue="paper",
            symbol=request.symbol,
            side=request.side,
            venue_order_id=f"v-{client_order_id}",
            timestamp=self.now,
            **terms,  # type: ignore[arg-type]
        )


def submits(instructions: list[Instruction]) -> list[OrderRequest]:
    return [i.message for i in instructions if isinstance(i.message, OrderRequest)]


def cancels(instructions: list[Instruction]) -> list[CancelRequest]:
    return [i.message for i in instructions if isinstance(i.message, CancelRequest)]
