"""The orders as their states tell them: the latest state of each.

The oms publishes every changed ``Order`` whole, with a version, so the latest version per client order
id is the order now. ``OrderHistory`` folds the states in, in any order; reading them from the ORDERS
stream is ``trader.control.orders.read_orders``.
"""

from __future__ import annotations

from dataclasses import dataclass, field

from trader.messages import Order


@dataclass
class OrderHistory:
    latest: dict[str, Order] = field(default_factory=dict)  # by client order id
    exec_ids: set[str] = field(default_factory=set)  # the reports the states were made from
    forgotten: set[str] = field(default_factory=set)  # ids of the orders ended before the cutoff
    messages: int = 0
    undecodable: int = 0

    def apply(self, order: Order, exec_id: str | None, forget_ended_before_ms: int | None = None) -> None:
        """One state of an order (made from the report ``exec_id``, if any). With
        ``forget_ended_before_ms``, an order whose state ends it before then (an ended order changes no
        more) is kept by its id only, in ``forgotten``: memory for the recent orders, not for the whole
        history."""
        if exec_id:
            self.exec_ids.add(exec_id)
        coid = order.client_order_id
        if coid in self.forgotten:
            return
        if (
            forget_ended_before_ms is not None
            and order.is_terminal
            and order.updated < forget_ended_before_ms
        ):
            self.latest.pop(coid, None)
            self.forgotten.add(coid)
            return
        known = self.latest.get(coid)
        if known is None or order.version > known.version:
            self.latest[coid] = order
