"""oms: the state of every order.

Consumes: ``RiskDecision`` on ``order.risk.>``, ``CancelRequest`` on ``order.cancel.>`` (a cancel; a
cancel-replace is risk's to judge, and left to it) and ``ReplaceDecision`` on ``order.replace.>``, risk's
verdict on a cancel-replace (stream ORDERS, intake input ``oms-orders`` in mode WORK, in stream order),
``ExecutionReport`` on ``exec.report.>`` (stream EXEC, input ``oms-reports`` in mode WORK), and the
trading switch (``trader.bus.trading_switch``). The two work inputs share one lock: a batch is applied to the
book and its outputs stored before the other's is.
Produces: every changed ``Order`` on ``order.state.<strategy>`` (msg id ``<client_order_id>:<version>``;
the header ``Trader-Exec-Id`` names the report that made it), and ``VenueOrder`` new, cancel or replace on
``exec.route.<strategy>`` for the router (a replace, once risk approved it, carries the new terms; the
venue answers "replaced", applied with them, or "rejected", and the order works on as before; a replace
risk denied is asked and refused at once, two states, the reason ``replace denied: <check and numbers>``,
and never reaches a venue; a verdict is applied once per ``replace_id``, kept in the order). An order
whose venue leaves the router nothing to choose (the venue it names, else ``routing.fixed_venue``, else
the only venue configured for its symbol, when configured and run by exeq) gets that venue written into
it and goes, with its cancels and replaces, straight to exeq on ``exec.order.<venue>``.
State: an ``OrderBook``, the latest published state of every order. Inputs: ``order.state.>`` of ORDERS
in mode HISTORY (``trader.runtime.intake``, consumer ``oms-states``): at start the book is the latest
snapshot's (``trader.runtime.snapshots``, key ``oms``: every order held, the forgotten ids, the exec ids
applied, with the ORDERS sequence it covers) and the states after it (all of them without a usable
snapshot: none, corrupt, or of another schema version), the highest version per id winning and the
``Trader-Exec-Id`` headers naming the reports applied; then it reads its own states back (they change
nothing) and snapshots the book every ``SNAPSHOT_EVERY_MESSAGES`` states or ``SNAPSHOT_EVERY_S`` seconds,
never while a batch's states are applied but not yet stored, and at a graceful stop. Once the book is
whole (``/ready``), the work inputs resume after their checkpoints (``trader.runtime.intake``).
A batch is checkpointed and acknowledged only once what it caused is stored, so a crash hands it over
again: a decision or report already applied is recognised (client order id, replace id, exec id) and
changes nothing, and the venue order it caused is sent again under the same msg id, stored once. An
event for an order not in the book yet (a cancel overtaking its decision, a report racing a restart) is
offered again for ``UNKNOWN_ORDER_FOR_S`` seconds (``NotYet``), then dead-lettered.
Orders that ended more than ``oms.closed_order_retention_s`` ago (an hour by default) leave memory, at
start and then a few after every batch: only their ids and their reports' exec ids stay, so a repeated
request or report is still a repeat; a cancel for one is a late request, a new report for one a dead
letter (news of an order ended long ago, for an operator to look at). Those ids go too two hours after the
order ended, or a retention after it left memory if that is longer (``OrderBook.drop_forgotten``,
``trader.orders.retention.ids_cutoff``): a repeat is a second stored copy of a
message, which only a publisher retrying past JetStream's duplicate window (``stream_duplicate_window_s``,
2 minutes) can store, while the server is unreachable (the work inputs' redeliveries come within
seconds, from their checkpoints); an hour, and two for the ids, bounds that with room to spare.
So the book and its snapshot hold the orders open, those that ended in the last hour and the ids of the
hour before, whatever the length of the history. The ORDERS stream keeps them all (``trader orders --all``).
Kill switch: when the state turns ``halted``, every open order is canceled at once, and a replace approved
before the switch is denied.
"""

from __future__ import annotations

import asyncio
import time
from dataclasses import dataclass, field
from decimal import Decimal
from typing import Any, Literal

import msgspec
from nats.js.kv import KeyValue

from trader.bus.publish import Outgoing
from trader.bus.read import decode_message, refusal, subject_token
from trader.bus.refusals import InvalidMessage
from trader.bus.streams import (
    ALL_ORDER_STATES,
    EXEC_ID_HEADER,
    exec_order_subject,
    exec_route_subject,
    order_state_subject,
)
from trader.bus.trading_switch import read_state, state_bucket
from trader.config import Settings
from trader.execution.routing import Routing
from trader.messages import (
    CancelRequest,
    ExecutionReport,
    Order,
    OrderRequest,
    ReplaceDecision,
    RiskDecision,
    TradingState,
    VenueOrder,
    encode,
)
from trader.orders import (
    DuplicateOrderId,
    ForgottenOrder,
    IllegalTransition,
    LateRefusal,
    LateRequest,
    MismatchedEvent,
    OrderBook,
    UnknownOrder,
)
from trader.orders.book import BookState
from trader.orders.retention import FORGET_BATCH, Forgetting, ids_cutoff
from trader.orders.state import has_pending_replace, is_replace
from trader.runtime.consumer import now_ms
from trader.runtime.intake import Input, Intake, Mode, NotYet, Received, run_until_caught_up
from trader.runtime.service import Refused, Runtime, Service
from trader.runtime.snapshots import Snapshotting
from trader.runtime.trading_switch import follow_state

# An event for an order not in the book yet is offered again for this long (every RETRY_DELAY_S, and
# after every batch of its input) before it goes to the dead letters.
UNKNOWN_ORDER_FOR_S = 5.0
RETRY_DELAY_S = 0.5
MAX_BATCH = 500
FORGET_EVERY_S = 0.25
# The work inputs' checkpoints at most this often (a repeat is a repeat: a crash hands over again up to
# this long of work, never loses any), not a key-value write per batch on the order path.
WORK_CHECKPOINT_EVERY_S = 0.1

# The work: risk's verdicts and the cancels (in the order ORDERS holds them), the venues' reports. Kept
# raw here: each subject is decoded into its own type by ``OrderFlow``.
ORDERS_INPUT = Input(
    "ORDERS",
    ("order.risk.>", "order.cancel.>", "order.replace.>"),
    bytes,
    Mode.WORK,
    name="oms-orders",
    decode=bytes,
    max_batch=MAX_BATCH,
    checkpoint_every_s=WORK_CHECKPOINT_EVERY_S,
    defer_for_s=UNKNOWN_ORDER_FOR_S,
    retry_every_s=RETRY_DELAY_S,
)
REPORTS_INPUT = Input(
    "EXEC",
    "exec.report.>",
    bytes,
    Mode.WORK,
    name="oms-reports",
    decode=bytes,
    max_batch=MAX_BATCH,
    checkpoint_every_s=WORK_CHECKPOINT_EVERY_S,
    defer_for_s=UNKNOWN_ORDER_FOR_S,
    retry_every_s=RETRY_DELAY_S,
)
# The book is the latest published state of every order: read back through the intake, snapshotted.
STATES_INPUT = Input("ORDERS", ALL_ORDER_STATES, Order, Mode.HISTORY, name="oms-states")
# Of BookState: a snapshot of another version is not read (a full replay instead). 2: the forgotten ids'
# end times and each exec id's order, so that both leave after a retention.
STATE_VERSION = 2
SNAPSHOT_EVERY_MESSAGES = 10_000
SNAPSHOT_EVERY_S = 60.0

_decision_decoder = msgspec.json.Decoder(RiskDecision)
_cancel_decoder = msgspec.json.Decoder(CancelRequest)
_replace_decoder = msgspec.json.Decoder(ReplaceDecision)
_report_decoder = msgspec.json.Decoder(ExecutionReport)


@dataclass
class Outcome:
    """What one consumed message caused: messages to publish, then done, not yet (its order is a moment
    behind: offered again), or a dead letter."""

    out: list[Outgoing] = field(default_factory=list)
    ack: Literal["ack", "nak"] = "ack"
    refused: Refused | None = None
    why: str = ""  # of a nak


@dataclass
class OmsState:
    """The running oms, built whole by ``start``: the book and how events change it, the inputs."""

    flow: OrderFlow
    kv: KeyValue
    forgetting: Forgetting
    states: Intake[Order]
    states_task: asyncio.Task[None]
    work: list[Intake[bytes]]
    watch_task: asyncio.Task[None]

    @property
    def book(self) -> OrderBook:
        return self.flow.book


class Oms(Service):
    name = "oms"

    def __init__(self, settings: Settings) -> None:
        super().__init__(settings)
        self.state: OmsState | None = None

    async def start(self, rt: Runtime) -> None:
        started = time.perf_counter()
        kv = await state_bucket(rt.js)
        trading, _ = await read_state(kv)
        # One change of the book (and its publishing) at a time: the two work inputs and the switch.
        flow = OrderFlow(self.settings, OrderBook(), trading, rt, asyncio.Lock())
        retention_s = self.settings.oms.closed_order_retention_s

        def forget(cutoff_ms: int, limit: int | None) -> int:
            """Ended orders leave the book (their ids stay), and the ids of those that ended a
            retention before them go too."""
            forgotten = flow.book.forget_closed(cutoff_ms, limit)
            ids_before = ids_cutoff(cutoff_ms, retention_s)
            if ids_before is not None:
                flow.book.drop_forgotten(ids_before, limit)
            return forgotten

        forgetting = Forgetting(retention_s, forget, lambda: len(flow.book), rt.log, "oms.forgot_closed")
        states, states_task = await self._rebuild(rt, flow, forgetting)
        work = [
            Intake(rt, ORDERS_INPUT, flow.handle, lock=flow.lock),
            Intake(rt, REPORTS_INPUT, flow.handle, lock=flow.lock),
        ]
        try:
            for intake in work:
                await intake.start()
        except BaseException:
            states_task.cancel()
            await asyncio.gather(states_task, return_exceptions=True)
            inputs: list[Intake[Any]] = [states, *work]
            for intake in inputs:
                await intake.stop()
            raise
        rt.log.info(
            "oms.rebuilt",
            orders=len(flow.book),
            forgotten=flow.book.forgotten_count,
            open=flow.book.open_count,
            seconds=round(time.perf_counter() - started, 3),
        )
        # The watch hands over the current state first: a restart while halted cancels what is open.
        watch_task = asyncio.create_task(follow_state(rt, kv, flow.on_trading_state))
        self.state = OmsState(flow, kv, forgetting, states, states_task, work, watch_task)

    async def _rebuild(
        self, rt: Runtime, flow: OrderFlow, forgetting: Forgetting
    ) -> tuple[Intake[Order], asyncio.Task[None]]:
        """The book from its latest snapshot and the states published after it (all of them without
        one), read through the intake; it goes on reading the states live (its own, read back: they
        change nothing), so that the snapshots it takes cover them."""
        book = flow.book
        # The states read after the rebuild are the oms's own: no cutoff for them.
        replay_cutoff = [forgetting.cutoff_ms(), forgetting.ids_cutoff_ms()]

        def take_state(received: Received[Order]) -> list[Outgoing]:
            exec_id = (received.headers or {}).get(EXEC_ID_HEADER)
            book.apply_state(received.value, exec_id, *replay_cutoff)
            return []

        async def rebuilt() -> list[Outgoing]:
            replay_cutoff[:] = [None, None]
            forgetting()
            return []

        snapshots = Snapshotting(
            key=self.name,
            state_type=BookState,
            version=STATE_VERSION,
            take=book.snapshot,
            restore=book.restore,
            every_messages=SNAPSHOT_EVERY_MESSAGES,
            every_s=SNAPSHOT_EVERY_S,
            # Not while a batch's states are applied but not yet stored: a crash would lose them.
            settled=lambda: not flow.lock.locked(),
        )
        states = Intake(rt, STATES_INPUT, take_state, on_caught_up=rebuilt, snapshots=snapshots)
        await states.start()
        [reading] = await run_until_caught_up([states], "the oms's book")  # type: ignore[list-item]
        return states, reading

    # The loop ------------------------------------------------------------------------------------

    async def run(self, rt: Runtime) -> None:
        state = self.state
        assert state is not None, "run follows a successful start"
        working = [asyncio.create_task(intake.run()) for intake in state.work]
        try:
            while not rt.stopping.is_set():
                for task in [state.states_task, *working]:
                    if task.done() and not rt.stopping.is_set():
                        # An input no longer read: the runtime restarts the service.
                        task.result()
                        raise RuntimeError("an input of the oms ended")
                state.forgetting(FORGET_BATCH)  # orders ended long ago leave memory, a few at a time
                await asyncio.wait(working, timeout=FORGET_EVERY_S)
            await asyncio.gather(*working)  # their last batches stored and checkpointed
        finally:
            for task in working:
                task.cancel()
            await asyncio.gather(*working, return_exceptions=True)

    # Lifecycle -----------------------------------------------------------------------------------

    async def stop(self, rt: Runtime) -> None:
        state = self.state
        if state is None:
            return
        state.watch_task.cancel()
        await asyncio.gather(state.watch_task, return_exceptions=True)
        for intake in state.work:
            await intake.stop()
        # It ends once the runtime stops; its last snapshot follows the last batch stored.
        await asyncio.gather(state.states_task, return_exceptions=True)
        await state.states.stop()

    def ready_checks(self) -> dict[str, bool]:
        return {"rebuilt": self.state is not None}

    def health_details(self) -> dict[str, object]:
        state = self.state
        if state is None:
            return {}
        book = state.book
        return {
            "orders": len(book),
            "open_orders": book.open_count,
            "forgotten_orders": book.forgotten_count,
            "trading_mode": state.flow.trading.mode,
            "states": state.states.health_details(),
            "inputs": {intake.name: intake.health_details() for intake in state.work},
        }


class OrderFlow:
    """The book and what each decision, cancel, replace verdict and report does to it: the states and
    venue orders to publish. Its handler is the work inputs' (``handle``)."""

    def __init__(
        self, settings: Settings, book: OrderBook, trading: TradingState, rt: Runtime, lock: asyncio.Lock
    ) -> None:
        self.settings, self.book, self.trading, self.rt, self.lock = settings, book, trading, rt, lock
        # What the routing decision reads, built once: the settings do not change while the oms runs.
        self.routing = Routing.of(settings)

    def handle(self, received: Received[bytes]) -> list[Outgoing]:
        """One message of a work input: what it caused, or ``NotYet`` / ``InvalidMessage``."""
        outcome = self._process(self.rt, received)
        refused = outcome.refused
        if refused is not None:
            raise InvalidMessage(refused.field, refused.reason.removeprefix(f"{refused.field}: "))
        if outcome.ack == "nak":
            raise NotYet("client_order_id", outcome.why, error="unknown_order")
        return outcome.out

    def _process(self, rt: Runtime, msg: Received[bytes]) -> Outcome:
        subject = msg.subject
        try:
            if subject.startswith("order.risk."):
                return self._on_decision(rt, decode_message(_decision_decoder, msg.data), msg)
            if subject.startswith("order.cancel."):
                return self._on_cancel(rt, decode_message(_cancel_decoder, msg.data), msg)
            if subject.startswith("order.replace."):
                return self._on_replace(rt, decode_message(_replace_decoder, msg.data), msg)
            if subject.startswith("exec.report."):
                return self._on_report(rt, decode_message(_report_decoder, msg.data), msg)
        except InvalidMessage as exc:
            return Outcome(refused=refusal(msg.stored, exc.field, exc.reason))
        return Outcome(refused=refusal(msg.stored, "subject", f"not a subject the oms consumes: {subject}"))

    # Events --------------------------------------------------------------------------------------

    def _on_decision(self, rt: Runtime, decision: RiskDecision, msg: Received[bytes]) -> Outcome:
        request = decision.request
        if request.strategy != subject_token(msg.subject):
            return Outcome(refused=refusal(msg.stored, "strategy", f"{request.strategy!r} on {msg.subject}"))
        now = now_ms()
        if not decision.timestamp:
            decision = msgspec.structs.replace(decision, timestamp=now)
        if decision.approved and self.trading.mode == "halted":
            # Approved just before the switch: it must not reach a venue now.
            reason = f"halted: {self.trading.reason or 'trading is halted'}"
            decision = msgspec.structs.replace(decision, approved=False, reason=reason)
        if decision.approved and (venue := self._venue_without_choice(request.symbol, request.venue)):
            # Nothing for the router to choose: the order names its venue, and goes straight to it.
            request = msgspec.structs.replace(request, venue=venue)
            decision = msgspec.structs.replace(decision, request=request)
        try:
            order = self.book.apply_decision(decision)
        except DuplicateOrderId as exc:
            return self._refuse(rt, "duplicate_order_id", exc, request.client_order_id)
        if order is None:  # seen before: an idempotent repeat
            known = self.book.get(request.client_order_id)
            if msg.redelivered and decision.approved and known is not None and known.status == "NEW":
                # The first pass may have died between storing the order and routing it.
                return Outcome([self._route_new(known, request, now)])
            if known is None:  # an id of an order ended long ago and forgotten: told, never reused
                rt.log.info("order.repeat_of_forgotten", client_order_id=request.client_order_id)
            return Outcome()
        # Per order, the approved ones at debug: a log line costs about what the rest of the work does.
        (rt.log.debug if decision.approved else rt.log.info)(
            "order.new" if decision.approved else "order.denied",
            client_order_id=order.client_order_id,
            strategy=order.strategy,
            reason=order.reason,
        )
        out = [state_message(order)]
        if order.status == "NEW":
            out.append(self._route_new(order, request, now))
        return Outcome(out)

    def _on_cancel(self, rt: Runtime, request: CancelRequest, msg: Received[bytes]) -> Outcome:
        if request.strategy != subject_token(msg.subject):
            return Outcome(refused=refusal(msg.stored, "strategy", f"{request.strategy!r} on {msg.subject}"))
        if is_replace(request):
            return Outcome()  # risk judges it, and its verdict comes on order.replace.<strategy>
        if not request.timestamp:
            request = msgspec.structs.replace(request, timestamp=now_ms())
        try:
            order = self.book.apply_cancel(request)
        except ForgottenOrder as exc:  # ended long ago: nothing to cancel, no fault
            rt.log.info("order.late_request", client_order_id=request.client_order_id, error=str(exc))
            return Outcome()
        except UnknownOrder as exc:
            return self._unknown(rt, msg, exc, request.client_order_id)
        except LateRequest as exc:  # asked before the strategy saw the order end: no fault
            rt.log.info("order.late_request", client_order_id=request.client_order_id, error=str(exc))
            return Outcome()
        except (IllegalTransition, MismatchedEvent) as exc:
            return self._refuse(rt, "illegal_transition", exc, request.client_order_id)
        if order is None:  # the same cancel is already pending
            known = self.book.get(request.client_order_id)
            if msg.redelivered and known is not None:
                return Outcome([self._route_cancel(known)])
            return Outcome()
        return Outcome([state_message(order), self._route_cancel(order)])

    def _on_replace(self, rt: Runtime, decision: ReplaceDecision, msg: Received[bytes]) -> Outcome:
        """Risk's verdict on a cancel-replace: approved, the replace goes to the venue; denied (or
        approved just before a halt), the order works on as it was, its state saying why."""
        request = decision.request
        if request.strategy != subject_token(msg.subject) or request.replace_id is None:
            why = f"{request.strategy!r} on {msg.subject}" if request.replace_id else "no replace_id"
            return Outcome(refused=refusal(msg.stored, "request", why))
        if not request.timestamp:
            request = msgspec.structs.replace(request, timestamp=now_ms())
        if decision.approved and self.trading.mode == "halted":
            # A replace may make the order take: nothing new reaches a venue while halted.
            reason = f"halted: {self.trading.reason or 'trading is halted'}"
            decision = msgspec.structs.replace(decision, approved=False, reason=reason)
        decision = msgspec.structs.replace(decision, request=request)
        try:
            changed = self.book.apply_replace(decision)
        except ForgottenOrder as exc:
            rt.log.info("order.late_request", client_order_id=request.client_order_id, error=str(exc))
            return Outcome()
        except UnknownOrder as exc:
            return self._unknown(rt, msg, exc, request.client_order_id)
        except LateRequest as exc:
            rt.log.info("order.late_request", client_order_id=request.client_order_id, error=str(exc))
            return Outcome()
        except (IllegalTransition, MismatchedEvent) as exc:
            return self._refuse(rt, "illegal_transition", exc, request.client_order_id)
        if not changed:  # this replace was applied before
            known = self.book.get(request.client_order_id)
            if msg.redelivered and known is not None and _asks(known, request):
                return Outcome([self._route_cancel(known)])  # the first pass may have died before routing
            return Outcome()
        order = changed[-1]
        rt.log.info(
            "order.replace" if decision.approved else "order.replace_denied",
            client_order_id=order.client_order_id,
            strategy=order.strategy,
            quantity=None if request.quantity is None else str(request.quantity),
            price=None if request.price is None else str(request.price),
            reason=decision.reason,
        )
        out = [state_message(state) for state in changed]
        if decision.approved:
            out.append(self._route_cancel(order))
        return Outcome(out)

    def _on_report(self, rt: Runtime, report: ExecutionReport, msg: Received[bytes]) -> Outcome:
        try:
            order = self.book.apply_report(report)
        except ForgottenOrder as exc:  # news of an order that ended long ago: for an operator to see
            rt.metrics.count_error("forgotten_order")
            rt.log.warning("order.report_for_forgotten", client_order_id=report.client_order_id)
            return Outcome(refused=refusal(msg.stored, "client_order_id", str(exc)))
        except UnknownOrder as exc:
            return self._unknown(rt, msg, exc, report.client_order_id)
        except LateRefusal as exc:  # the order ended before its cancel or replace landed: no fault
            rt.log.info("order.late_refusal", client_order_id=report.client_order_id, error=str(exc))
            return Outcome()
        except (IllegalTransition, MismatchedEvent) as exc:
            return self._refuse(rt, "illegal_transition", exc, report.client_order_id, exec_id=report.exec_id)
        if order is None:  # this exec id was applied before
            return Outcome()
        out = [state_message(order, report.exec_id)]
        if self.trading.mode == "halted" and not order.is_terminal and order.status != "PENDING_CANCEL":
            # Working again while halted (a cancel the venue refused): cancel it again.
            out += self._cancel(rt, order, self.trading)
        return Outcome(out)

    def _unknown(self, rt: Runtime, msg: Received[bytes], exc: UnknownOrder, client_order_id: str) -> Outcome:
        """Its order may be a moment behind (or in a restart's replay): offered again a while."""
        return Outcome(ack="nak", why=f"unknown order: {exc}")

    def _refuse(
        self, rt: Runtime, kind: str, why: Exception | str, client_order_id: str, **context: str
    ) -> Outcome:
        """An event the order's state does not allow: logged and counted, never applied."""
        rt.metrics.count_error(kind)
        rt.log.warning("order.refused", kind=kind, client_order_id=client_order_id, error=str(why), **context)
        return Outcome()

    # The kill switch -----------------------------------------------------------------------------

    async def on_trading_state(self, state: TradingState) -> None:
        rt = self.rt
        if state != self.trading:
            rt.log.info("trading_state.changed", mode=state.mode, reason=state.reason, since=state.since)
        self.trading = state
        if state.mode != "halted":
            return
        async with self.lock:
            out = []
            for order in self.book.open_orders():
                if order.status != "PENDING_CANCEL":
                    out += self._cancel(rt, order, state)
            if out:
                await rt.publish_reliably(out)
        if out:
            rt.log.warning(
                "kill_switch.canceled",
                orders=len(out) // 2,
                ms_since_switch=now_ms() - state.since if state.since else None,
            )

    def _cancel(self, rt: Runtime, order: Order, state: TradingState) -> list[Outgoing]:
        request = CancelRequest(
            client_order_id=order.client_order_id,
            strategy=order.strategy,
            reason=f"kill switch: {state.reason or 'trading halted'}",
            timestamp=now_ms(),
        )
        try:
            changed = self.book.apply_cancel(request)
        except (IllegalTransition, MismatchedEvent) as exc:
            self._refuse(rt, "illegal_transition", exc, order.client_order_id)
            return []
        if changed is None:
            return []
        return [state_message(changed), self._route_cancel(changed)]

    def _route_cancel(self, order: Order) -> Outgoing:
        """The cancel, or the replace when one is pending: straight to the order's venue when it has one
        that leaves nothing to choose (see ``_route_new``), else through the router, which sends either
        where it routed the order."""
        direct = self._goes_direct(order)
        if has_pending_replace(order):
            return route_replace(order, order.venue or "", now_ms(), direct=direct)
        return route_cancel(order, order.venue or "", now_ms(), direct=direct)

    def _route_new(self, order: Order, request: OrderRequest, now: int) -> Outgoing:
        """To exeq straight (``exec.order.<venue>``) when the order's venue leaves nothing to choose;
        else to the router."""
        if self._goes_direct(order):
            return route_new(msgspec.structs.replace(request, venue=order.venue), now, direct=True)
        return route_new(request, now)

    def _goes_direct(self, order: Order) -> bool:
        venue = order.venue
        return venue is not None and self._venue_without_choice(order.symbol, venue) == venue

    def _venue_without_choice(self, symbol: str, requested: str | None) -> str | None:
        return self.routing.direct(symbol, requested)  # the routing decision, in one place


# Messages ----------------------------------------------------------------------------------------


def state_message(order: Order, exec_id: str | None = None) -> Outgoing:
    return Outgoing(
        order_state_subject(order.strategy),
        encode(order),
        msg_id=f"{order.client_order_id}:{order.version}",
        headers={EXEC_ID_HEADER: exec_id} if exec_id else None,
    )


def route_new(request: OrderRequest, now: int, *, direct: bool = False) -> Outgoing:
    """The new order for the router (``exec.route.<strategy>``), or ``direct`` for exeq at its venue."""
    venue_order = VenueOrder(
        action="new",
        client_order_id=request.client_order_id,
        venue_client_id=request.client_order_id,
        strategy=request.strategy,
        account=request.account,
        venue=request.venue or "",
        symbol=request.symbol,
        side=request.side,
        quantity=request.quantity,
        type=request.type,
        price=request.price,
        stop_price=request.stop_price,
        tif=request.tif,
        post_only=request.post_only,
        algo=request.algo,
        algo_params=request.algo_params,
        timestamp=now,
    )
    return Outgoing(
        _route_subject(venue_order, direct),
        encode(venue_order),
        msg_id=f"route:{request.client_order_id}:new",
    )


def _route_subject(order: VenueOrder, direct: bool) -> str:
    return exec_order_subject(order.venue) if direct else exec_route_subject(order.strategy)


def route_cancel(order: Order, venue: str, now: int, *, direct: bool = False) -> Outgoing:
    """The cancel of the whole order (an algo's parent: exeq cancels its children). The version of the
    PENDING_CANCEL state is in the id: a second cancel after a refused one is a new message."""
    return _route_change(order, venue, now, "cancel", order.quantity, order.price, direct)


def route_replace(order: Order, venue: str, now: int, *, direct: bool = False) -> Outgoing:
    """The cancel-replace of a working order (PENDING_CANCEL with its replace terms): the VenueOrder
    carries the new total quantity and limit price, the current one of either when it does not change.
    Each replace is a message of its own (the version that asks it is in the id)."""
    quantity = order.replace_quantity if order.replace_quantity is not None else order.quantity
    price = order.replace_price if order.replace_price is not None else order.price
    return _route_change(order, venue, now, "replace", quantity, price, direct)


def _route_change(
    order: Order,
    venue: str,
    now: int,
    action: Literal["cancel", "replace"],
    quantity: Decimal,
    price: Decimal | None,
    direct: bool,
) -> Outgoing:
    venue_order = VenueOrder(
        action=action,
        client_order_id=order.client_order_id,
        venue_client_id=order.client_order_id,
        strategy=order.strategy,
        account=order.account,
        venue=venue,
        symbol=order.symbol,
        side=order.side,
        quantity=quantity,
        type=order.type,
        price=price,
        stop_price=order.stop_price,
        tif=order.tif,
        post_only=order.post_only,
        algo=order.algo,
        timestamp=now,
    )
    return Outgoing(
        _route_subject(venue_order, direct),
        encode(venue_order),
        msg_id=f"route:{order.client_order_id}:{action}:{order.version}",
    )


def _asks(order: Order, request: CancelRequest) -> bool:
    """The order is still asking the venue for this very replace."""
    return has_pending_replace(order) and order.replace_id == request.replace_id


SERVICE = Oms
