"""execution-router: picks the venue of every order that leaves a choice.

Consumes: ``exec.route.>`` (stream EXEC), VenueOrders from the oms with the venue empty (to choose) or
fixed; ``market.tick.>`` (MARKET_TICKS, ``market.tick.<venue>.<SYMBOL>``, the latest per subject then
live) for each venue's top of book, read only when some order may be routed on price.
An order whose venue leaves nothing to choose (``trader.execution.routing.Routing.direct``) goes from the
oms straight to ``exec.order.<venue>``: one hop less.
Produces: the VenueOrder with its venue on ``exec.order.<venue>``; for an order that cannot be routed,
an ExecutionReport ``rejected`` with the reason on ``exec.report.<venue>`` (the venue it named) or
``exec.report.router``, so that the oms rejects it. Undecodable route messages go to the dead letters.
The choice is ``trader.execution.routing.Routing.choose`` (the engine: ``trader.execution.router``).

Inputs (``trader.runtime.intake``): ``exec.>`` of EXEC in mode HISTORY (the route messages, and the
answers to them in the stream: what the router published); ``market.tick.>`` in mode LATEST.
State: the routing decision of every order working, and of those that ended in the last two hours of
the reports' time (client_order_id -> venue; the router follows each order's life in EXEC:
``Router.follow``), and the route messages not yet answered, snapshotted (key ``execution-router``)
with the EXEC sequence it covers.

Restart: the state is the latest snapshot's (none, corrupt or of another schema version: empty), then
the EXEC messages after it are applied without publishing: a routed ``exec.order`` gives its decision,
and everything the router published carries ``Trader-Source-Seq`` (the route message it answers), so
a route message answered before the crash is not answered again. Once caught up (and once the quotes
are, so the choice is made on the book of now), the route messages left unanswered are routed. A
repeated answer carries the same ``Nats-Msg-Id`` and is stored once.
"""

from __future__ import annotations

import asyncio
import contextlib
import functools
from dataclasses import dataclass

import msgspec

from trader.bus.publish import Outgoing
from trader.bus.read import decode_message
from trader.execution.desk import Tracked
from trader.execution.router import Router
from trader.marketdata.decode import decode_tick
from trader.messages import MarketTick, VenueOrder
from trader.orders.retention import Ended
from trader.runtime.intake import Input, Intake, Mode, Received
from trader.runtime.service import Runtime, Service
from trader.runtime.snapshots import Snapshotting

EXEC_INPUT = Input("EXEC", "exec.>", bytes, Mode.HISTORY, decode=bytes)
TICKS_INPUT = Input(
    "MARKET_TICKS", "market.tick.>", MarketTick, Mode.LATEST, name="ticks", decode=decode_tick
)

# Of RouterState: a snapshot of another version is not read. 2: the orders followed, so that
# decisions are kept while their order works and a window after, not for ever.
STATE_VERSION = 2
SNAPSHOT_EVERY_MESSAGES = 10_000
SNAPSHOT_EVERY_S = 60.0

_venue_order = msgspec.json.Decoder(VenueOrder)


class Unanswered(msgspec.Struct, frozen=True):
    seq: int
    order: VenueOrder


class Followed(msgspec.Struct, frozen=True, array_like=True):
    client_order_id: str
    tracked: Tracked


class RouterState(msgspec.Struct, frozen=True):
    """What the router knows: the decisions of the orders working and of those that ended in the last
    window, the route messages seen whose answer is not, and the orders followed (``Router.follow``)
    with when those that ended did."""

    decisions: dict[str, str]
    unanswered: list[Unanswered]
    orders: list[Followed] = []
    ended: list[tuple[str, int]] = []
    latest_ms: int = 0


class RouterIntake:
    """The router's reading of EXEC: the rebuild (decisions, answers) then the route messages live."""

    def __init__(self, router: Router, rt: Runtime) -> None:
        self.router, self.rt = router, rt
        self.unanswered: dict[int, VenueOrder] = {}
        self.exec: Intake[bytes] | None = None

    def state(self) -> RouterState:
        unanswered = [Unanswered(seq, order) for seq, order in self.unanswered.items()]
        router = self.router
        return RouterState(
            dict(router.decisions),
            unanswered,
            [Followed(coid, msgspec.structs.replace(t)) for coid, t in router.orders.items()],
            router.ended.items(),
            router.latest_ms,
        )

    def restore(self, state: RouterState) -> None:
        router = self.router
        router.decisions = state.decisions  # the snapshot's, not copied: it is not kept
        self.unanswered = {u.seq: u.order for u in state.unanswered}
        router.orders = {followed.client_order_id: followed.tracked for followed in state.orders}
        router.ended = Ended(state.ended)
        router.latest_ms = state.latest_ms

    def take(self, received: Received[bytes]) -> list[Outgoing]:
        self.router.follow(received.subject, received.data)  # the orders' lives, replayed or live
        if self.exec is not None and received.seq <= self.exec.replay_to:  # stored before this start
            self._replayed(received)
            return []
        if not received.subject.startswith("exec.route."):
            return []  # the answers (this router's, the oms's, exeq's reports): seen when rebuilding
        return self._route(decode_message(_venue_order, received.data), received.seq)

    def _replayed(self, received: Received[bytes]) -> None:
        if received.subject.startswith("exec.route."):
            self.unanswered[received.seq] = decode_message(_venue_order, received.data)
            return
        headers = received.headers
        if headers is not None and (source := self.router.source_seq(headers)) is not None:
            self.unanswered.pop(source, None)
        if received.subject.startswith("exec.order."):
            self.router.remember(decode_message(_venue_order, received.data))

    def _route(self, order: VenueOrder, seq: int) -> list[Outgoing]:
        message = self.router.route(order, seq)
        if message is None:
            self.rt.log.info("router.repeat_skipped", client_order_id=order.client_order_id, seq=seq)
            return []
        return [message]

    async def answer_the_rest(self) -> list[Outgoing]:
        """Once caught up: the route messages no answer in the stream shows, routed now, in order."""
        outputs = [out for seq in sorted(self.unanswered) for out in self._route(self.unanswered[seq], seq)]
        self.rt.log.info(
            "router.rebuilt", decisions=len(self.router.decisions), answered_now=len(self.unanswered)
        )
        self.unanswered.clear()
        return outputs


def take_tick(router: Router, received: Received[MarketTick]) -> list[Outgoing]:
    router.on_tick(received.value)
    return []


@dataclass
class RouterService:
    """A started router: its engine and its inputs."""

    router: Router
    reading: RouterIntake
    exec: Intake[bytes]
    ticks: Intake[MarketTick] | None


class ExecutionRouter(Service):
    name = "execution-router"
    state: RouterService | None = None

    async def start(self, rt: Runtime) -> None:
        router = Router(self.settings)
        reading = RouterIntake(router, rt)
        snapshots = Snapshotting(
            key=self.name,
            state_type=RouterState,
            version=STATE_VERSION,
            take=reading.state,
            restore=reading.restore,
            every_messages=SNAPSHOT_EVERY_MESSAGES,
            every_s=SNAPSHOT_EVERY_S,
        )
        ticks: Intake[MarketTick] | None = None
        if router.routing.needs_quotes:
            ticks = Intake(rt, TICKS_INPUT, functools.partial(take_tick, router))
            await ticks.start()
        else:  # every venue is fixed or alone: no choice on price, so no tick is worth reading
            rt.log.info("router.quotes_not_needed", venues=self.settings.routing.venues)
        exec_intake = Intake(
            rt, EXEC_INPUT, reading.take, on_caught_up=reading.answer_the_rest, snapshots=snapshots
        )
        reading.exec = exec_intake
        await exec_intake.start()
        self.state = RouterService(router, reading, exec_intake, ticks)

    async def run(self, rt: Runtime) -> None:
        state = self.state
        assert state is not None, "run follows a successful start"
        if state.ticks is None:
            await state.exec.run()
            return
        ticks = asyncio.create_task(state.ticks.run())
        try:
            while not state.ticks.caught_up and not rt.stopping.is_set() and not ticks.done():
                await asyncio.sleep(0.02)  # the unanswered route messages are routed on today's book
            await state.exec.run()
        finally:
            ticks.cancel()  # quotes keep no state: nothing to finish
            with contextlib.suppress(asyncio.CancelledError):
                await ticks

    async def stop(self, rt: Runtime) -> None:
        if self.state is None:
            return
        await self.state.exec.stop()
        if self.state.ticks is not None:
            await self.state.ticks.stop()

    def ready_checks(self) -> dict[str, bool]:
        if self.state is None:
            return {"exec": False}
        checks = self.state.exec.ready_checks()
        if self.state.ticks is not None:
            checks |= self.state.ticks.ready_checks()
        return checks

    def health_details(self) -> dict[str, object]:
        if self.state is None:
            return {}
        router = self.state.router
        quoted = {symbol for _venue, symbol in router.by_venue}
        return {
            "routed_orders": len(router.decisions),
            "quoted_symbols": len(quoted),
            "intake": self.state.exec.health_details(),
        }


SERVICE = ExecutionRouter
