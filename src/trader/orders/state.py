"""The order state machine: every change of an ``Order`` goes through one table of legal transitions.

Each event (a risk denial, a venue report, a cancel or cancel-replace request) gives a new ``Order``
with ``version`` one higher, or raises ``IllegalTransition``: an illegal event is refused, never
half-applied. The functions are pure; the oms's ``OrderBook`` keeps the state.
"""

from __future__ import annotations

from decimal import Decimal
from typing import Any

import msgspec

from trader.messages import (
    TERMINAL_STATUSES,
    CancelRequest,
    ExecutionReport,
    Order,
    OrderRequest,
    OrderStatus,
)

# from -> the statuses it may move to. A self-transition is a change that keeps the status
# (another partial fill, a venue ack of an order whose cancel is already pending).
TRANSITIONS: dict[OrderStatus, frozenset[OrderStatus]] = {
    # Venues may fill, cancel or expire an order before its ack reaches us.
    "NEW": frozenset(
        {"ACCEPTED", "REJECTED", "PARTIALLY_FILLED", "FILLED", "PENDING_CANCEL", "CANCELED", "EXPIRED"}
    ),
    "ACCEPTED": frozenset({"PARTIALLY_FILLED", "FILLED", "PENDING_CANCEL", "CANCELED", "EXPIRED"}),
    "PARTIALLY_FILLED": frozenset({"PARTIALLY_FILLED", "FILLED", "PENDING_CANCEL", "CANCELED", "EXPIRED"}),
    # The venue may fill before the cancel lands, refuse the cancel (back to working), or confirm a replace.
    "PENDING_CANCEL": frozenset(
        {"PENDING_CANCEL", "ACCEPTED", "PARTIALLY_FILLED", "FILLED", "REJECTED", "CANCELED", "EXPIRED"}
    ),
    "REJECTED": frozenset(),
    "FILLED": frozenset(),
    "CANCELED": frozenset(),
    "EXPIRED": frozenset(),
}
TERMINAL: frozenset[str] = TERMINAL_STATUSES  # exactly the statuses with no way out


class IllegalTransition(ValueError):
    """An event the order's state does not allow; the order is left as it was."""

    def __init__(self, from_status: OrderStatus, to_status: OrderStatus | None, why: str) -> None:
        self.from_status, self.to_status, self.why = from_status, to_status, why
        super().__init__(f"{from_status} -> {to_status or '?'}: {why}")


class LateRefusal(IllegalTransition):
    """The venue refused a cancel or replace of an order that has ended meanwhile (it filled, or ended,
    before the cancel landed): a race every venue has, not a fault. Nothing changes."""


class LateRequest(IllegalTransition):
    """A cancel or replace that arrives after its order ended (the strategy asked before it saw the
    fill): a race, not a fault. Nothing changes; the strategy learns the end from the order's state."""


class MismatchedEvent(ValueError):
    """An event that names another order (id, strategy, account, symbol or side): a routing bug upstream."""


def is_legal(from_status: OrderStatus, to_status: OrderStatus) -> bool:
    return to_status in TRANSITIONS[from_status]


def new_order(request: OrderRequest, now_ms: int) -> Order:
    """The NEW order for an approved request; version 1 is its first published state."""
    return Order(
        client_order_id=request.client_order_id,
        strategy=request.strategy,
        account=request.account,
        symbol=request.symbol,
        side=request.side,
        type=request.type,
        quantity=request.quantity,
        status="NEW",
        price=request.price,
        stop_price=request.stop_price,
        tif=request.tif,
        post_only=request.post_only,
        reduce_only=request.reduce_only,
        venue=request.venue,
        algo=request.algo,
        version=1,
        created=now_ms,
        updated=now_ms,
    )


def reject_by_risk(order: Order, reason: str, now_ms: int) -> Order:
    """Pre-trade risk denied the order: NEW -> REJECTED."""
    if order.status != "NEW":
        raise IllegalTransition(order.status, "REJECTED", "risk can only deny an order not yet routed")
    return _transition(order, "REJECTED", now_ms, reason=reason)


def apply_report(order: Order, report: ExecutionReport) -> Order:
    """Apply what the venue said about the order."""
    _check_report_matches(order, report)
    handler = _REPORT_HANDLERS[report.kind]
    changed = handler(order, report)
    if report.venue_order_id and changed.venue_order_id != report.venue_order_id:
        changed = msgspec.structs.replace(changed, venue_order_id=report.venue_order_id)
    return changed


def apply_cancel(order: Order, request: CancelRequest) -> Order:
    """A cancel, or a cancel-replace when the request gives a new quantity or price: -> PENDING_CANCEL
    until the venue confirms."""
    if request.client_order_id != order.client_order_id or request.strategy != order.strategy:
        raise MismatchedEvent(
            f"cancel for {request.client_order_id} by {request.strategy} does not match order "
            f"{order.client_order_id} of {order.strategy}"
        )
    if order.status in TERMINAL:
        what = "replace" if is_replace(request) else "cancel"
        raise LateRequest(order.status, "PENDING_CANCEL", f"too late to {what}: the order had ended")
    if is_replace(request):
        return _request_replace(order, request)
    if order.status == "PENDING_CANCEL":
        raise IllegalTransition(order.status, "PENDING_CANCEL", "a cancel is already pending")
    _require_legal(order, "PENDING_CANCEL", "too late to cancel")
    return _transition(order, "PENDING_CANCEL", request.timestamp, reason=request.reason)


def deny_replace(order: Order, request: CancelRequest, reason: str) -> tuple[Order, Order]:
    """Risk denied a cancel-replace: the replace is asked and refused at once, and the order works on as
    it was, its reason saying why. Two states (the ask, the refusal), each a legal transition; a replace
    the order could not take (it ended, or a cancel is pending) raises as ``apply_cancel`` does."""
    if not is_replace(request):
        raise ValueError(f"not a replace: {request}")
    asked = apply_cancel(order, request)
    refused = _transition(
        asked,
        _working_status(asked.filled_quantity),
        request.timestamp,
        reason=f"replace denied: {reason}",
        replace_quantity=None,
        replace_price=None,
    )
    return asked, refused


def is_replace(request: CancelRequest) -> bool:
    return request.quantity is not None or request.price is not None


def has_pending_replace(order: Order) -> bool:
    return order.replace_quantity is not None or order.replace_price is not None


# Venue reports -----------------------------------------------------------------------------------


def _on_accepted(order: Order, report: ExecutionReport) -> Order:
    # An ack of an order whose cancel we already asked for keeps the cancel pending.
    target: OrderStatus = "PENDING_CANCEL" if order.status == "PENDING_CANCEL" else "ACCEPTED"
    _require_legal(order, target, "the venue acknowledged an order it already worked on")
    return _transition(order, target, report.timestamp)


def _on_rejected(order: Order, report: ExecutionReport) -> Order:
    """NEW: the venue refused the order. PENDING_CANCEL (or a partially filled order whose cancel was
    pending): the venue refused the cancel or replace, and the order works on as before."""
    never_acknowledged = order.venue_order_id is None and order.filled_quantity == 0
    if order.status == "NEW" or (order.status == "PENDING_CANCEL" and never_acknowledged):
        return _transition(order, "REJECTED", report.timestamp, reason=report.reason or "rejected by venue")
    if order.status in ("PENDING_CANCEL", "PARTIALLY_FILLED"):
        return _transition(
            order,
            _working_status(order.filled_quantity),
            report.timestamp,
            reason=f"cancel refused: {report.reason or 'by venue'}",
            replace_quantity=None,
            replace_price=None,
        )
    if order.is_terminal:
        raise LateRefusal(order.status, None, "a cancel or replace refused after the order ended")
    raise IllegalTransition(order.status, None, "venue rejection with no order or cancel pending")


def _on_fill(order: Order, report: ExecutionReport) -> Order:
    quantity, price = report.last_quantity, report.last_price
    filled = order.filled_quantity + quantity
    target: OrderStatus = "FILLED" if filled == order.quantity else "PARTIALLY_FILLED"
    if order.status in TERMINAL:
        raise IllegalTransition(order.status, target, f"fill {report.exec_id} on a {order.status} order")
    if price is None or price <= 0 or quantity <= 0:
        raise IllegalTransition(
            order.status, target, f"fill {report.exec_id} needs a positive quantity and price"
        )
    if filled > order.quantity:
        raise IllegalTransition(
            order.status,
            target,
            f"fill {report.exec_id} of {quantity} would overfill: {filled} > {order.quantity}",
        )
    return _transition(
        order,
        target,
        report.timestamp,
        filled_quantity=filled,
        average_price=weighted_average(order.average_price, order.filled_quantity, price, quantity),
        fees=order.fees + report.fee,
    )


def _on_canceled(order: Order, report: ExecutionReport) -> Order:
    _require_legal(order, "CANCELED", "nothing left to cancel")
    reason = report.reason or order.reason or "canceled by venue"
    return _transition(order, "CANCELED", report.timestamp, reason=reason)


def _on_expired(order: Order, report: ExecutionReport) -> Order:
    # Whatever time in force made it expire (IOC, FOK, a venue's day end), the unfilled rest is gone.
    _require_legal(order, "EXPIRED", "nothing left to expire")
    reason = report.reason or f"expired with {order.leaves_quantity} unfilled"
    return _transition(order, "EXPIRED", report.timestamp, reason=reason)


def _on_replaced(order: Order, report: ExecutionReport) -> Order:
    """The venue confirmed the pending cancel-replace: the order works on with the new terms."""
    if not has_pending_replace(order):
        raise IllegalTransition(order.status, None, "replace confirmed but none was requested")
    quantity = order.replace_quantity if order.replace_quantity is not None else order.quantity
    price = order.replace_price if order.replace_price is not None else order.price
    # A venue that states the terms it replaced to (last_quantity: the new total, last_price: the new
    # limit) must state the ones asked for.
    if report.last_quantity and report.last_quantity != quantity:
        raise IllegalTransition(
            order.status, None, f"venue replaced to quantity {report.last_quantity}, asked {quantity}"
        )
    if report.last_price is not None and report.last_price != price:
        raise IllegalTransition(
            order.status, None, f"venue replaced to price {report.last_price}, asked {price}"
        )
    if order.filled_quantity > quantity:
        raise IllegalTransition(
            order.status, None, f"replaced quantity {quantity} is below filled {order.filled_quantity}"
        )
    target: OrderStatus = (
        "FILLED" if order.filled_quantity == quantity else _working_status(order.filled_quantity)
    )
    _require_legal(order, target, "replace confirmed on an order no longer working")
    return _transition(
        order,
        target,
        report.timestamp,
        quantity=quantity,
        price=price,
        reason=None,
        replace_quantity=None,
        replace_price=None,
    )


_REPORT_HANDLERS = {
    "accepted": _on_accepted,
    "rejected": _on_rejected,
    "fill": _on_fill,
    "canceled": _on_canceled,
    "expired": _on_expired,
    "replaced": _on_replaced,
}


# Helpers -----------------------------------------------------------------------------------------


def weighted_average(average: Decimal | None, quantity: Decimal, price: Decimal, added: Decimal) -> Decimal:
    """The quantity-weighted mean price after adding ``added`` at ``price`` to ``quantity`` at
    ``average``; exact whenever the mean has a finite decimal expansion within the context."""
    if average is None or quantity == 0:
        return price
    return (average * quantity + price * added) / (quantity + added)


def _request_replace(order: Order, request: CancelRequest) -> Order:
    if order.status not in ("ACCEPTED", "PARTIALLY_FILLED"):
        raise IllegalTransition(
            order.status, "PENDING_CANCEL", "only an order the venue works on can be replaced"
        )
    if request.quantity is not None and request.quantity <= order.filled_quantity:
        raise IllegalTransition(
            order.status,
            "PENDING_CANCEL",
            f"replace quantity {request.quantity} must exceed filled {order.filled_quantity}",
        )
    if request.price is not None and (order.type not in ("limit", "stop_limit") or request.price <= 0):
        raise IllegalTransition(
            order.status, "PENDING_CANCEL", f"a {order.type} order cannot take limit price {request.price}"
        )
    return _transition(
        order,
        "PENDING_CANCEL",
        request.timestamp,
        reason=request.reason,
        replace_quantity=request.quantity,
        replace_price=request.price,
        replace_id=request.replace_id,
    )


def _working_status(filled: Decimal) -> OrderStatus:
    return "PARTIALLY_FILLED" if filled > 0 else "ACCEPTED"


def _require_legal(order: Order, target: OrderStatus, why: str) -> None:
    if not is_legal(order.status, target):
        raise IllegalTransition(order.status, target, why)


def _transition(order: Order, target: OrderStatus, event_ms: int, **changes: Any) -> Order:
    """The one place a new state is made: checked against the table, version one higher."""
    _require_legal(order, target, "not in the transition table")
    if target in TERMINAL:
        changes.setdefault("replace_quantity", None)
        changes.setdefault("replace_price", None)
    return msgspec.structs.replace(
        order, status=target, version=order.version + 1, updated=max(order.updated, event_ms), **changes
    )


def _check_report_matches(order: Order, report: ExecutionReport) -> None:
    expected = (order.client_order_id, order.strategy, order.account, order.symbol, order.side)
    got = (report.client_order_id, report.strategy, report.account, report.symbol, report.side)
    if expected != got:
        raise MismatchedEvent(f"report {report.exec_id} is for {got}, the order is {expected}")
