"""The execution desk: exeq's engine. Venue orders, ticks and the algos' clock in; execution reports,
algo child orders and their reports out (``Outgoing``, through the ``publish`` it is given). No bus: the
exeq service (``trader.services.exeq``) feeds it what it reads and stores what it publishes; the venue
adapters (``trader.execution.venues``) are given to it.

Algos: a parent (``algo`` set) is worked by ``create_algo`` and driven every ``exeq.algo_interval_s`` and
after each report. The oms knows the parent only, so on ``exec.report.<venue>`` go the parent's own
reports (``accepted`` at once; ``canceled`` or ``expired`` when it ends short; ``rejected`` for bad
params) and the children's fills (``client_order_id`` is the parent's, ``venue_client_id`` the child's).
Each child order is published on ``exec.algo.order.<venue>`` *before* it is sent to the venue, and a
child's other reports on ``exec.algo.report.<venue>``: the stream then holds all an algo saw, in order.

Replace (cancel-replace): the adapter's ``replace`` changes a working order's total quantity and/or limit
price; its ``replaced`` report carries the new terms (``last_quantity`` the new total quantity,
``last_price`` the new limit price) and may be followed by fills, or it is ``rejected`` ("replace
rejected: ...") and the order works on unchanged. exeq rejects itself the replace of an algo parent (not
supported), of an order that has ended, and a quantity not above what filled.

Exec ids are ``<venue>:<venue_client_id>:<n>``, the n-th report published about that venue order,
assigned here (not by the adapter), so they are deterministic and survive restarts.

Restart: on start exeq restores its latest snapshot (``snapshot``/``restore_snapshot``: the venue
orders, counters, ended and forgotten keys, and the algos working, each as ``AlgoState``), replays
``exec.order.>``, ``exec.algo.>`` and ``exec.report.>`` after it from the EXEC stream into
``ExecutionDesk.replay``, then calls ``ExecutionDesk.restore``. Every venue order comes
back with its fills, its report count and whether it ended; every algo is rebuilt by feeding it the
same calls in the same order (``next_actions`` at each recorded child's release time, ``on_report``
with each report), so its children, schedule and aggregate are exactly those of before (a parent its
children filled ended at its algo's last report, live and rebuilt alike; an ended child kept from
forgetting while its algo works keeps when it ended). Then the simpler rule for the paper venue, whose
book lived in memory:

- every venue order without a terminal report is submitted again for its unfilled rest, before any tick
  is shown (limits rest, stops wait again for their trigger); a market order's rest waits for the first
  tick of its symbol. Its repeated ``accepted`` is not published; its ``venue_order_id`` is kept.
- an order's terms are those of its last ``replaced`` report (the replace in the stream before it gave
  them), so its rest is submitted with its replaced price and quantity; a replace in the stream with no
  answer after it is carried out, as a cancel is;
- a cancel in the stream whose order is still open is carried out; a canceled algo's working children
  are canceled; a finished algo whose end was not reported is reported; an algo still working releases
  its next children once its symbol has a tick again (before, market children would find no quote).
- the latest stored tick of a symbol, shown again at start, is shown without its size when it is not
  newer than the last replayed fill of that symbol: its quote makes the book, its liquidity was used
  before the restart (a rest still working then is a rest the tick could not fill).

So no fill is published twice: a fill in the stream is counted in the rest and in the next exec id, and
a publish repeated after a crash has the same ``Nats-Msg-Id``. A fill made but not stored before a crash
is lost, as a venue message lost in transit would be, and the order works on. What the rule gives up:
the paper venue's balances start over from ``initial_balances``; a stop that had triggered waits for its
trigger again; with ``latency_ms`` a restored order meets the book anew; the tick shown again lends no
size to either side, though before the restart only one side may have used it.

Memory: a venue order that ended more than ``exeq.closed_order_retention_s`` ago (an hour by default)
leaves memory, here and in its adapter (paper, ccxt), after the restore and then a few at a time on
the algos' clock; while the stream is replayed, by the time of its latest report (``forget_replayed``,
every so many messages: a full replay holds the retention's window of the history, not all of it, and
ends as if it forgot after the restore); its key and exec id counter stay, so a repeated order is
still a repeat and anything published later about it is numbered after what was (a cancel for it:
"unknown order", as a venue says of old orders), until two hours after it ended or a retention more if
longer (``drop_forgotten``), then they go too. A child is kept while its algo works."""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import AsyncIterator, Awaitable, Callable
from decimal import Decimal

import msgspec

from trader.bus.publish import Outgoing
from trader.bus.streams import exec_algo_order_subject, exec_algo_report_subject, exec_report_subject
from trader.execution.algos import AlgoParamsError, AlgoState, ExecutionAlgo, create_algo, restore_algo
from trader.execution.venues import VenueAdapter
from trader.execution.venues.base import report_about
from trader.messages import ExecutionReport, MarketTick, ReportKind, VenueOrder, encode
from trader.orders.retention import Ended, ids_cutoff

_venue_order = msgspec.json.Decoder(VenueOrder)
_report = msgspec.json.Decoder(ExecutionReport)

Key = tuple[str, str]  # venue, venue_client_id
Publish = Callable[[list[Outgoing]], Awaitable[object]]


class Tracked(msgspec.Struct, gc=False):
    """A venue order (top-level, algo parent or algo child) and what was published about it. Kept for
    every order exeq has seen: out of the garbage collector's sight, as the messages it holds."""

    order: VenueOrder
    parent: str | None = None  # the parent's venue_client_id, for an algo's child
    filled: Decimal = Decimal(0)
    acknowledged: bool = False  # "accepted" published: a restore's repeat of it is not
    ended: bool = False
    venue_order_id: str | None = None
    replace: VenueOrder | None = None  # a replace sent, until the venue answers it
    # Filled before the adapter was given the order (its rest, after a restart): the adapter counts
    # quantities from there.
    offset: Decimal = Decimal(0)

    @property
    def remaining(self) -> Decimal:
        return self.order.quantity - self.filled

    def apply(self, report: ExecutionReport) -> None:
        self.venue_order_id = self.venue_order_id or report.venue_order_id
        if report.kind == "accepted":
            self.acknowledged = True
        elif report.kind == "fill":
            self.filled += report.last_quantity
            self.ended = self.ended or self.filled >= self.order.quantity
        elif report.kind in ("canceled", "expired"):
            self.ended = True
        elif report.kind == "replaced" and self.replace is not None:
            self.order = msgspec.structs.replace(
                self.order, quantity=self.replace.quantity, price=self.replace.price
            )
            self.replace = None
            self.ended = self.ended or self.filled >= self.order.quantity
        elif report.kind == "rejected" and self.replace is not None:
            self.replace = None  # a refused replace leaves the order working on its old terms
        elif report.kind == "rejected" and not self.acknowledged and self.filled == 0:
            self.ended = True  # refused on submit; a refused cancel leaves a working order working


class Held(msgspec.Struct, frozen=True, array_like=True):
    """A venue order held, as a snapshot keeps it."""

    venue: str
    venue_client_id: str
    tracked: Tracked


class Counted(msgspec.Struct, frozen=True, array_like=True, order=True):
    """A key (venue, venue_client_id, or venue, symbol) with a number: reports published, when an order
    ended, the latest fill time."""

    venue: str
    id: str
    n: int


class HeldAlgo(msgspec.Struct, frozen=True, array_like=True):
    """An algo working, as a snapshot keeps it: its parent's key and its state."""

    venue: str
    venue_client_id: str
    state: AlgoState


class DeskState(msgspec.Struct, frozen=True):
    """What the desk knows of the stream, as a snapshot keeps it (``ExecutionDesk.snapshot``): the venue
    orders held (in the order first seen), the exec id counters, the ended orders held and those
    forgotten with when they ended, the latest fill time per symbol, the cancels seen of the orders
    still open, and the algos working (``AlgoState``: each as a replay of its history makes it again).
    Restored before the rest of the stream is replayed (``restore_snapshot``)."""

    orders: list[Held]
    numbers: list[Counted]
    ended: list[Counted]
    forgotten: list[Counted]
    last_fill_ms: list[Counted]
    cancels: list[tuple[str, str]]
    algos: list[HeldAlgo] = []


class ExecutionDesk:
    """The venues and algos of exeq, without the bus: orders, ticks and the clock in, messages out through
    ``publish``. Callers may come from several tasks: every entry point holds one lock, and publishes
    what it caused in one batch as it ends (pipelined, in order); a child order is published, and
    stored, before it goes to the venue."""

    def __init__(self, adapters: dict[str, VenueAdapter], publish: Publish, clock: Callable[[], int]) -> None:
        self.adapters = adapters
        self.publish = publish
        self.clock = clock
        self.lock = asyncio.Lock()
        self.orders: dict[Key, Tracked] = {}
        self._maybe_open: set[Key] = set()  # keys of ``orders`` not ended when last counted, or newer
        self._ended: Ended[Key] = Ended()  # ended venue orders held, by when they ended
        self._forgotten: set[Key] = set()  # venue orders ended long ago: their keys only (see forget_ended)
        self._forgotten_at: Ended[Key] = Ended()  # ... by when they ended (see drop_forgotten)
        self.algos: dict[Key, ExecutionAlgo] = {}
        # Ended orders of an algo still working, held back from forgetting with when they ended, by the
        # algo's key: back in line, as they were, once it ends (see forget_ended).
        self._held: dict[Key, list[tuple[Key, int]]] = {}
        self.numbers: dict[Key, int] = {}  # reports published per venue order: the next exec id
        self.last_fill_ms: dict[Key, int] = {}  # (venue, symbol) -> latest fill time
        self._top_level: dict[Key, str] = {}  # (venue, client_order_id) -> venue_client_id
        self._cancels_seen: set[Key] = set()  # cancels in the replayed stream
        self._deferred: dict[Key, list[VenueOrder]] = {}  # (venue, symbol) -> market rests to restore
        self._paused: set[Key] = set()  # restored algos: they release again once their symbol has a tick
        self._outbox: list[Outgoing] = []  # what the entry point in progress caused, to publish as it ends
        self.replayed_ms = 0  # the latest time of a report of exeq's replayed: the history's clock

    # Entry points --------------------------------------------------------------------------------

    async def on_order(self, order: VenueOrder) -> None:
        await self.on_orders([order])

    async def on_orders(self, orders: list[VenueOrder]) -> None:
        async with self._turn():
            for order in orders:
                if order.action == "new":
                    await self._new(order)
                elif order.action == "replace":
                    await self._replace(order)
                else:
                    await self._cancel(order)

    async def on_tick(self, tick: MarketTick, *, seen_before: bool = False) -> None:
        """``seen_before``: a tick stored before this start, which the previous run may have used."""
        async with self._turn():
            for venue, adapter in self.adapters.items():
                shown = tick
                if seen_before and tick.timestamp <= self.last_fill_ms.get((venue, tick.symbol), -1):
                    shown = msgspec.structs.replace(tick, size=Decimal(0), volume=Decimal(0))
                touched = await self._handle(venue, adapter.on_tick(shown))
                if adapter.quotes_from(tick):
                    for rest in self._deferred.pop((venue, tick.symbol), []):
                        touched |= await self._handle(venue, await adapter.submit(rest))
                    touched |= self._unpause(venue, tick.symbol)
                await self._settle(venue, touched)

    @contextlib.asynccontextmanager
    async def _turn(self) -> AsyncIterator[None]:
        """One entry point at a time; what it caused is published as it ends (even by an error: the
        venue did what the reports say)."""
        async with self.lock:
            try:
                yield
            finally:
                await self._flush()

    async def _flush(self) -> None:
        out, self._outbox = self._outbox, []
        if out:
            await self.publish(out)

    def _unpause(self, venue: str, symbol: str) -> set[str]:
        resumed = {key for key in self._paused if key[0] == venue and self.orders[key].order.symbol == symbol}
        self._paused -= resumed
        return {parent for _, parent in resumed}

    async def drive_algos(self) -> None:
        async with self._turn():
            for venue, parent in list(self.algos):
                await self._settle(venue, {parent})

    async def on_venue_report(self, venue: str, report: ExecutionReport) -> None:
        """A report a (live) venue sent on its own."""
        async with self._turn():
            await self._settle(venue, await self._handle(venue, [report]))

    async def catch_up(self, venue: str, reports: list[ExecutionReport]) -> None:
        """Publish what ``venue`` did while exeq was down (its ``reconcile`` reports), numbered and recorded
        as any report. Algos are not driven here: the restore that follows does, once quotes are back."""
        async with self._turn():
            await self._handle(venue, reports)

    def open_orders(self) -> int:
        """Venue orders working (algo parents aside). Walks only what was open when last asked, or new
        since: the probes ask, on the event loop, and ``orders`` holds every order ever seen."""
        orders = self.orders
        self._maybe_open = {key for key in self._maybe_open if not orders[key].ended}
        return sum(1 for key in self._maybe_open if orders[key].order.algo is None)

    def forget_ended(self, ended_before_ms: int, limit: int | None = None) -> int:
        """Drop the records of venue orders that ended before ``ended_before_ms``, here and in their
        adapter, keeping their keys and exec id counters: a repeated order is still a repeat, and a late
        report about one is numbered after the ones published. A child whose algo still works is kept
        until the algo ends (held back with when it ended, not moved: a snapshot keeps that time, as a
        replay of the stream would). At most ``limit`` at a time; returns how many were forgotten."""
        forgotten = 0
        for key, ended_ms in self._ended.take_items(ended_before_ms, limit):
            tracked = self.orders.get(key)
            if tracked is None:
                continue
            algo_key = key if key in self.algos else (key[0], tracked.parent or "")
            if algo_key in self.algos:
                self._held.setdefault(algo_key, []).append((key, ended_ms))  # its algo still works
                continue
            del self.orders[key]
            self._maybe_open.discard(key)
            self._cancels_seen.discard(key)
            if self._top_level.get((key[0], tracked.order.client_order_id)) == key[1]:
                del self._top_level[(key[0], tracked.order.client_order_id)]
            if (adapter := self.adapters.get(key[0])) is not None:
                adapter.forget(key[1])
            self._forgotten.add(key)
            self._forgotten_at.add(key, ended_ms)
            forgotten += 1
        return forgotten

    def drop_forgotten(self, ended_before_ms: int, limit: int | None = None) -> int:
        """Drop the keys and exec id counters of the forgotten venue orders that ended before
        ``ended_before_ms``: past the window in which a repeat of their order can still be stored (see
        ``trader.orders.retention``), nothing of them is held. At most ``limit`` at a time."""
        dropped = 0
        for key in self._forgotten_at.take(ended_before_ms, limit):
            self._forgotten.discard(key)
            self.numbers.pop(key, None)
            dropped += 1
        return dropped

    def forget_replayed(self, retention_s: float, not_after_ms: int) -> int:
        """While the history is replayed, so that the desk holds the retention's window of it, not all of
        it: forget (``forget_ended``) the venue orders that ended ``retention_s`` before the latest report
        replayed (``replayed_ms``), and drop (``drop_forgotten``) the keys of those that ended the ids
        window before that (``trader.orders.retention.ids_cutoff``); never what ended at or after
        ``not_after_ms``, the cutoff of the forgetting that follows the restore. Called every so many
        messages, it ends in the state of a replay that forgets once after the restore: an order it
        forgets had ended and would be forgotten then too (an algo's, held back, comes back in line with
        its algo's end, as it would be), and a later message about it changes nothing that state keeps
        (its record goes, its key and exec id counter stay); a key it drops is of an order that ended
        the ids window before a report already replayed, of which no message comes after (a repeat is
        stored within minutes; a report stamped ahead of exeq's clock by a venue's or a feed's clock,
        by seconds, only narrows that margin). Returns how many orders were forgotten."""
        if not retention_s:
            return 0
        cutoff = min(self.replayed_ms - int(retention_s * 1000), not_after_ms)
        forgotten = self.forget_ended(cutoff)
        ids_before = ids_cutoff(cutoff, retention_s)
        if ids_before is not None:
            self.drop_forgotten(ids_before)
        return forgotten

    @property
    def forgotten_count(self) -> int:
        return len(self._forgotten)

    # Snapshots ----------------------------------------------------------------------------------

    @property
    def snapshottable(self) -> bool:
        """No entry point is under way: ``snapshot`` is what the stream says."""
        return not self.lock.locked()

    def snapshot(self) -> DeskState:
        """The state, as a replay of the stream up to the desk's last output would rebuild it (call it
        when ``snapshottable``, once what the desk published is read back): a restored order's
        ``offset`` is the restore's (it counts from 0 again), the rests waiting for a tick and the
        paused algos are the restore's to make again; the ended orders held back for a working algo are
        among the ended, with when they ended."""
        orders = self.orders
        held = [Counted(v, vcid, ms) for items in self._held.values() for (v, vcid), ms in items]
        return DeskState(
            orders=[
                Held(v, vcid, msgspec.structs.replace(t, offset=Decimal(0)))
                for (v, vcid), t in orders.items()
            ],
            numbers=[Counted(v, vcid, n) for (v, vcid), n in self.numbers.items()],
            ended=[Counted(v, vcid, ms) for (v, vcid), ms in self._ended.items()] + held,
            forgotten=[Counted(v, vcid, ms) for (v, vcid), ms in self._forgotten_at.items()],
            last_fill_ms=[Counted(v, symbol, ms) for (v, symbol), ms in self.last_fill_ms.items()],
            cancels=[key for key in self._cancels_seen if key in orders and not orders[key].ended],
            algos=[HeldAlgo(v, vcid, algo.state()) for (v, vcid), algo in self.algos.items()],
        )

    def restore_snapshot(self, state: DeskState) -> None:
        """Start from a snapshot (``snapshot``), before the stream after it is replayed."""
        self.orders = {}
        self._maybe_open, self._top_level = set(), {}
        for held in state.orders:
            key = (held.venue, held.venue_client_id)
            self.orders[key] = held.tracked
            if not held.tracked.ended:
                self._maybe_open.add(key)
            if held.tracked.parent is None:
                self._top_level.setdefault((held.venue, held.tracked.order.client_order_id), key[1])
        self.numbers = {(c.venue, c.id): c.n for c in state.numbers}
        self._ended = Ended(((c.venue, c.id), c.n) for c in state.ended)
        self._forgotten_at = Ended(((c.venue, c.id), c.n) for c in state.forgotten)
        self._forgotten = {(c.venue, c.id) for c in state.forgotten}
        self.last_fill_ms = {(c.venue, c.id): c.n for c in state.last_fill_ms}
        self._cancels_seen = {(venue, vcid) for venue, vcid in state.cancels}
        self.algos = {(held.venue, held.venue_client_id): restore_algo(held.state) for held in state.algos}
        self._held = {}

    def believed_open(self, venue: str) -> list[tuple[VenueOrder, Decimal]]:
        """The orders exeq believes working at ``venue`` (algo parents never reach it), with their fills."""
        return [
            (t.order, t.filled)
            for (v, _), t in self.orders.items()
            if v == venue and not t.ended and t.order.algo is None
        ]

    def unanswered(self, venue: str) -> set[str]:
        """The venue client ids of orders believed open at ``venue`` that no report was published about."""
        return {
            o.venue_client_id
            for o, _ in self.believed_open(venue)
            if not self.numbers.get((venue, o.venue_client_id))
        }

    # Orders ------------------------------------------------------------------------------------

    async def _new(self, order: VenueOrder) -> None:
        venue, key = order.venue, (order.venue, order.venue_client_id)
        if key in self.orders or key in self._forgotten:
            return  # a repeat: the venue order exists already (or ended long ago)
        tracked = self._track(order)
        if venue not in self.adapters:
            await self._handle(venue, [self._own_report(tracked, "rejected", f"venue {venue} is not run")])
            return
        if order.algo is None:
            await self._settle(venue, await self._handle(venue, await self.adapters[venue].submit(order)))
            return
        try:
            self.algos[key] = create_algo(order)
        except AlgoParamsError as exc:
            await self._handle(venue, [self._own_report(tracked, "rejected", str(exc))])
            return
        await self._handle(venue, [self._own_report(tracked, "accepted")])
        await self._settle(venue, {order.venue_client_id})

    async def _cancel(self, order: VenueOrder) -> None:
        venue = order.venue
        key = self._resolve(order)
        if key in self.orders:
            self._cancels_seen.add(key)  # as a replay of the stream would have it (``snapshot``)
        target = msgspec.structs.replace(order, venue_client_id=key[1])
        algo = self.algos.get(key)
        if algo is not None:
            touched = await self._send_children(venue, key[1], algo.cancel(self.clock()))
            await self._settle(venue, touched | {key[1]})
            return
        tracked = self.orders.get(key)
        if tracked is not None and tracked.order.algo is not None:
            reason = f"cancel rejected: order {key[1]} has ended"
            await self._handle(venue, [self._own_report(tracked, "rejected", reason)])
            return
        if venue not in self.adapters:
            await self._handle(
                venue, [_report_for(target, "rejected", self.clock(), f"venue {venue} is not run")]
            )
            return
        await self._settle(venue, await self._handle(venue, await self._cancel_at_venue(venue, target)))

    async def _cancel_at_venue(self, venue: str, order: VenueOrder) -> list[ExecutionReport]:
        """A restored market order still waiting for its first tick is canceled here: the venue never
        had it."""
        waiting = self._deferred.get((venue, order.symbol), [])
        for rest in waiting:
            if rest.venue_client_id == order.venue_client_id:
                waiting.remove(rest)
                return [_report_for(rest, "canceled", self.clock(), "canceled on request")]
        return await self.adapters[venue].cancel(order)

    async def _replace(self, order: VenueOrder) -> None:
        venue = order.venue
        key = self._resolve(order)
        target = msgspec.structs.replace(order, venue_client_id=key[1])
        tracked = self.orders.get(key)
        reason: str | None = None
        if key in self.algos or (tracked is not None and tracked.order.algo is not None):
            algo = tracked.order.algo if tracked is not None else "algo"
            reason = f"replace rejected: order {key[1]} is an {algo} parent; algo orders cannot be replaced"
        elif venue not in self.adapters:
            reason = f"replace rejected: venue {venue} is not run"
        elif tracked is not None and tracked.ended:
            reason = f"replace rejected: order {key[1]} has ended"
        elif tracked is not None and order.quantity <= tracked.filled:
            reason = f"replace rejected: quantity {order.quantity} is not above filled {tracked.filled}"
        if reason is not None:
            await self._handle(venue, [_report_for(target, "rejected", self.clock(), reason)])
            return
        offset = Decimal(0)
        if tracked is not None:
            tracked.replace = target
            offset = tracked.offset
        reports = await self._replace_at_venue(venue, target, offset)
        if offset:  # the adapter's quantities count from the restart: the oms's count from the start
            reports = [
                msgspec.structs.replace(r, last_quantity=r.last_quantity + offset)
                if r.kind == "replaced" and r.last_quantity
                else r
                for r in reports
            ]
        await self._settle(venue, await self._handle(venue, reports))

    async def _replace_at_venue(
        self, venue: str, order: VenueOrder, offset: Decimal
    ) -> list[ExecutionReport]:
        """A restored market order still waiting for its first tick is replaced here: the venue never
        had it."""
        waiting = self._deferred.get((venue, order.symbol), [])
        for i, rest in enumerate(waiting):
            if rest.venue_client_id == order.venue_client_id:
                waiting[i] = msgspec.structs.replace(
                    rest, quantity=order.quantity - offset, price=order.price
                )
                report = _report_for(rest, "replaced", self.clock())
                return [
                    msgspec.structs.replace(report, last_quantity=waiting[i].quantity, last_price=order.price)
                ]
        return await self.adapters[venue].replace(
            msgspec.structs.replace(order, quantity=order.quantity - offset)
        )

    def _resolve(self, order: VenueOrder) -> Key:
        """The venue order a cancel is about: its ``venue_client_id``, else the order of its client id."""
        key = (order.venue, order.venue_client_id)
        if key in self.orders:
            return key
        vcid = self._top_level.get((order.venue, order.client_order_id))
        return (order.venue, vcid) if vcid is not None else key

    def _track(self, order: VenueOrder, parent: str | None = None) -> Tracked:
        tracked = Tracked(order, parent=parent)
        self.orders[(order.venue, order.venue_client_id)] = tracked
        self._maybe_open.add((order.venue, order.venue_client_id))
        if parent is None:
            self._top_level.setdefault((order.venue, order.client_order_id), order.venue_client_id)
        return tracked

    # Reports ------------------------------------------------------------------------------------

    async def _handle(self, venue: str, reports: list[ExecutionReport]) -> set[str]:
        """Number and record reports, for the entry point to publish; returns the parents (venue_client_id)
        they concern."""
        touched: set[str] = set()
        for report in reports:
            vcid = report.venue_client_id or report.client_order_id
            tracked = self.orders.get((venue, vcid))
            if report.kind == "accepted" and tracked is not None and tracked.acknowledged:
                continue  # the venue acknowledged a restored order again
            number = self.numbers.get((venue, vcid), 0) + 1
            self.numbers[(venue, vcid)] = number
            changes: dict[str, object] = {"exec_id": f"{venue}:{vcid}:{number}", "venue_client_id": vcid}
            if not report.timestamp:  # stamped here, so a replay sees when it was (an order's end)
                changes["timestamp"] = self.clock()
            if tracked is not None and tracked.venue_order_id:
                changes["venue_order_id"] = tracked.venue_order_id  # the id of before a restore
            report = msgspec.structs.replace(report, **changes)
            subject = exec_report_subject(venue)
            if tracked is not None:
                tracked.apply(report)
                if tracked.ended:
                    self._ended.add((venue, vcid), report.timestamp)
                if tracked.parent is not None:
                    touched.add(tracked.parent)
                    if report.kind != "fill":
                        subject = exec_algo_report_subject(venue)
                    algo = self.algos.get((venue, tracked.parent))
                    if algo is not None:
                        algo.on_report(report)
            if report.kind == "fill":
                key = (venue, report.symbol)
                self.last_fill_ms[key] = max(self.last_fill_ms.get(key, 0), report.timestamp)
            self._outbox.append(Outgoing(subject, encode(report), msg_id=report.exec_id))
        return touched

    def _own_report(self, tracked: Tracked, kind: ReportKind, reason: str | None = None) -> ExecutionReport:
        return _report_for(tracked.order, kind, self.clock(), reason)

    # Algos ---------------------------------------------------------------------------------------

    async def _send_children(self, venue: str, parent: str, children: list[VenueOrder]) -> set[str]:
        """Publish the child orders, then send them to the venue: the stream has each child before its
        reports, which the rebuild relies on."""
        if not children:
            return set()
        self._outbox += [
            Outgoing(exec_algo_order_subject(venue), encode(c), msg_id=f"{c.venue_client_id}:{c.action}")
            for c in children
        ]
        await self._flush()
        adapter = self.adapters[venue]
        touched: set[str] = set()
        for child in children:
            if child.action == "new":
                self._track(child, parent=parent)
                touched |= await self._handle(venue, await adapter.submit(child))
            else:
                touched |= await self._handle(venue, await self._cancel_at_venue(venue, child))
        return touched

    async def _settle(self, venue: str, parents: set[str]) -> None:
        """Drive the algos of ``parents`` until they have nothing more to release now; report the ends."""
        pending = set(parents)
        while pending:
            parent = pending.pop()
            algo = self.algos.get((venue, parent))
            if algo is None:
                continue
            children = [] if (venue, parent) in self._paused else algo.next_actions(self.clock())
            if children:
                pending |= await self._send_children(venue, parent, children) | {parent}
            else:
                await self._finish_if_done(venue, parent, algo)

    async def _finish_if_done(self, venue: str, parent: str, algo: ExecutionAlgo) -> None:
        if not algo.is_done:
            return
        tracked = self.orders[(venue, parent)]
        self._end_algo((venue, parent))
        if tracked.ended or algo.leaves_quantity == 0:
            # The children's fills filled the parent (the oms saw them): it ended with the last report
            # the algo had, which a replay of the stream sees too.
            tracked.ended = True
            self._ended.add((venue, parent), algo.last_report_ms or self.clock())
            return
        if algo.canceled:
            report = self._own_report(tracked, "canceled", "canceled on request")
        else:
            why = getattr(algo, "stopped_reason", None) or "the children ended short"
            report = self._own_report(tracked, "expired", f"{why}: {algo.leaves_quantity} unfilled")
        await self._handle(venue, [report])

    def _end_algo(self, key: Key) -> None:
        """The algo of ``key`` gone: its ended orders held back from forgetting back in line."""
        del self.algos[key]
        self._paused.discard(key)
        for held, ended_ms in self._held.pop(key, []):
            self._ended.keep(held, ended_ms)

    # Rebuild ----------------------------------------------------------------------------------

    def replay(self, subject: str, data: bytes) -> None:
        """Take one stored EXEC message back (in stream order), publishing nothing."""
        if subject.startswith(("exec.report.", "exec.algo.report.")):
            self._replay_report(_report.decode(data))
        elif subject.startswith("exec.order."):
            self._replay_order(_venue_order.decode(data))
        elif subject.startswith("exec.algo.order."):
            self._replay_child(_venue_order.decode(data))

    def _replay_order(self, order: VenueOrder) -> None:
        key = (order.venue, order.venue_client_id)
        if order.action == "replace":
            tracked = self.orders.get(self._resolve(order))
            if tracked is not None:  # its answer, replaced or rejected, follows in the stream
                tracked.replace = msgspec.structs.replace(
                    order, venue_client_id=tracked.order.venue_client_id
                )
            return
        if order.action == "cancel":
            key = self._resolve(order)
            if key in self.orders:  # one for an order not seen yet was refused: "unknown order"
                self._cancels_seen.add(key)
            algo = self.algos.get(key)
            if algo is not None:
                algo.cancel(order.timestamp)  # the children's cancels are in the stream
            return
        if key in self.orders or key in self._forgotten:  # a repeat, as the live path judges it
            return
        self._track(order)
        if order.algo is not None:
            with contextlib.suppress(AlgoParamsError):  # its rejection is in the stream
                self.algos[key] = create_algo(order)

    def _replay_child(self, child: VenueOrder) -> None:
        if child.action != "new":
            return
        parent = child.venue_client_id.rpartition(".")[0]
        algo = self.algos.get((child.venue, parent))
        if algo is not None and child.venue_client_id not in algo.children:
            algo.next_actions(child.timestamp)  # releases this child again, at the time it was released
        self._track(child, parent=parent)

    def _replay_report(self, report: ExecutionReport) -> None:
        venue, vcid = report.venue, report.venue_client_id or report.client_order_id
        prefix = f"{venue}:{vcid}:"
        if not report.exec_id.startswith(prefix):
            return  # not published by exeq: a routing rejection
        with contextlib.suppress(ValueError):
            number = int(report.exec_id.removeprefix(prefix))
            self.numbers[(venue, vcid)] = max(self.numbers.get((venue, vcid), 0), number)
        if report.timestamp > self.replayed_ms:
            self.replayed_ms = report.timestamp
        if report.kind == "fill":
            key = (venue, report.symbol)
            self.last_fill_ms[key] = max(self.last_fill_ms.get(key, 0), report.timestamp)
        tracked = self.orders.get((venue, vcid))
        if tracked is None:
            return
        tracked.apply(report)
        if tracked.ended:
            self._ended.add((venue, vcid), report.timestamp)
        if tracked.parent is not None and (algo := self.algos.get((venue, tracked.parent))) is not None:
            algo.on_report(report)

    async def restore(self) -> dict[str, int]:
        """After the replay: the open venue orders back into the adapters, and what was left undone."""
        async with self._turn():
            for key in [k for k, t in self.orders.items() if k in self.algos and t.ended]:
                self._end_algo(key)
            restored = deferred = 0
            touched: dict[str, set[str]] = {venue: set() for venue in self.adapters}
            for (venue, _), tracked in self.orders.items():
                if tracked.ended or tracked.order.algo is not None or venue not in self.adapters:
                    continue
                rest = msgspec.structs.replace(tracked.order, quantity=tracked.remaining)
                tracked.offset = tracked.filled  # the adapter knows the rest only
                if rest.type == "market":  # needs a quote: restored at its symbol's first tick
                    self._deferred.setdefault((venue, rest.symbol), []).append(rest)
                    deferred += 1
                    continue
                touched[venue] |= await self._handle(venue, await self.adapters[venue].submit(rest))
                restored += 1
            pending = [t.replace for t in self.orders.values() if t.replace is not None and not t.ended]
            for replace in pending:  # sent before the restart, never answered
                await self._replace(replace)
            for key in self._cancels_seen:
                canceled = self.orders.get(key)
                if canceled is not None and not canceled.ended and key not in self.algos:
                    await self._cancel(msgspec.structs.replace(canceled.order, action="cancel"))
            # An algo releases nothing before its symbol has a quote again: its market children would
            # be refused.
            self._paused = set(self.algos)
            for venue, parent in list(self.algos):
                algo = self.algos[(venue, parent)]
                if algo.canceled and algo.working_children:
                    touched[venue] |= await self._send_children(venue, parent, algo.cancel(self.clock()))
                touched.setdefault(venue, set()).add(parent)
            for venue, parents in touched.items():
                await self._settle(venue, parents)
            # The cancels stay (a replay would see them again): a snapshot keeps those of open orders.
            return {"restored": restored, "deferred": deferred, "algos": len(self.algos)}


def _report_for(order: VenueOrder, kind: ReportKind, now: int, reason: str | None = None) -> ExecutionReport:
    """A report exeq makes itself (about an algo parent, or an order it cannot send); numbered later."""
    return report_about(order, venue=order.venue, kind=kind, exec_id="", timestamp=now, reason=reason)
