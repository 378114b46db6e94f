"""Orders: the state machine every order change goes through, and the oms's book of orders."""

from trader.orders.book import BookState, DuplicateOrderId, ForgottenOrder, OrderBook, UnknownOrder
from trader.orders.state import (
    TERMINAL,
    TRANSITIONS,
    IllegalTransition,
    LateRefusal,
    LateRequest,
    MismatchedEvent,
    apply_cancel,
    apply_report,
    deny_replace,
    is_legal,
    new_order,
    reject_by_risk,
)

__all__ = [
    "TERMINAL",
    "TRANSITIONS",
    "BookState",
    "DuplicateOrderId",
    "ForgottenOrder",
    "IllegalTransition",
    "LateRefusal",
    "LateRequest",
    "MismatchedEvent",
    "OrderBook",
    "UnknownOrder",
    "apply_cancel",
    "apply_report",
    "deny_replace",
    "is_legal",
    "new_order",
    "reject_by_risk",
]
