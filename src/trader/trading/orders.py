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
    forgotten: set[str] = field(default_factory=set)  # ids of the orders ended before the cutoff
    messages: int = 0
    undecodable: int = 0


async def read_orders(
    js: JetStreamContext,
    subject: str = ALL_STATES,
    *,
    timeout: float = 300,
    forget_ended_before_ms: int | None = None,
) -> OrderHistory:
    """The latest state of every order on ``subject`` (one strategy's, or all); undecodable states are
    counted and skipped. With ``forget_ended_before_ms``, an order whose state ends it before then
    (an ended order changes no more) is kept by its id only, in ``forgotten``: memory for the recent
    orders, not for the whole history."""
    history = OrderHistory()
    latest, forgotten = history.latest, history.forgotten

    async def take(stored: Stored) -> None:
        try:
            order = _order_decoder.decode(stored.data)
        except (msgspec.ValidationError, msgspec.DecodeError):
            history.undecodable += 1
            return
        exec_id = (stored.headers or {}).get(EXEC_ID_HEADER)
        if exec_id:
            history.exec_ids.add(exec_id)
        coid = order.client_order_id
        if coid in forgotten:
            return
        if (
            forget_ended_before_ms is not None
            and order.is_terminal
            and order.updated < forget_ended_before_ms
        ):
            latest.pop(coid, None)
            forgotten.add(coid)
            return
        known = latest.get(coid)
        if known is None or order.version > known.version:
            latest[coid] = order

    history.messages = await replay(js, "ORDERS", subject, take, timeout=timeout)
    return history
