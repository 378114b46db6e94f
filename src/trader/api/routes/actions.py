"""POST and DELETE endpoints: what an operator does, with a trade token. The same functions as the CLI
(``trader.control.actions``, ``trader.bus.dlq``): an order goes to risk like every other, a cancel to
the oms, the switch to the key-value bucket. Every action, accepted or refused, is recorded as an
``OperatorAction`` on the OPERATOR stream before the answer is sent.

Routes return a ``JSON`` response themselves (msgspec, decimals as strings): anything else FastAPI
would run through pydantic's encoder, which knows no msgspec struct."""

from __future__ import annotations

from typing import Any

from fastapi import APIRouter, HTTPException
from nats.js.errors import NotFoundError

from trader.api.context import JSON
from trader.api.deps import Ctx, OrderTrader, Trader
from trader.api.schemas import CancelAllBody, CancelBody, OrderBody, ReplayBody, SwitchBody
from trader.control.actions import (
    cancel_request,
    known_symbols,
    request_cancel,
    set_trading_state,
    submit_order,
    switch_state,
)
from trader.messages import OperatorAction, Order

router = APIRouter(prefix="/api", tags=["act"], default_response_class=JSON)


def _answer(action: OperatorAction, status_code: int = 200, **extra: Any) -> JSON:
    """The answer to an action. (A Response, so FastAPI takes it as it is: the status given here.)"""
    body = {
        "action_id": action.action_id,
        "action": action.action,
        "outcome": action.outcome,
        "detail": action.detail,
    }
    return JSON({**body, **extra}, status_code=status_code)


@router.post("/orders", status_code=202, summary="Submit an order (to risk, then the oms and the venue)")
async def submit(ctx: Ctx, who: OrderTrader, body: OrderBody):
    js = ctx.bus()
    request = body.request()
    params = {
        "client_order_id": request.client_order_id,
        **body.model_dump(exclude_none=True, exclude={"algo_params"}),
    }
    try:
        known = await known_symbols(js)
    except NotFoundError:
        known = []
    if body.symbol not in known:
        reason = f"no market data for {body.symbol!r}" + (
            f"; known symbols: {', '.join(known)}" if known else ""
        )
        await ctx.act(who, "submit_order", params, "refused", reason)
        raise HTTPException(
            422, [{"loc": ["body", "symbol"], "msg": reason, "type": "value_error.unknown_symbol"}]
        )
    await submit_order(js, request)
    action = await ctx.act(who, "submit_order", params, "accepted", "sent to risk")
    return _answer(action, 202, client_order_id=request.client_order_id)


async def _cancel(ctx: Ctx, order: Order, reason: str) -> None:
    await request_cancel(ctx.bus(), cancel_request(order.client_order_id, order.strategy, reason))


@router.delete("/orders/{client_order_id}", status_code=202, summary="Cancel one order")
async def cancel(ctx: Ctx, who: OrderTrader, client_order_id: str, body: CancelBody | None = None):
    reason = (body or CancelBody()).reason
    params = {"client_order_id": client_order_id, "reason": reason}
    order = ctx.view.orders.get(client_order_id)
    if order is None or order.is_terminal:
        detail = f"no order {client_order_id!r}" if order is None else f"order is already {order.status}"
        await ctx.act(who, "cancel_order", params, "refused", detail)
        raise HTTPException(404 if order is None else 409, detail)
    await _cancel(ctx, order, reason)
    action = await ctx.act(who, "cancel_order", params, "accepted", "sent to the oms")
    return _answer(action, 202, client_order_id=client_order_id)


@router.post("/orders/cancel-all", status_code=202, summary="Cancel every open order (of a strategy, symbol)")
async def cancel_all(ctx: Ctx, who: OrderTrader, body: CancelAllBody | None = None):
    body = body or CancelAllBody()
    open_orders = ctx.view.open_orders(strategy=body.strategy, symbol=body.symbol)
    for order in open_orders:
        await _cancel(ctx, order, body.reason)
    ids = [o.client_order_id for o in open_orders]
    params = {"strategy": body.strategy, "symbol": body.symbol, "count": len(ids)}
    action = await ctx.act(who, "cancel_all", params, "accepted", f"{len(ids)} cancel(s) sent to the oms")
    return _answer(action, 202, canceled=ids)


async def _switch(ctx: Ctx, who: Any, action: str, mode: str, body: SwitchBody | None) -> JSON:
    reason = (body.reason if body else None) or f"{action} by {who.name} through the api"
    state = switch_state(mode, reason)
    await set_trading_state(ctx.bus(), state)
    ctx.view.apply_trading(state)  # the watch says the same a moment later
    recorded = await ctx.act(who, action, {"reason": reason}, "accepted", f"trading {mode}")
    return _answer(recorded, trading=state)


@router.post("/trading/halt", summary="Kill switch: new orders denied, open orders canceled")
async def halt(ctx: Ctx, who: Trader, body: SwitchBody | None = None):
    return await _switch(ctx, who, "halt", "halted", body)


@router.post("/trading/reduce-only", summary="Only orders that shrink a position pass")
async def reduce_only(ctx: Ctx, who: Trader, body: SwitchBody | None = None):
    return await _switch(ctx, who, "reduce_only", "reduce_only", body)


@router.post("/trading/resume", summary="Trading active again (lifts reduce-only too)")
async def resume(ctx: Ctx, who: Trader, body: SwitchBody | None = None):
    return await _switch(ctx, who, "resume", "active", body)


@router.post("/dlq/replay", summary="Publish refused messages again and remove them from the dead letters")
async def replay(ctx: Ctx, who: Trader, body: ReplayBody | None = None):
    from trader.bus.dlq import read_dead_letters, replay_dead_letters, replay_groups

    body = body or ReplayBody()
    js = ctx.bus()
    originals = replay_groups(
        await read_dead_letters(js, body.service, body.limit), body.reason, body.include_late
    )
    chosen = [
        {
            "stream": k[0],
            "stream_seq": k[1],
            "subject": g[0]["subject"],
            "services": sorted({x["service"] for x in g}),
        }
        for k, g in originals.items()
    ]
    params = body.model_dump(exclude_none=True)
    if body.dry_run:
        action = await ctx.act(
            who, "replay_dlq", params, "accepted", f"dry run: {len(chosen)} would be replayed"
        )
        return _answer(action, messages=chosen)
    try:
        count = await replay_dead_letters(js, originals)
    except RuntimeError as exc:
        await ctx.act(who, "replay_dlq", params, "failed", str(exc))
        raise HTTPException(502, str(exc)) from None
    action = await ctx.act(who, "replay_dlq", params, "accepted", f"{count} replayed")
    return _answer(action, messages=chosen)
