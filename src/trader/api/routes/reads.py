"""GET endpoints: what the stack is doing. Orders, fills, positions, PnL now and actions come from the
api's view (kept current from the bus); status, streams, dead letters and the lake are asked when
requested; bars, PnL over time, spreads and features are read from QuestDB.

Routes return a ``JSON`` response themselves (msgspec, decimals as strings): anything else FastAPI
would run through pydantic's encoder, which knows no msgspec struct."""

from __future__ import annotations

import asyncio
from typing import Annotated, Any

import httpx
from fastapi import APIRouter, HTTPException, Query

from trader.api import tables
from trader.api.context import JSON
from trader.api.deps import Ctx, Reader

router = APIRouter(prefix="/api", tags=["read"], default_response_class=JSON)

Limit = Annotated[int, Query(ge=1, le=10_000)]
Name = Annotated[str | None, Query(pattern=tables.NAME.pattern)]


@router.get("/whoami", summary="The token's name and role (read or trade), never the token")
async def whoami(who: Reader):
    return JSON({"name": who.name, "role": who.role, "can_trade": who.can_trade})


@router.get("/status", summary="Every component's health and readiness, and the trading state")
async def status(ctx: Ctx, _: Reader):
    from trader.stack.state import read_state
    from trader.stack.status import collect_status

    state = read_state(ctx.settings.run_dir)
    found = await collect_status(state) if state is not None else {"supervisor": None, "components": []}
    return JSON({**found, "trading": ctx.view.trading})


@router.get("/trading", summary="The trading switch: active, reduce_only or halted")
async def trading(ctx: Ctx, _: Reader):
    return JSON(ctx.view.trading)


@router.get("/streams", summary="Each stream's size, and the trading history's room")
async def streams(ctx: Ctx, _: Reader):
    from trader.bus.streams import HISTORY_STREAMS, STREAMS, history_room, stream_max_bytes

    js = ctx.bus()
    rows = []
    for spec in STREAMS:
        info = await js.stream_info(spec.name)
        rows.append(
            {
                "stream": spec.name,
                "subjects": list(spec.subjects),
                "messages": info.state.messages,
                "bytes": info.state.bytes,
                "max_bytes": stream_max_bytes(spec, ctx.settings),  # -1: the trading history's room
            }
        )
    used = sum(r["bytes"] for r in rows if r["stream"] in HISTORY_STREAMS)
    room = history_room(ctx.settings)
    return JSON(
        {
            "streams": rows,
            "history": {"bytes": used, "room_bytes": room, "share": used / room if room else 1.0},
        }
    )


@router.get("/orders", summary="The latest state of each order, newest first")
async def orders(
    ctx: Ctx,
    _: Reader,
    status: Annotated[str | None, Query(description="open, ended, or an order status (FILLED, ...)")] = None,
    strategy: Name = None,
    symbol: Name = None,
    limit: Limit = 100,
):
    return JSON(ctx.view.query_orders(status=status, strategy=strategy, symbol=symbol, limit=limit))


@router.get("/orders/{client_order_id}", summary="One order, with every state and report, oldest first")
async def order(ctx: Ctx, _: Reader, client_order_id: str):
    detail = ctx.view.order_detail(client_order_id)
    if detail is None:
        raise HTTPException(404, f"no order {client_order_id!r}")
    return JSON(detail)


@router.get("/fills", summary="Fills, newest first")
async def fills(ctx: Ctx, _: Reader, strategy: Name = None, symbol: Name = None, limit: Limit = 100):
    return JSON(ctx.view.query_fills(strategy=strategy, symbol=symbol, limit=limit))


@router.get("/positions", summary="The latest position per account, venue, symbol (and strategy)")
async def positions(ctx: Ctx, _: Reader, account: Name = None, strategy: Name = None):
    return JSON(ctx.view.query_positions(account=account, strategy=strategy))


@router.get("/pnl", summary="The latest PnL of each strategy and the total")
async def pnl(ctx: Ctx, _: Reader):
    return JSON(ctx.view.query_pnl())


async def _rows(ctx: Ctx, sql: str, *, newest_first: bool = False) -> JSON:
    from trader.stores.questdb import QuestDBClient, QuestDBError

    try:
        return JSON(
            await asyncio.to_thread(
                tables.query_rows, QuestDBClient(ctx.settings), sql, newest_first=newest_first
            )
        )
    except QuestDBError as exc:
        raise HTTPException(400, str(exc)) from None
    except (OSError, httpx.TransportError) as exc:  # httpx's connection errors are not OSErrors
        raise HTTPException(503, f"QuestDB cannot be reached: {exc}") from None


def _sql(build: Any, *args: Any) -> str:
    try:
        return build(*args)
    except ValueError as exc:
        raise HTTPException(422, str(exc)) from None


@router.get("/pnl/history", summary="PnL over time (QuestDB pnl), oldest first")
async def pnl_history(
    ctx: Ctx,
    _: Reader,
    scope: str = "total",
    since: Annotated[int | None, Query(description="epoch ms")] = None,
    until: Annotated[int | None, Query(description="epoch ms")] = None,
    limit: Limit = 1000,
):
    return await _rows(ctx, _sql(tables.pnl_sql, scope, since, until, limit), newest_first=True)


@router.get("/bars", summary="OHLCV bars (QuestDB ohlcv_<timeframe>), oldest first")
async def bars(
    ctx: Ctx,
    _: Reader,
    symbol: str,
    venue: str = "mock",
    timeframe: str = "1m",
    since: Annotated[int | None, Query(description="epoch ms")] = None,
    until: Annotated[int | None, Query(description="epoch ms")] = None,
    limit: Limit = 500,
):
    return await _rows(
        ctx, _sql(tables.bars_sql, symbol, venue, timeframe, since, until, limit), newest_first=True
    )


@router.get("/spreads", summary="The latest rows of QuestDB spreads ([] while it does not exist)")
async def spreads(ctx: Ctx, _: Reader, symbol: Name = None, limit: Limit = 500):
    return await _rows(ctx, _sql(tables.latest_rows_sql, "spreads", symbol, limit))


@router.get("/features", summary="The latest rows of QuestDB features_<timeframe> ([] while absent)")
async def features(ctx: Ctx, _: Reader, timeframe: str = "1m", symbol: Name = None, limit: Limit = 500):
    table = _sql(tables.features_table, timeframe)
    return await _rows(ctx, _sql(tables.latest_rows_sql, table, symbol, limit))


@router.get("/dlq", summary="Dead letters, newest first: who refused what, and why")
async def dlq(ctx: Ctx, _: Reader, service: Name = None, limit: Annotated[int, Query(ge=1, le=1000)] = 100):
    from trader.bus.dlq import REFUSED_AT, read_dead_letters

    letters = await read_dead_letters(ctx.bus(), service, limit)
    return JSON(
        [
            {
                **{k: v for k, v in x.items() if k not in ("data", "headers", "refused_at")},
                "refused_at": int(x["headers"].get(REFUSED_AT, "0")),
                "payload": x["data"].decode("utf-8", errors="backslashreplace"),
            }
            for x in letters
        ]
    )


@router.get("/lake", summary="The lake's tables: version, files, rows, bytes")
async def lake(ctx: Ctx, _: Reader):
    from trader.stores.lake import TABLES, Lake

    def infos() -> list[dict[str, Any]]:
        store = Lake(ctx.settings)
        return [store.info(t) for t in TABLES.values()]

    try:
        return JSON(await asyncio.to_thread(infos))
    except OSError as exc:
        raise HTTPException(503, f"the lake cannot be reached: {exc}") from None


@router.get("/actions", summary="Operator actions, newest first: who, what, when, outcome")
async def actions(ctx: Ctx, _: Reader, limit: Limit = 100):
    return JSON(ctx.view.query_actions(limit))
