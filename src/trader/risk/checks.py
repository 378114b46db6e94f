"""Pre-trade checks on every order request, and the post-trade watch on equity.

``PreTradeRisk`` holds what the checks need (net and per-strategy positions, last trade prices, open
orders, the trading state), fed by the risk service, and answers each request with a ``RiskDecision``
whose reason names the check and the numbers. Positions and exposure are per account, summed over
venues, since a request may leave the venue to the router. Two rules only shrink a position, each its
own: the account's ``reduce_only`` mode shrinks the account's net position, whoever sends the order;
a request's ``reduce_only`` flag shrinks the position of the strategy that sends it (a strategy sees
and trades only its own), or the account's for an operator's order (strategy ``manual``). When both
apply, both must hold. A cancel-replace is judged as the order it would become (``check_replace``),
unless it only lowers the quantity. ``PostTradeRisk`` turns equity into a ``TradingState``: reduce-only
once the day's loss or the drawdown crosses its limit.
"""

from __future__ import annotations

from collections import deque
from decimal import Decimal
from typing import NamedTuple

import msgspec

from trader.messages import (
    CancelRequest,
    Order,
    OrderRequest,
    PnlSnapshot,
    Position,
    ReplaceDecision,
    RiskDecision,
    TradingState,
)
from trader.orders.state import new_order
from trader.portfolio.pnl import TOTAL_SCOPE
from trader.risk.limits import RiskLimits
from trader.risk.open_orders import OpenOrders, OpenOrdersState

ZERO = Decimal(0)
RATE_WINDOW_MS = 1000
DAY_MS = 86_400_000
# The strategy of an operator's order (``trader order``'s default): it trades for the account, so its
# reduce-only flag is judged against the account's net position, not against its own fills.
MANUAL_STRATEGY = "manual"


class _Denied(Exception):
    """Raised inside a check; its message is the decision's reason."""


def _num(value: Decimal) -> str:
    return format(value, "f")  # never scientific notation: "100000", not "1E+5"


def _signed(side: str, quantity: Decimal) -> Decimal:
    return quantity if side == "buy" else -quantity


class _Holding(NamedTuple):
    """What a reduce-only rule judges an order against: a position and the open orders on the order's
    side that already reduce it (signed), with how a denial names them."""

    position: Decimal
    pending: Decimal
    named: str  # "position", or "strategy s1's position"
    orders_named: str  # "open", or "its open"


class PreTradeRisk:
    def __init__(self, limits: RiskLimits, state: TradingState | None = None) -> None:
        self.limits = limits
        self.state = state or TradingState()
        self._positions: dict[tuple[str, str, str], Position] = {}  # by (account, venue, symbol)
        # A strategy's own quantity per venue, by (account, symbol, strategy).
        self._strategy_positions: dict[tuple[str, str, str], dict[str, Decimal]] = {}
        self._last_prices: dict[str, Decimal] = {}
        self._open = OpenOrders()
        self._approved_at: dict[str, deque[int]] = {}  # strategy -> approval times, oldest first

    # The inputs ----------------------------------------------------------------------------------

    def set_state(self, state: TradingState) -> None:
        self.state = state

    def update_position(self, position: Position) -> None:
        """The account's net position (``strategy`` None), which every account-wide check uses, or a
        strategy's own, which only that strategy's reduce-only orders are judged against."""
        if position.strategy is None:
            self._positions[(position.account, position.venue, position.symbol)] = position
            return
        key = (position.account, position.symbol, position.strategy)
        self._strategy_positions.setdefault(key, {})[position.venue] = position.quantity

    def update_price(self, symbol: str, price: Decimal) -> None:
        self._last_prices[symbol] = price

    def update_order(self, order: Order) -> None:
        """The latest state of an order: open ones count as exposure, terminal ones no longer do."""
        if order.is_terminal:
            self._open.remove(order.client_order_id)
        else:
            self._open.put(order)

    def open_orders_state(self) -> OpenOrdersState:
        """The open orders, as a snapshot keeps them."""
        return self._open.state()

    def restore_open_orders(self, state: OpenOrdersState) -> None:
        """The open orders of a snapshot in place of those known (a start, before the states after it)."""
        self._open = OpenOrders.of(state)

    def open_order(self, client_order_id: str) -> Order | None:
        """An order as risk last saw it, while it is open."""
        return self._open.get(client_order_id)

    # The checks ----------------------------------------------------------------------------------

    def check(self, request: OrderRequest, now_ms: int) -> RiskDecision:
        try:
            self._check_all(request, now_ms)
        except _Denied as denied:
            return RiskDecision(request=request, approved=False, reason=str(denied), timestamp=now_ms)
        self._record_approval(request, now_ms)
        return RiskDecision(request=request, approved=True, timestamp=now_ms)

    def check_replace(self, request: CancelRequest, now_ms: int) -> ReplaceDecision:
        """A cancel-replace, judged as the order it would become: its unfilled quantity under the new
        terms is checked like a new order's (the whole new quantity against max_order_notional). One that
        only lowers the quantity is always approved, unless trading is halted."""
        try:
            order = self._replaced_order(request)
            reduces = _only_reduces(order, request)
            if not reduces:
                self._check_all(_as_request(order, request), now_ms, _new_quantity(order, request))
        except _Denied as denied:
            return ReplaceDecision(request=request, approved=False, reason=str(denied), timestamp=now_ms)
        if not reduces:
            self._recent_approvals(order.strategy, now_ms).append(now_ms)
            # Counted at its larger terms until the oms states it, as an order with a replace pending is.
            pending = msgspec.structs.replace(
                order, replace_quantity=_new_quantity(order, request), replace_price=request.price
            )
            self._open.put(pending)
        return ReplaceDecision(request=request, approved=True, timestamp=now_ms)

    def _replaced_order(self, request: CancelRequest) -> Order:
        """The open order a replace is for, once the replace is known to be one it may ask for."""
        if self.state.mode == "halted":
            raise _Denied(f"halted: {self.state.reason or 'trading is halted'}")
        order = self._open.get(request.client_order_id)
        if order is None or order.strategy != request.strategy:
            raise _Denied(
                f"unknown order: {request.client_order_id} is not an open order of {request.strategy}"
            )
        if request.quantity is not None and request.quantity <= order.filled_quantity:
            raise _Denied(
                f"invalid: replace quantity {_num(request.quantity)} must exceed filled "
                f"{_num(order.filled_quantity)}"
            )
        if request.price is not None and (order.type not in ("limit", "stop_limit") or request.price <= 0):
            raise _Denied(f"invalid: a {order.type} order cannot take limit price {_num(request.price)}")
        return order

    def _check_all(self, request: OrderRequest, now_ms: int, whole_quantity: Decimal | None = None) -> None:
        """Every check of ``request``; ``whole_quantity``: the order's total quantity when ``request`` is
        only its unfilled part (a replace), which max_order_notional bounds."""
        if self.state.mode == "halted":
            raise _Denied(f"halted: {self.state.reason or 'trading is halted'}")
        _check_well_formed(request)
        last = self._last_prices.get(request.symbol)
        if last is None:
            raise _Denied(f"no reference price: no last trade for {request.symbol}")
        self._check_reduce_only(request)
        price = _order_price(request, last)
        self._check_price_band(request, price, last)
        order_notional = (request.quantity if whole_quantity is None else whole_quantity) * price
        if order_notional > self.limits.max_order_notional:
            raise _Denied(
                f"max_order_notional: {_num(order_notional)} > {_num(self.limits.max_order_notional)}"
            )
        self._check_position(request)
        self._check_gross_exposure(request, request.quantity * price)
        self._check_rate(request, now_ms)

    def _check_reduce_only(self, request: OrderRequest) -> None:
        if self.state.mode == "reduce_only":
            prefix = f"reduce_only mode ({self.state.reason or 'no reason given'})"
            _require_reduction(prefix, request, self._account_holding(request))
        if request.reduce_only:
            if request.strategy == MANUAL_STRATEGY:
                holding = self._account_holding(request)
            else:
                holding = self._strategy_holding(request)
            _require_reduction("reduce_only order", request, holding)

    def _check_price_band(self, request: OrderRequest, price: Decimal, last: Decimal) -> None:
        distance_pct = abs(price - last) / last * 100
        if distance_pct > self.limits.price_band_pct:
            shown = distance_pct.quantize(Decimal("0.01"))
            raise _Denied(
                f"price_band: {request.symbol} price {_num(price)} is {_num(shown)}% "
                f"from last trade {_num(last)} (max {_num(self.limits.price_band_pct)}%)"
            )

    def _check_position(self, request: OrderRequest) -> None:
        position = self._position(request.account, request.symbol)
        pending = self._open_same_side(request)
        before = position + pending
        after = before + _signed(request.side, request.quantity)
        limit = self.limits.position_limit(request.symbol)
        if abs(after) > limit and abs(after) > abs(before):
            raise _Denied(
                f"max_position_per_symbol: |{_num(after)}| > {_num(limit)} for {request.symbol} "
                f"(position {_num(position)}, open {_num(pending)}, order {_num(request.quantity)} "
                f"{request.side})"
            )

    def _check_gross_exposure(self, request: OrderRequest, notional: Decimal) -> None:
        before = self._position(request.account, request.symbol) + self._open_same_side(request)
        if abs(before + _signed(request.side, request.quantity)) <= abs(before):
            return  # an order that reduces exposure is always welcome
        positions = self._positions_exposure(request.account)
        open_orders = self._open.notional(request.account, self._last_prices.get, request.client_order_id)
        gross = positions + open_orders + notional
        if gross > self.limits.max_gross_exposure:
            raise _Denied(
                f"max_gross_exposure: {_num(gross)} > {_num(self.limits.max_gross_exposure)} "
                f"(positions {_num(positions)} + open orders {_num(open_orders)} + order {_num(notional)})"
            )

    def _check_rate(self, request: OrderRequest, now_ms: int) -> None:
        recent = self._recent_approvals(request.strategy, now_ms)
        if len(recent) + 1 > self.limits.max_orders_per_second:
            raise _Denied(
                f"max_orders_per_second: {len(recent) + 1} > {self.limits.max_orders_per_second} "
                f"within 1s for strategy {request.strategy}"
            )

    # Helpers -------------------------------------------------------------------------------------

    def _record_approval(self, request: OrderRequest, now_ms: int) -> None:
        self._recent_approvals(request.strategy, now_ms).append(now_ms)
        # Counted as open until the oms publishes its state, so a quick second order sees this one.
        self._open.put(new_order(request, now_ms))

    def _recent_approvals(self, strategy: str, now_ms: int) -> deque[int]:
        times = self._approved_at.setdefault(strategy, deque())
        while times and times[0] <= now_ms - RATE_WINDOW_MS:
            times.popleft()
        return times

    def _position(self, account: str, symbol: str) -> Decimal:
        return sum(
            (p.quantity for p in self._positions.values() if p.account == account and p.symbol == symbol),
            ZERO,
        )

    def _account_holding(self, request: OrderRequest) -> _Holding:
        position = self._position(request.account, request.symbol)
        return _Holding(position, self._open_same_side(request), "position", "open")

    def _strategy_holding(self, request: OrderRequest) -> _Holding:
        """The strategy's own position on the symbol, summed over the account's venues, and its own
        open orders on the request's side."""
        by_venue = self._strategy_positions.get((request.account, request.symbol, request.strategy), {})
        leaves = self._open.same_side_leaves(
            request.account,
            request.symbol,
            request.side,
            excluding=request.client_order_id,
            strategy=request.strategy,
        )
        named = f"strategy {request.strategy}'s position"
        return _Holding(sum(by_venue.values(), ZERO), _signed(request.side, leaves), named, "its open")

    def _open_same_side(self, request: OrderRequest) -> Decimal:
        """Signed unfilled quantity of the account's open orders on the request's symbol and side, without
        the request's own (a redelivered request is no new risk)."""
        leaves = self._open.same_side_leaves(
            request.account, request.symbol, request.side, excluding=request.client_order_id
        )
        return _signed(request.side, leaves)

    def _positions_exposure(self, account: str) -> Decimal:
        """|quantity| x last trade, or x average price for a symbol not traded since the start."""
        exposure = ZERO
        for position in self._positions.values():
            if position.account == account and position.quantity != 0:
                mark = self._last_prices.get(position.symbol, position.average_price or ZERO)
                exposure += abs(position.quantity) * mark
        return exposure


def _require_reduction(prefix: str, request: OrderRequest, holding: _Holding) -> None:
    """The request, with the open orders on its side, must move ``holding`` toward zero, not past it."""
    position, pending = holding.position, holding.pending
    reduces = position != 0 and (position > 0) != (request.side == "buy")
    if not reduces or abs(pending) + request.quantity > abs(position):
        raise _Denied(
            f"{prefix}: {request.side} {_num(request.quantity)} {request.symbol} would not reduce "
            f"{holding.named} {_num(position)} ({holding.orders_named} {request.side} orders "
            f"{_num(abs(pending))})"
        )


def _new_quantity(order: Order, request: CancelRequest) -> Decimal:
    """The order's total quantity once replaced (filled part included)."""
    return order.quantity if request.quantity is None else request.quantity


def _only_reduces(order: Order, request: CancelRequest) -> bool:
    """A replace that lowers the quantity (or keeps it) and leaves the price as it is."""
    same_price = request.price is None or request.price == order.price
    return same_price and _new_quantity(order, request) <= order.quantity


def _as_request(order: Order, request: CancelRequest) -> OrderRequest:
    """The order as the replace would make it, as a request for what it leaves unfilled."""
    return OrderRequest(
        client_order_id=order.client_order_id,
        strategy=order.strategy,
        symbol=order.symbol,
        side=order.side,
        quantity=_new_quantity(order, request) - order.filled_quantity,
        type=order.type,
        price=order.price if request.price is None else request.price,
        stop_price=order.stop_price,
        tif=order.tif,
        post_only=order.post_only,
        reduce_only=order.reduce_only,
        account=order.account,
        venue=order.venue,
        algo=order.algo,
        timestamp=request.timestamp,
    )


def _check_well_formed(request: OrderRequest) -> None:
    if request.quantity <= 0:
        raise _Denied(f"invalid: quantity {_num(request.quantity)} must be positive")
    if request.type in ("limit", "stop_limit") and (request.price is None or request.price <= 0):
        raise _Denied(f"invalid: a {request.type} order needs a positive price")
    if request.type in ("stop_market", "stop_limit") and (
        request.stop_price is None or request.stop_price <= 0
    ):
        raise _Denied(f"invalid: a {request.type} order needs a positive stop_price")


def _first_known(*values: Decimal | None) -> Decimal:
    return next(value for value in values if value is not None)


def _order_price(request: OrderRequest, last: Decimal) -> Decimal:
    """The price the order would trade at: its limit, its stop for a stop-market, else the last trade."""
    if request.type in ("limit", "stop_limit") and request.price is not None:
        return request.price
    if request.type == "stop_market" and request.stop_price is not None:
        return request.stop_price
    return last


class PostTradeRisk:
    """Watches equity (total PnL): the loss since the UTC day's start and the drawdown from the peak.
    Crossing a limit switches an active stack to reduce-only; only an operator switches it back."""

    def __init__(self, limits: RiskLimits, state: TradingState | None = None) -> None:
        self.limits = limits
        self.state = state or TradingState()
        self.peak_equity: Decimal | None = None
        self.day_start_equity: Decimal | None = None
        self._day: int | None = None
        self._last_equity: Decimal | None = None

    def set_state(self, state: TradingState) -> None:
        self.state = state

    def on_pnl(self, snapshot: PnlSnapshot) -> TradingState | None:
        """Feed the total PnL snapshot; per-strategy ones are ignored."""
        if snapshot.scope != TOTAL_SCOPE:
            return None
        return self.update(snapshot.total, snapshot.timestamp)

    def update(self, equity: Decimal, now_ms: int) -> TradingState | None:
        """The new trading state when this equity crosses a limit, else ``None``."""
        day_start = self._day_start(equity, now_ms)
        peak = equity if self.peak_equity is None else max(self.peak_equity, equity)
        self.peak_equity, self._last_equity = peak, equity
        breach = self._breach(equity, day_start, peak)
        if breach is None or self.state.mode != "active":
            return None
        self.state = TradingState(mode="reduce_only", reason=breach, since=now_ms)
        return self.state

    def _day_start(self, equity: Decimal, now_ms: int) -> Decimal:
        day = now_ms // DAY_MS
        if day != self._day or self.day_start_equity is None:
            # The day starts where the last one ended: the last equity seen before midnight.
            self.day_start_equity = self._last_equity if self._last_equity is not None else equity
            self._day = day
        return self.day_start_equity

    def _breach(self, equity: Decimal, day_start: Decimal, peak: Decimal) -> str | None:
        loss = day_start - equity
        if loss > self.limits.max_daily_loss:
            return (
                f"max_daily_loss: {_num(loss)} > {_num(self.limits.max_daily_loss)} "
                f"(equity {_num(equity)}, day start {_num(day_start)})"
            )
        drawdown = peak - equity
        if drawdown > self.limits.max_drawdown:
            return (
                f"max_drawdown: {_num(drawdown)} > {_num(self.limits.max_drawdown)} "
                f"(equity {_num(equity)}, peak {_num(peak)})"
            )
        return None
