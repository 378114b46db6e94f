"""The orders as the ORDERS stream tells them: the latest state of each, from ``order.state.>``.

The oms publishes every changed ``Order`` whole, with a version, so the latest version per client order
id is the order now; the header ``EXEC_ID_HEADER`` names the execution report that made a state.
"""

from __future__ import annotations

from dataclasses import dataclass, field

import msgspec
from nats.js import JetStreamContext

from trader.bus.read import Stored, replay
from trader.messages import Order

EXEC_ID_HEADER = "Trader-Exec-Id"
ALL_STATES = "order.state.>"

_order_decoder = msgspec.json.Decoder(Order)


@dataclass
class OrderHistory:
    latest: dict[str, Order] = field(default_factory=dict)  # by client order id
    exec_ids: set[str] = field(default_factory=set)  # the reports the states were made from
    messages: int = 0
    undecodable: int = 0


async def read_orders(
    js: JetStreamContext, subject: str = ALL_STATES, *, timeout: float = 300
) -> OrderHistory:
    """The latest state of every order on ``subject`` (one strategy's, or all); undecodable states are
    counted and skipped."""
    history = OrderHistory()

    async def take(stored: Stored) -> None:
        try:
            order = _order_decoder.decode(stored.data)
        except (msgspec.ValidationError, msgspec.DecodeError):
            history.undecodable += 1
            return
        known = history.latest.get(order.client_order_id)
        if known is None or order.version > known.version:
            history.latest[order.client_order_id] = order
        exec_id = (stored.headers or {}).get(EXEC_ID_HEADER)
        if exec_id:
            history.exec_ids.add(exec_id)

    history.messages = await replay(js, "ORDERS", subject, take, timeout=timeout)
    return history
