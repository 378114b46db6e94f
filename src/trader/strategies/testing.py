"""Driving a strategy without the bus, for its unit tests (ours and yours).

``Desk`` runs one configured strategy as the strategy service does (the same runner and context), on a
clock the test sets, with the oms simulated by the real ``OrderBook``: the order states the strategy sees
are the ones the oms would publish. Nothing goes anywhere: what the strategy asked for comes back from
each call (and piles up in ``desk.sent``), and the test plays risk, the oms and the venue::

    desk = Desk("my_strategies:Breakout", {"quantity": "0.1", "lookback": "3"})
    for minute, close in enumerate(["100", "101", "100", "103"]):
        made = desk.bar(minute * MINUTE, close)
    [buy] = submits(made)
    desk.work(buy.client_order_id)  # risk approves, the oms makes it NEW, the venue accepts it
    desk.fill(buy.client_order_id, "0.1", "103")
    assert desk.ctx.position("BTCUSDT") == Decimal("0.1")

Market data comes from the mock feed's venue (``mock``), the data venue of a strategy configured
without one, as in the default paper setup.

A callback that raises fails the test with the strategy's error (the service would log it, count it and
go on).
"""

from __future__ import annotations

from decimal import Decimal
from itertools import count

from trader.config import MOCK_VENUE, StrategyConfig
from trader.messages import (
    Bar,
    CancelRequest,
    ExecutionReport,
    Features,
    MarketTick,
    Order,
    OrderRequest,
    ReportKind,
    RiskDecision,
    TradingState,
)
from trader.orders.book import OrderBook
from trader.strategies import Actions, Instruction, OrderContext, StrategyRunner, build_runner

MINUTE = 60_000
T0 = 1_700_000_000_000  # the desk's clock at the start: 2023-11-14 22:13:20 UTC


def make_bar(
    start: int,
    close: str | int | Decimal,
    symbol: str = "BTCUSDT",
    timeframe: str = "1m",
    closed: bool = True,
    *,
    open: str | Decimal | None = None,
    high: str | Decimal | None = None,
    low: str | Decimal | None = None,
    volume: str | Decimal = "1",
    venue: str = MOCK_VENUE,
) -> Bar:
    """A bar starting at ``start`` (epoch ms); open, high, low and VWAP default to ``close``."""
    price = Decimal(str(close))
    return Bar(
        venue=venue,
        symbol=symbol,
        timeframe=timeframe,
        start=start,
        open=Decimal(str(open)) if open is not None else price,
        high=Decimal(str(high)) if high is not None else price,
        low=Decimal(str(low)) if low is not None else price,
        close=price,
        volume=Decimal(str(volume)),
        vwap=price,
        trades=1,
        closed=closed,
    )


class Desk:
    """One strategy (``kind``: a built-in name or ``module:Class``) with its ``params``, started."""

    def __init__(
        self,
        kind: str,
        params: dict[str, str],
        symbols: tuple[str, ...] = ("BTCUSDT",),
        name: str = "s1",
        *,
        account: str = "paper",
    ) -> None:
        self.now = T0
        self.config = StrategyConfig(
            name=name, kind=kind, symbols=list(symbols), params=params, account=account
        )
        self.runner: StrategyRunner = build_runner(self.config, clock=lambda: self.now)
        self.book = OrderBook()
        self.requests: dict[str, OrderRequest] = {}
        self.sent: list[Instruction] = []
        self._exec_ids = count(1)
        self.take(self.runner.start())

    @property
    def ctx(self) -> OrderContext:
        """The strategy's context: its open orders and positions as it sees them."""
        return self.runner.ctx

    def take(self, actions: Actions) -> list[Instruction]:
        if actions.error is not None:
            raise AssertionError(f"strategy {self.config.name} raised: {actions.error}")
        for instruction in actions.instructions:
            if isinstance(instruction.message, OrderRequest):
                self.requests[instruction.message.client_order_id] = instruction.message
        self.sent.extend(actions.instructions)
        return actions.instructions

    # Market data -------------------------------------------------------------------------------

    def bar(
        self,
        start: int,
        close: str,
        symbol: str = "BTCUSDT",
        timeframe: str = "1m",
        closed: bool = True,
        **ohlv: str,
    ) -> list[Instruction]:
        """A bar (``make_bar``: ``open``, ``high``, ``low``, ``volume`` may be given) to ``on_bar``."""
        return self.take(self.runner.on_bar(make_bar(start, close, symbol, timeframe, closed, **ohlv)))

    def features(self, features: Features) -> list[Instruction]:
        """Features of a bar (feature-eng's ``Features``; ``FeatureEngine.on_bar`` makes them) to
        ``on_features``."""
        return self.take(self.runner.on_features(features))

    def warm_up(self, bars: list[Bar]) -> None:
        """History to ``on_bar`` as the service feeds it at start (``Strategy.warmup``): with
        ``ctx.warming_up`` true, and whatever the strategy asks for meanwhile dropped. Once."""
        self.take(self.runner.warm_up(bars))

    def tick(self, bid: str, ask: str, symbol: str = "BTCUSDT") -> list[Instruction]:
        """A quote (the last trade at the bid) to ``on_tick``."""
        return self._tick(symbol, Decimal(bid), Decimal(bid), Decimal(ask))

    def trade(self, price: str, symbol: str = "BTCUSDT") -> list[Instruction]:
        """A trade without a quote to ``on_tick``."""
        return self._tick(symbol, Decimal(price), None, None)

    def _tick(
        self, symbol: str, price: Decimal, bid: Decimal | None, ask: Decimal | None
    ) -> list[Instruction]:
        tick = MarketTick(
            timestamp=self.now,
            exchange=MOCK_VENUE,
            venue=MOCK_VENUE,
            symbol=symbol,
            price=price,
            size=Decimal(1),
            volume=Decimal(1),
            bid=bid,
            ask=ask,
        )
        return self.take(self.runner.on_tick(tick))

    # Risk, the oms and the venue ---------------------------------------------------------------

    def publish(self, order: Order | None) -> list[Instruction]:
        """An order state, as the oms would publish it, to ``on_order``."""
        if order is None:
            raise AssertionError("the oms would publish nothing here: the event changed nothing")
        return self.take(self.runner.on_order(order))

    def work(self, client_order_id: str) -> list[Instruction]:
        """Risk approves, the oms makes the order NEW, the venue acknowledges it."""
        out = self.publish(self.book.submit(self.requests[client_order_id], self.now))
        return out + self.publish(self.book.apply_report(self.report(client_order_id, "accepted")))

    def reject(self, client_order_id: str, reason: str) -> list[Instruction]:
        """Risk denies the order: it comes back REJECTED with ``reason``."""
        decision = RiskDecision(
            request=self.requests[client_order_id], approved=False, reason=reason, timestamp=self.now
        )
        return self.publish(self.book.apply_decision(decision))

    def fill(
        self, client_order_id: str, quantity: str, price: str, *, report_first: bool = True
    ) -> list[Instruction]:
        """A fill of a working order: its report to ``on_fill`` and the state the oms makes of it to
        ``on_order``, in either order (both happen on the bus)."""
        report = self.report(
            client_order_id, "fill", last_quantity=Decimal(quantity), last_price=Decimal(price)
        )
        state = self.book.apply_report(report)
        if report_first:
            return self.take(self.runner.on_fill(report)) + self.publish(state)
        return self.publish(state) + self.take(self.runner.on_fill(report))

    def end(self, client_order_id: str, kind: ReportKind = "expired") -> list[Instruction]:
        """The venue ends a working order on its own (``expired``, or ``canceled``)."""
        return self.publish(self.book.apply_report(self.report(client_order_id, kind)))

    def oms_cancel(self, instruction: Instruction) -> list[Instruction]:
        """The oms takes a cancel or replace (PENDING_CANCEL) and the venue confirms it."""
        request = instruction.message
        if not isinstance(request, CancelRequest):
            raise AssertionError(f"not a cancel: {request}")
        out = self.publish(self.book.apply_cancel(request))
        kind: ReportKind = (
            "replaced" if request.quantity is not None or request.price is not None else "canceled"
        )
        return out + self.publish(self.book.apply_report(self.report(request.client_order_id, kind)))

    def halt(self, reason: str = "drawdown") -> None:
        """The shared trading switch goes to halted (``trader kill``, or a post-trade limit)."""
        self.ctx.set_trading_state(TradingState(mode="halted", reason=reason, since=self.now))

    def report(self, client_order_id: str, kind: ReportKind, **terms: object) -> ExecutionReport:
        request = self.requests[client_order_id]
        return ExecutionReport(
            exec_id=f"x-{next(self._exec_ids)}",
            kind=kind,
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
    """The new orders among what a strategy asked for."""
    return [i.message for i in instructions if isinstance(i.message, OrderRequest)]


def cancels(instructions: list[Instruction]) -> list[CancelRequest]:
    """The cancels and replaces among what a strategy asked for."""
    return [i.message for i in instructions if isinstance(i.message, CancelRequest)]
