"""The orders view an operator reads (`trader orders`): the latest state of each order, read from
``order.state.>`` in the ORDERS stream and folded by ``trader.orders.history.OrderHistory``."""

from __future__ import annotations

import msgspec
from nats.js import JetStreamContext

from trader.bus.read import Stored, replay
from trader.bus.streams import ALL_ORDER_STATES, EXEC_ID_HEADER
from trader.messages import Order
from trader.orders.history import OrderHistory

_order_decoder = msgspec.json.Decoder(Order)


async def read_orders(
    js: JetStreamContext,
    subject: str = ALL_ORDER_STATES,
    *,
    timeout: float = 300,
    forget_ended_before_ms: int | None = None,
) -> OrderHistory:
    """The latest state of every order on ``subject`` (one strategy's, or all); undecodable states are
    counted and skipped. With ``forget_ended_before_ms``, an order whose state ends it before then
    (an ended order changes no more) is kept by its id only, in ``forgotten``: memory for the recent
    orders, not for the whole history."""
    history = OrderHistory()

    async def take(stored: Stored) -> None:
        try:
            order = _order_decoder.decode(stored.data)
        except (msgspec.ValidationError, msgspec.DecodeError):
            history.undecodable += 1
            return
        history.apply(order, (stored.headers or {}).get(EXEC_ID_HEADER), forget_ended_before_ms)

    history.messages = await replay(js, "ORDERS", subject, take, timeout=timeout)
    return history
