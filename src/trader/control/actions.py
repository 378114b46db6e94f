"""What an operator does to the trading, for the CLI and the api alike: an order to risk, a cancel to the
oms, the trading switch, symbols with market data. One place, so `trader order` and ``POST /api/orders``
send the same request the same way (``Nats-Msg-Id`` from its identity)."""

from __future__ import annotations

import secrets
import time
from decimal import Decimal
from typing import Any

from nats.js import JetStreamContext

from trader.bus.streams import order_cancel_subject, order_submit_subject
from trader.bus.trading_switch import state_bucket, write_state
from trader.messages import CancelRequest, OrderRequest, OrderType, TradingState, encode


def now_ms() -> int:
    return time.time_ns() // 1_000_000


def new_client_order_id(strategy: str) -> str:
    return f"{strategy}-{secrets.token_hex(8)}"


def order_type(price: Decimal | None, stop_price: Decimal | None) -> OrderType:
    """What the prices make of an order: a limit with a price, a stop with a trigger."""
    if stop_price is not None:
        return "stop_limit" if price is not None else "stop_market"
    return "limit" if price is not None else "market"


def submit_msg_id(client_order_id: str) -> str:
    return f"submit:{client_order_id}"


def cancel_msg_id(client_order_id: str, timestamp: int) -> str:
    return f"cancel:{client_order_id}:{timestamp}"


async def submit_order(js: JetStreamContext, request: OrderRequest) -> None:
    """Publish an order request to risk (stored and acknowledged); a repeat of the same client order
    id is stored once."""
    await js.publish(
        order_submit_subject(request.strategy),
        encode(request),
        headers={"Nats-Msg-Id": submit_msg_id(request.client_order_id)},
    )


def cancel_request(client_order_id: str, strategy: str, reason: str) -> CancelRequest:
    return CancelRequest(
        client_order_id=client_order_id, strategy=strategy, reason=reason, timestamp=now_ms()
    )


async def request_cancel(js: JetStreamContext, request: CancelRequest) -> None:
    """Publish a cancel to the oms (stored and acknowledged)."""
    await js.publish(
        order_cancel_subject(request.strategy),
        encode(request),
        headers={"Nats-Msg-Id": cancel_msg_id(request.client_order_id, request.timestamp)},
    )


def switch_state(mode: Any, reason: str | None) -> TradingState:
    return TradingState(mode=mode, reason=reason, since=now_ms())


async def set_trading_state(js: JetStreamContext, state: TradingState) -> int:
    """Set the trading switch (the operator's: unconditional); the new revision."""
    return await write_state(await state_bucket(js), state)


async def known_symbols(js: JetStreamContext) -> list[str]:
    """The symbols with market data: the last token of each subject in MARKET_TICKS
    (``market.tick.<venue>.<SYMBOL>``). ``nats.js.errors.NotFoundError`` without that stream."""
    info = await js.stream_info("MARKET_TICKS", subjects_filter="market.tick.>")
    return sorted({subject.rsplit(".", 1)[-1] for subject in info.state.subjects or {}})
