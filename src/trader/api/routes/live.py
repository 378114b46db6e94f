"""The WebSocket, ``/api/ws``: what happens on the bus, pushed as it happens (protocol: docs/api.md).

Authentication: an ``Authorization: Bearer`` header, or (browsers cannot set one on a WebSocket) a
first message ``{"op": "auth", "token": ...}`` within ``AUTH_TIMEOUT_S``; an unknown token closes the
connection with code 4401. Then ``subscribe`` and ``unsubscribe`` ops, each answered ``subscribed``
with what the client now receives."""

from __future__ import annotations

import asyncio
import contextlib
import re

import msgspec
from fastapi import APIRouter, WebSocket, WebSocketDisconnect

from trader.api.auth import Principal
from trader.api.context import ApiContext
from trader.api.live import CHANNELS, Client, frame
from trader.bus.streams import bar_subject, tick_subject

router = APIRouter()

AUTH_TIMEOUT_S = 10.0
UNAUTHORIZED = 4401
TOO_SLOW = 1013
TOKEN = re.compile(r"^[A-Za-z0-9_-]{1,64}$")
TIMEFRAME = re.compile(r"^[0-9]{1,4}[smhd]$")


class Instrument(msgspec.Struct, forbid_unknown_fields=True):
    venue: str
    symbol: str
    timeframe: str | None = None


class Op(msgspec.Struct, forbid_unknown_fields=True):
    op: str
    token: str | None = None
    channels: list[str] = []
    ticks: list[Instrument] = []
    bars: list[Instrument] = []


_op = msgspec.json.Decoder(Op)


def subjects_of(op: Op) -> set[str]:
    """The market subjects an op names; ValueError for a name that is not a subject token."""
    found = set()
    for t in op.ticks:
        if not (TOKEN.match(t.venue) and TOKEN.match(t.symbol)):
            raise ValueError(f"ticks: {t.venue!r}/{t.symbol!r} is not a venue and symbol")
        found.add(tick_subject(t.venue, t.symbol))
    for b in op.bars:
        if not (TOKEN.match(b.venue) and TOKEN.match(b.symbol) and TIMEFRAME.match(b.timeframe or "")):
            raise ValueError(
                f"bars: {b.venue!r}/{b.symbol!r}/{b.timeframe!r} is not a venue, symbol, timeframe"
            )
        found.add(bar_subject(b.timeframe or "", b.venue, b.symbol))
    return found


def _header_token(ws: WebSocket) -> str | None:
    scheme, _, token = (ws.headers.get("authorization") or "").partition(" ")
    return token.strip() if scheme.lower() == "bearer" else None


async def _authenticate(ws: WebSocket, ctx: ApiContext) -> Principal | None:
    token = _header_token(ws)
    if token is None:
        try:
            first = _op.decode(await asyncio.wait_for(ws.receive_text(), AUTH_TIMEOUT_S))
        except (TimeoutError, msgspec.DecodeError, msgspec.ValidationError):
            return None
        token = first.token if first.op == "auth" else None
    return ctx.tokens.identify(token)


def _snapshot(ctx: ApiContext, channels: set[str]) -> list[bytes]:
    """What a client gets at once on subscribing: the state now of positions, PnL and the switch."""
    view, out = ctx.view, []
    if "trading" in channels:
        out.append(frame("trading", view.trading, None))
    if "positions" in channels:
        out += [frame("position", p, None) for p in view.query_positions()]
    if "pnl" in channels:
        out += [frame("pnl", s, None) for s in view.query_pnl()]
    return out


async def _apply(ws: WebSocket, ctx: ApiContext, client: Client, text: str) -> None:
    try:
        op = _op.decode(text)
        unknown = set(op.channels) - set(CHANNELS)
        if unknown:
            raise ValueError(f"unknown channel(s) {sorted(unknown)}; channels: {', '.join(CHANNELS)}")
        subjects = subjects_of(op)
        if op.op not in ("subscribe", "unsubscribe"):
            raise ValueError(f"unknown op {op.op!r}: subscribe or unsubscribe")
    except (msgspec.DecodeError, msgspec.ValidationError, ValueError) as exc:
        client.push(frame("error", {"reason": str(exc)}, None))
        return
    if op.op == "subscribe":
        added = set(op.channels) - client.channels
        client.channels |= set(op.channels)
        client.subjects |= subjects
        for item in _snapshot(ctx, added):
            client.push(item)
    else:
        client.channels -= set(op.channels)
        client.subjects -= subjects
    if ctx.follow_market is not None:
        await ctx.follow_market(ctx.hub.subjects())
    client.push(
        frame("subscribed", {"channels": sorted(client.channels), "subjects": sorted(client.subjects)}, None)
    )


async def _send(ws: WebSocket, client: Client) -> None:
    while True:
        await ws.send_text((await client.queue.get()).decode())


@router.websocket("/api/ws")
async def live(ws: WebSocket) -> None:
    ctx: ApiContext = ws.app.state.ctx
    await ws.accept()
    who = await _authenticate(ws, ctx)
    if who is None:
        await ws.close(UNAUTHORIZED, "unknown token")
        return
    client = ctx.hub.join(who.name)
    sender = asyncio.create_task(_send(ws, client))
    overflow = asyncio.create_task(client.overflowed.wait())
    try:
        while True:
            receive = asyncio.ensure_future(ws.receive_text())
            done, _ = await asyncio.wait({receive, sender, overflow}, return_when=asyncio.FIRST_COMPLETED)
            if receive not in done:
                receive.cancel()
                if overflow in done:
                    await ws.close(TOO_SLOW, "too slow: more than 10,000 messages waiting")
                break
            await _apply(ws, ctx, client, receive.result())
    except (WebSocketDisconnect, RuntimeError):
        pass
    finally:
        ctx.hub.leave(client)
        for task in (sender, overflow):
            task.cancel()
        with contextlib.suppress(Exception):
            if ctx.follow_market is not None:
                await ctx.follow_market(ctx.hub.subjects())
