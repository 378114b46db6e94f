"""api: the operator's window on the stack over HTTP and a WebSocket (docs/api.md).

Consumes (kept in memory, ``trader.api.view.ApiView``, so a read never re-reads a stream):
``order.state.>`` (ORDERS) and ``exec.report.>`` (EXEC) in mode HISTORY, every order's states and
reports; ``position.>`` (POSITIONS) and ``pnl.>`` (PNL) in mode LATEST; ``operator.>`` (OPERATOR) in
mode HISTORY, the audit; the trading switch (key-value TRADER_STATE) by a watch. Market data for the
WebSocket (ticks and bars of the symbols clients ask for): an input of mode LATEST per subject
(``market.tick.<venue>.<SYMBOL>`` of MARKET_TICKS, ``market.bar.<tf>.<venue>.<SYMBOL>`` of BARS), from
what comes after it is made (``start_after`` the stream's last sequence), made while a client wants the
subject and dropped when none does: what no one watches is not read. One that cannot be decoded is
counted (``market_undecodable``) and skipped: not the api's to dead-letter (the normalizer's and the
sinks' do); these inputs do not hold /ready back.
Produces: ``OperatorAction`` on ``operator.action.<action>`` for every action (``Nats-Msg-Id`` its
``action_id``), and what the actions do: ``OrderRequest`` to risk, ``CancelRequest`` to the oms, the
trading switch; dead letters replayed.
State: none of its own; the view is rebuilt from the streams at every start (HISTORY inputs from the
first message: no snapshot, the api decides nothing). /ready waits until every input has caught up.

HTTP: the api's FastAPI app on its port (``api``, 8500), with the runtime's ``/health`` and ``/ready``
(no token) and ``/metrics`` (a read token); bound to ``api.host``, else ``bind_host`` (loopback): any
other address is logged as a warning.
"""

from __future__ import annotations

import asyncio
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import msgspec
from fastapi import FastAPI

from trader.api.app import build_app
from trader.api.auth import (
    RateLimiter,
    TokenError,
    TokenRing,
    ensure_token_file,
    load_tokens,
    token_file_path,
)
from trader.api.context import ApiContext
from trader.bus.publish import Outgoing
from trader.bus.streams import ALL_ORDER_STATES, operator_action_subject
from trader.bus.trading_switch import state_bucket
from trader.messages import (
    Bar,
    ExecutionReport,
    MarketTick,
    OperatorAction,
    Order,
    PnlSnapshot,
    Position,
    TradingState,
    encode,
)
from trader.runtime.health import Problem
from trader.runtime.intake import Input, Intake, Mode, Received
from trader.runtime.service import Runtime, Service
from trader.runtime.trading_switch import follow_state

ORDERS_INPUT = Input("ORDERS", ALL_ORDER_STATES, Order, Mode.HISTORY, name="api-orders")
REPORTS_INPUT = Input("EXEC", "exec.report.>", ExecutionReport, Mode.HISTORY, name="api-reports")
POSITIONS_INPUT = Input("POSITIONS", "position.>", Position, Mode.LATEST, name="api-positions")
PNL_INPUT = Input("PNL", "pnl.>", PnlSnapshot, Mode.LATEST, name="api-pnl")
ACTIONS_INPUT = Input("OPERATOR", "operator.>", OperatorAction, Mode.HISTORY, name="api-actions")
LOOPBACK = ("127.0.0.1", "localhost", "::1")

_tick = msgspec.json.Decoder(MarketTick)
_bar = msgspec.json.Decoder(Bar)


def market_input(subject: str, count_error: Callable[[str], None]) -> Input[Any]:
    """The WebSocket's input of one market subject (a tick or a bar subject, checked by the route).
    What cannot be decoded is None, counted as ``market_undecodable``: not the api's to refuse (the
    normalizer and the sinks send it to the dead letters)."""
    tick = subject.startswith("market.tick.")
    decoder: msgspec.json.Decoder[Any] = _tick if tick else _bar

    def decode(data: bytes) -> Any:
        try:
            return decoder.decode(data)
        except (msgspec.DecodeError, msgspec.ValidationError):
            count_error("market_undecodable")
            return None

    if tick:
        return Input("MARKET_TICKS", subject, MarketTick, Mode.LATEST, name="api-ticks", decode=decode)
    return Input("BARS", subject, Bar, Mode.LATEST, name="api-bars", decode=decode)


@dataclass
class Following:
    """One market subject read for the WebSocket: its intake and the task running it."""

    intake: Intake[Any]
    task: asyncio.Task[None]

    async def stop(self) -> None:
        self.task.cancel()
        await asyncio.gather(self.task, return_exceptions=True)
        await self.intake.stop()


class Api(Service):
    name = "api"

    def __init__(self, settings: Any) -> None:
        super().__init__(settings)
        problem = None
        # `trader up` makes it first, to say where; a service started otherwise makes it itself.
        self.created_token_file = ensure_token_file(settings)
        try:
            tokens = load_tokens(settings)
        except TokenError as exc:
            tokens, problem = [], str(exc)
        if not tokens and problem is None:
            problem = (
                f"no api token: none in the settings (api.tokens) and no file {token_file_path(settings)}"
            )
        api = settings.api
        self.ctx = ApiContext(
            settings=settings,
            tokens=TokenRing(tokens),
            limiter=RateLimiter(api.order_rate_per_s, api.order_burst),
            token_problem=problem,
        )
        self.intakes: list[Intake[Any]] = []
        self.market: dict[str, Following] = {}
        self._market_lock = asyncio.Lock()
        self._watch: asyncio.Task[None] | None = None

    # HTTP -----------------------------------------------------------------------------------------

    def http_app(self, probes: FastAPI) -> FastAPI:
        return build_app(self.ctx, probes)

    def bind_host(self) -> str:
        host = self.settings.api.host or self.settings.bind_host
        if host not in LOOPBACK:
            import structlog

            structlog.get_logger(self.name).warning(
                "api.listening_beyond_loopback",
                host=host,
                note="the api can place orders and halt trading: keep it behind a firewall or a TLS proxy",
            )
        return host

    # Lifecycle ------------------------------------------------------------------------------------

    async def start(self, rt: Runtime) -> None:
        self.rt = rt
        ctx = self.ctx
        ctx.record, ctx.follow_market = self._record, self._follow_market
        self.intakes = [
            Intake(rt, ORDERS_INPUT, self._take_order),
            Intake(rt, REPORTS_INPUT, self._take_report),
            Intake(rt, POSITIONS_INPUT, self._take_position),
            Intake(rt, PNL_INPUT, self._take_pnl),
            Intake(rt, ACTIONS_INPUT, self._take_action),
        ]
        for intake in self.intakes:
            await intake.start()
        kv = await state_bucket(rt.js)
        self._watch = asyncio.create_task(follow_state(rt, kv, self._take_trading))
        ctx.js = rt.js
        if ctx.token_problem:
            rt.log.warning("api.no_tokens", problem=ctx.token_problem)
        if self.created_token_file is not None:
            rt.log.info("api.token_file_created", path=str(self.created_token_file))
        rt.log.info("api.started", tokens=len(ctx.tokens))

    async def run(self, rt: Runtime) -> None:
        await asyncio.gather(*(intake.run() for intake in self.intakes))

    async def stop(self, rt: Runtime) -> None:
        if self._watch is not None:
            self._watch.cancel()
        for intake in self.intakes:
            await intake.stop()
        async with self._market_lock:
            for following in self.market.values():
                await following.stop()
            self.market.clear()

    # From the bus to the view and the WebSocket ---------------------------------------------------

    def _live(self, index: int) -> bool:
        return len(self.intakes) > index and self.intakes[index].caught_up

    def _take_order(self, received: Received[Order]) -> list[Outgoing]:
        if self.ctx.view.apply_order(received.value) and self._live(0):
            self.ctx.hub.broadcast("orders", "order", received.value, received.arrival_ms)
        return []

    def _take_report(self, received: Received[ExecutionReport]) -> list[Outgoing]:
        report = received.value
        if self.ctx.view.apply_report(report) and report.kind == "fill" and self._live(1):
            self.ctx.hub.broadcast("fills", "fill", report, received.arrival_ms)
        return []

    def _take_position(self, received: Received[Position]) -> list[Outgoing]:
        self.ctx.view.apply_position(received.subject, received.value)
        self.ctx.hub.broadcast("positions", "position", received.value, received.arrival_ms)
        return []

    def _take_pnl(self, received: Received[PnlSnapshot]) -> list[Outgoing]:
        self.ctx.view.apply_pnl(received.value)
        self.ctx.hub.broadcast("pnl", "pnl", received.value, received.arrival_ms)
        return []

    def _take_action(self, received: Received[OperatorAction]) -> list[Outgoing]:
        if self.ctx.view.apply_action(received.value) and self._live(4):
            self.ctx.hub.broadcast("actions", "action", received.value, received.arrival_ms)
        return []

    async def _take_trading(self, state: TradingState) -> None:
        self.ctx.view.apply_trading(state)
        self.ctx.hub.broadcast("trading", "trading", state, None)

    async def _record(self, action: OperatorAction) -> None:
        """Stored before the answer goes out, and in the view and on the WebSocket at once."""
        item = Outgoing(operator_action_subject(action.action), encode(action), msg_id=action.action_id)
        await self.rt.publish_reliably([item])
        if self.ctx.view.apply_action(action):  # (read back from the stream later, it changes nothing)
            self.ctx.hub.broadcast("actions", "action", action, None)
        self.rt.log.info(
            "api.action",
            actor=action.actor,
            action=action.action,
            outcome=action.outcome,
            detail=action.detail,
        )

    # Market data for the WebSocket ----------------------------------------------------------------

    async def _follow_market(self, wanted: set[str]) -> None:
        """Read the market subjects some client wants, from what comes now, and drop the others."""
        async with self._market_lock:
            for subject in set(self.market) - wanted:
                await self.market.pop(subject).stop()
            for subject in wanted - set(self.market):
                self.market[subject] = await self._follow(subject)

    async def _follow(self, subject: str) -> Following:
        rt, hub = self.rt, self.ctx.hub
        kind = "tick" if subject.startswith("market.tick.") else "bar"

        def take(received: Received[Any]) -> list[Outgoing]:
            if received.value is not None:
                hub.market(subject, kind, received.value, None)
            return []

        source = market_input(subject, rt.metrics.count_error)
        last_seq = (await rt.js.stream_info(source.stream)).state.last_seq
        intake = Intake(rt, source, take, start_after=last_seq)
        await intake.start()
        return Following(intake, asyncio.create_task(intake.run(), name=source.name))

    # Probes -----------------------------------------------------------------------------------------

    def ready_checks(self) -> dict[str, bool]:
        checks: dict[str, bool] = {"inputs": bool(self.intakes)}
        for intake in self.intakes:
            checks.update(intake.ready_checks())
        return checks

    def problems(self) -> list[Problem]:
        problem = self.ctx.token_problem
        # Lasting: only tokens in the settings or a usable file (and a restart) make it go.
        return [Problem(f"{problem}: every request is refused", lasting=True)] if problem else []

    def health_details(self) -> dict[str, object]:
        view, hub = self.ctx.view, self.ctx.hub
        return {
            "orders": len(view.orders),
            "fills": len(view.fills),
            "websocket_clients": len(hub.clients),
            "websocket_sent": hub.sent,
            "market_subscriptions": len(self.market),
            "tokens": len(self.ctx.tokens),
        }


SERVICE = Api
