"""exeq: execution algorithms and venue adapters.

Consumes: ``exec.order.>`` (stream EXEC), VenueOrders from the router or the oms (new, cancel or
replace); ``market.tick.>`` (MARKET_TICKS, ``market.tick.<venue>.<SYMBOL>``, the latest per subject then
live), shown to every adapter so that resting orders fill as the market moves. Runs one ``VenueAdapter``
per ``settings.exeq.venues`` entry (kind ``paper``: ``PaperVenue(settings.exeq.paper, name=...)``, filling
only against the ticks of its quote venue, ``exeq.paper.quote_venue`` or else the mock feed's
``gateway.venue``: never a live feed's and the mock one's mixed; kind ``ccxt``: a live exchange,
``CcxtVenue``, from the venue's own config).
Produces: every ExecutionReport on ``exec.report.<venue>``, ``Nats-Msg-Id`` = ``exec_id``; algo child
orders and their reports on ``exec.algo.order.<venue>`` and ``exec.algo.report.<venue>``; undecodable
orders and ticks on the dead letters.

Inputs (``trader.runtime.intake``): ``exec.>`` of EXEC in mode HISTORY (what exeq published and the
orders it was sent rebuild the desk; after them, the orders live); ``market.tick.>`` in mode LATEST,
read once the desk is restored; at start, for a live venue's balance check, its fills since the
baseline (``exec.report.<venue>``, mode ONCE: read once, up to the stream's last sequence). Engine:
``trader.execution.desk.ExecutionDesk`` (its docstring has the rules of the rebuild, the restore,
algos, replaces and exec ids).
State: the venue orders, their fills and report counts, and the algos. Snapshotted (key ``exeq``,
``trader.execution.desk.DeskState``, with the EXEC sequence it covers) every
``SNAPSHOT_EVERY_MESSAGES`` messages or ``SNAPSHOT_EVERY_S`` seconds and at a graceful stop, when the
desk is settled: no turn under way, every report it published read back (the highest sequence its
publishes were stored at, ``Published``, is within what the intake applied); an algo working too: its
state (children, aggregate, clock) is in the snapshot, as a replay of its history would make it again.
At start the snapshot is restored (none, corrupt or of another schema version: nothing) and the EXEC
messages after it are replayed, as the whole stream was before; every ``FORGET_BATCH`` messages the
venue orders that ended a retention (``exeq.closed_order_retention_s``) before the latest report
replayed leave the desk (``ExecutionDesk.forget_replayed``), so a full replay holds the retention's
window of the history, not all of it.

Start: after the replay and before the restore, each adapter's ``reconcile`` compares the venue with the
orders exeq believes open there: the reports of what the venue did meanwhile (fills, an order's end)
are published as any report (numbered on from the replay, so once); every mismatch left is logged at
warning and counted (``reconcile.mismatch``), and changes nothing. Each venue's balances are then
logged, set on the ``trader_venue_balance`` gauge and, for a live venue, reconciled with the baseline
recorded at the previous start plus the fills published since (``trader.execution.balances``): a
difference is a mismatch too, and the balances the new baseline. Then the desk restores the open orders
into the adapters (``ExecutionDesk.restore``), and the ticks are read.
"""

from __future__ import annotations

import asyncio
import contextlib
import functools
from collections.abc import Callable
from dataclasses import dataclass
from decimal import Decimal

import msgspec
from nats.js.errors import NotFoundError
from nats.js.kv import KeyValue
from prometheus_client import Gauge

from trader.bus.publish import Outgoing
from trader.bus.read import Stored, decode_message
from trader.bus.streams import exec_report_subject
from trader.bus.trading_switch import state_bucket
from trader.config import CcxtVenueSettings, Settings
from trader.execution.balances import BalanceBaseline, BalanceBook, baseline_key, check_balances
from trader.execution.desk import DeskState, ExecutionDesk
from trader.execution.venues import PaperVenue, VenueAdapter, venue_class
from trader.marketdata.decode import InvalidMessage, decode_tick
from trader.messages import ExecutionReport, MarketTick, VenueOrder, encode
from trader.orders.retention import FORGET_BATCH, Forgetting, ids_cutoff
from trader.runtime.consumer import now_ms
from trader.runtime.intake import Input, Intake, Mode, Received, read_once
from trader.runtime.service import Refused, Runtime, Service
from trader.runtime.snapshots import Snapshotting

EXEC_INPUT = Input("EXEC", "exec.>", bytes, Mode.HISTORY, decode=bytes)
TICKS_INPUT = Input(
    "MARKET_TICKS", "market.tick.>", MarketTick, Mode.LATEST, name="ticks", decode=decode_tick
)
REBUILT_FROM = ("exec.order.", "exec.algo.", "exec.report.")  # exec.route.> is the router's

# Of DeskState: a snapshot of another version is not read (a full replay instead). 2: the algos working.
STATE_VERSION = 2
SNAPSHOT_EVERY_MESSAGES = 10_000
SNAPSHOT_EVERY_S = 60.0

_venue_order = msgspec.json.Decoder(VenueOrder)


class Published:
    """The desk's way out: the runtime's reliable publish, noting the highest EXEC sequence stored, so
    a snapshot waits until the intake has read that far (the desk is then not ahead of the stream)."""

    def __init__(self, rt: Runtime) -> None:
        self.rt = rt
        self.last_seq = 0

    async def publish(self, items: list[Outgoing]) -> None:
        result = await self.rt.publish_reliably(items)
        self.last_seq = max(self.last_seq, result.last_seq)


def _order_of(stored: Stored) -> VenueOrder:
    order = decode_message(_venue_order, stored.data)
    if not order.venue:  # the subject names the venue the router chose
        order = msgspec.structs.replace(order, venue=stored.subject.rpartition(".")[2])
    return order


_balance_baseline = msgspec.json.Decoder(BalanceBaseline)


class JetStreamBalanceBook:
    """Baselines in the ``TRADER_STATE`` bucket; fills from ``exec.report.<venue>`` in the EXEC stream,
    read through the intake (mode ONCE)."""

    def __init__(self, rt: Runtime, kv: KeyValue, *, timeout_s: float = 60.0) -> None:
        self.rt, self.js, self.kv, self.timeout_s = rt, rt.js, kv, timeout_s

    async def baseline(self, venue: str) -> BalanceBaseline | None:
        try:
            entry = await self.kv.get(baseline_key(venue))
        except NotFoundError:
            return None
        return _balance_baseline.decode(entry.value) if entry.value else None

    async def record(self, baseline: BalanceBaseline) -> None:
        await self.kv.put(baseline_key(baseline.venue), encode(baseline))

    async def last_seq(self) -> int:
        return int((await self.js.stream_info("EXEC")).state.last_seq)

    async def fills_after(self, venue: str, seq: int, upto: int) -> list[ExecutionReport]:
        """Read once, in bulk, from the stream: the venue's reports after ``seq`` up to ``upto``, the
        fills among them. An undecodable report raises (``InvalidMessage``, with its sequence): the sum
        would be wrong, so no sum."""
        source = Input("EXEC", exec_report_subject(venue), ExecutionReport, Mode.ONCE, name="balance-fills")
        found = await read_once(self.rt, source, after=seq, upto=upto, timeout_s=self.timeout_s)
        if found.refused:
            bad = found.refused[0]
            raise InvalidMessage(bad.field, f"report at EXEC sequence {bad.seq}: {bad.reason}")
        return [item.value for item in found.received if item.value.kind == "fill"]


@dataclass
class ExeqState:
    """A started exeq: its engine, its inputs, and the venues' own reports waiting for the desk."""

    desk: ExecutionDesk
    orders: Intake[bytes]
    ticks: Intake[MarketTick]
    forgetting: Forgetting
    venue_reports: asyncio.Queue[ExecutionReport]
    ticks_before: int  # the last tick stored before this start: the previous run may have used it
    last_tick_seq: int = 0  # the last tick the venues have seen (health: how far market data got)


class Exeq(Service):
    name = "exeq"
    state: ExeqState | None = None
    balance_book: BalanceBook | None = None  # JetStream's, made at the first reconcile; tests set one
    balance_mismatches: list[dict[str, str]]  # found at this start: in /health until the next
    _balance_gauge: Gauge | None = None  # made once: a start retried after a failure reuses it

    def __init__(self, settings: Settings) -> None:
        super().__init__(settings)
        self.balance_mismatches = []

    async def start(self, rt: Runtime) -> None:
        venue_reports: asyncio.Queue[ExecutionReport] = asyncio.Queue()
        adapters: dict[str, VenueAdapter] = {}
        try:
            for name, cfg in self.settings.exeq.venues.items():
                adapters[name] = self._adapter(name, cfg.kind, venue_reports.put_nowait)
                await adapters[name].start()
            published = Published(rt)
            desk = ExecutionDesk(adapters, published.publish, now_ms)
            retention_s = self.settings.exeq.closed_order_retention_s
            forgetting = Forgetting(
                retention_s,
                functools.partial(_forget, desk, retention_s),
                lambda: len(desk.orders),
                rt.log,
                "exeq.forgot_ended",
            )
            # The replay forgets as it goes, never past what the forgetting after the restore will.
            until = forgetting.cutoff_ms()
            forget: Callable[[], object] | None = (
                None if until is None else functools.partial(desk.forget_replayed, retention_s, until)
            )
            snapshots = Snapshotting(
                key=self.name,
                state_type=DeskState,
                version=STATE_VERSION,
                take=desk.snapshot,
                restore=desk.restore_snapshot,
                every_messages=SNAPSHOT_EVERY_MESSAGES,
                every_s=SNAPSHOT_EVERY_S,
                # What the desk knows is what the stream holds up to the intake's sequence: nothing it
                # published is ahead of what was read back, no turn under way.
                settled=lambda: desk.snapshottable and published.last_seq <= orders.covered_seq,
            )
            orders = Intake(
                rt,
                EXEC_INPUT,
                functools.partial(_rebuild, desk, rt, forget),
                live=functools.partial(self._take_orders, rt, desk),
                on_caught_up=functools.partial(self._restore, rt, desk, forgetting),
                snapshots=snapshots,
            )
            ticks = Intake(rt, TICKS_INPUT, _no_handler, live=self._take_ticks)
            ticks_before = (await rt.js.stream_info("MARKET_TICKS")).state.last_seq
            await orders.start()
        except BaseException:
            await _close(adapters)  # a start retried after a failure begins afresh
            raise
        self.state = ExeqState(desk, orders, ticks, forgetting, venue_reports, ticks_before)

    def _adapter(self, name: str, kind: str, listener: Callable[[ExecutionReport], None]) -> VenueAdapter:
        if kind == "paper":
            # Its quotes are one feed's: the configured quote venue, else the mock feed's (None is any).
            quotes = {"quote_venue": self.settings.quote_venue_of(name)}
            paper = self.settings.exeq.paper.model_copy(update=quotes)
            return PaperVenue(paper, name=name, report_listener=listener)
        if kind == "ccxt":
            from trader.execution.venues.ccxt_live import CcxtVenue  # imports ccxt: slow

            # A VenueConfig is the adapter's settings with exeq's own fields (kind, fee) on top.
            cfg = self.settings.exeq.venues[name]
            settings = CcxtVenueSettings(**cfg.model_dump(include=set(CcxtVenueSettings.model_fields)))
            return CcxtVenue(settings, name=name, report_listener=listener)
        return venue_class(kind)(name=name, report_listener=listener)

    async def _restore(self, rt: Runtime, desk: ExecutionDesk, forgetting: Forgetting) -> list[Outgoing]:
        """Once the replay is done: the venues reconciled, then the open orders back into them."""
        rt.log.info(
            "exeq.replayed", orders=len(desk.orders), algos=len(desk.algos), forgotten=desk.forgotten_count
        )
        # A venue that does not answer is waited for: exeq is not ready until it has reconciled.
        await rt.retry("exeq.reconcile", functools.partial(self._reconcile, rt, desk))
        outcome = await desk.restore()
        forgetting()
        rt.log.info(
            "exeq.restored", **outcome, open_orders=desk.open_orders(), forgotten=desk.forgotten_count
        )
        return []  # the desk published what the restore caused

    async def _take_orders(
        self, rt: Runtime, desk: ExecutionDesk, batch: list[Received[bytes]]
    ) -> list[Outgoing]:
        """The batch's orders in one turn of the desk, which publishes their reports together."""
        orders: list[VenueOrder] = []
        refused: list[Refused] = []
        for received in batch:
            if not received.subject.startswith("exec.order."):
                continue  # what exeq published, and the router's input: seen when rebuilding
            try:
                orders.append(_order_of(received.stored))
            except InvalidMessage as exc:
                refused.append(received.stored.refused(exc))
        await rt.dead_letter("EXEC", refused)
        if orders:
            await desk.on_orders(orders)
        return []

    async def _take_ticks(self, batch: list[Received[MarketTick]]) -> list[Outgoing]:
        state = self.state
        assert state is not None, "ticks are read once started and restored"
        for received in batch:
            await state.desk.on_tick(received.value, seen_before=received.seq <= state.ticks_before)
            state.last_tick_seq = received.seq
        return []  # the desk published what the ticks caused

    async def _reconcile(self, rt: Runtime, desk: ExecutionDesk) -> None:
        """Before the restore: each venue against the orders exeq believes open there. What the venue did
        meanwhile is published; every mismatch left is logged and counted, and changes nothing that exeq
        believes (an operator decides). Then the venue's balances are logged, set as gauges and
        reconciled (``_reconcile_balances``)."""
        self.balance_mismatches.clear()  # this start's findings only
        if self._balance_gauge is None:
            labels = ["service", "venue", "asset"]
            self._balance_gauge = Gauge(
                "trader_venue_balance", "Balance per asset", labels, registry=rt.metrics.registry
            )
        for venue, adapter in desk.adapters.items():
            found = await adapter.reconcile(desk.believed_open(venue), desk.unanswered(venue))
            for mismatch in found.mismatches:
                rt.metrics.count_error("reconcile.mismatch")
                rt.log.warning("exeq.reconcile_mismatch", **vars(mismatch))
            if found.reports:
                rt.log.info("exeq.caught_up", venue=venue, reports=len(found.reports))
                await desk.catch_up(venue, found.reports)
            balances = await adapter.balances()
            rt.log.info("exeq.venue_balances", venue=venue, balances={a: str(v) for a, v in balances.items()})
            for asset, amount in balances.items():  # a gauge is a float: the log has the exact amounts
                self._balance_gauge.labels(rt.name, venue, asset).set(float(amount))
            await self._reconcile_balances(rt, venue, adapter, balances)

    async def _reconcile_balances(
        self, rt: Runtime, venue: str, adapter: VenueAdapter, balances: dict[str, Decimal]
    ) -> None:
        """``balances`` (just fetched, after the catch-up) against the previous baseline moved by the fills
        published since; then they are the new baseline. A failure here is logged and counted and does not
        stop exeq: the old baseline stays, and the next start checks the longer span."""
        if not adapter.reconciles_balances:  # paper: balances in memory, starting over at every start
            rt.log.info("exeq.balances_not_reconciled", venue=venue, kind=adapter.kind)
            return
        try:
            book = await self._balance_book(rt)
            upto = await book.last_seq()  # nothing else publishes this venue's reports during the start
            baseline = await book.baseline(venue)
            if baseline is not None and baseline.seq > upto:  # EXEC was recreated: its seqs mean nothing
                rt.log.warning("exeq.balance_baseline_ahead", venue=venue, seq=baseline.seq, last_seq=upto)
                baseline = None
            if baseline is None:
                rt.log.info("exeq.balances_first_baseline", venue=venue, seq=upto, compared=False)
            else:
                fills = await book.fills_after(venue, baseline.seq, upto)
                self._report_balances(rt, baseline, fills, balances, adapter)
            await book.record(BalanceBaseline(venue=venue, balances=balances, seq=upto, timestamp=now_ms()))
        except Exception as exc:
            rt.metrics.count_error("reconcile.balances_failed")
            rt.log.exception("exeq.balance_reconcile_failed", venue=venue, error=repr(exc))

    def _report_balances(
        self,
        rt: Runtime,
        baseline: BalanceBaseline,
        fills: list[ExecutionReport],
        balances: dict[str, Decimal],
        adapter: VenueAdapter,
    ) -> None:
        """Log and count each mismatch (exact figures) and keep it for /health; change nothing."""
        found = check_balances(baseline, fills, balances, adapter.assets, adapter.balance_tolerance)
        since = {"since_seq": baseline.seq, "fills": len(fills)}
        if found.uncounted:
            rt.log.warning("exeq.balance_fills_uncounted", venue=baseline.venue, exec_ids=found.uncounted)
        for mismatch in found.mismatches:
            rt.metrics.count_error("reconcile.mismatch")
            rt.log.warning("exeq.balance_mismatch", **mismatch.as_strings(), **since)
            self.balance_mismatches.append(mismatch.as_strings())
        if not found.mismatches:
            rt.log.info("exeq.balances_reconciled", venue=baseline.venue, assets=len(balances), **since)

    async def _balance_book(self, rt: Runtime) -> BalanceBook:
        if self.balance_book is None:
            self.balance_book = JetStreamBalanceBook(rt, await state_bucket(rt.js))
        return self.balance_book

    async def run(self, rt: Runtime) -> None:
        state = self.state
        assert state is not None, "run follows a successful start"
        orders = asyncio.create_task(state.orders.run())
        tasks: list[asyncio.Task[None]] = []
        try:
            while not state.orders.caught_up and not rt.stopping.is_set() and not orders.done():
                await asyncio.sleep(0.02)  # no tick, algo or venue report before the restore
            if state.orders.caught_up:
                await state.ticks.start()
                tasks = [
                    asyncio.create_task(state.ticks.run()),
                    asyncio.create_task(self._drive_algos(rt, state)),
                    asyncio.create_task(_forward_venue_reports(state)),
                ]
            await orders
        finally:
            for task in tasks:
                task.cancel()
            await asyncio.gather(*tasks, return_exceptions=True)

    async def _drive_algos(self, rt: Runtime, state: ExeqState) -> None:
        interval = self.settings.exeq.algo_interval_s
        while not rt.stopping.is_set():
            await asyncio.sleep(interval)
            try:
                await state.desk.drive_algos()
            except Exception as exc:  # one bad algo must not stop the clock of the others
                rt.metrics.count_error("algo")
                rt.log.exception("exeq.algo_failed", error=repr(exc))
            async with state.desk.lock:  # on the algos' clock: venue orders ended long ago leave memory
                state.forgetting(FORGET_BATCH)

    async def stop(self, rt: Runtime) -> None:
        if self.state is None:
            return
        await self.state.orders.stop()
        await self.state.ticks.stop()
        await _close(self.state.desk.adapters)

    def ready_checks(self) -> dict[str, bool]:
        if self.state is None:
            return {"exeq": False}
        return self.state.orders.ready_checks() | self.state.ticks.ready_checks()

    def health_details(self) -> dict[str, object]:
        found: dict[str, object] = {"balance_mismatches": list(self.balance_mismatches)}
        if self.state is None:
            return found
        desk = self.state.desk
        return found | {
            "open_orders": desk.open_orders(),
            "forgotten_orders": desk.forgotten_count,
            "algos": len(desk.algos),
            "last_tick_seq": self.state.last_tick_seq,
            "intake": self.state.orders.health_details(),
        }


def _rebuild(
    desk: ExecutionDesk, rt: Runtime, forget: Callable[[], object] | None, received: Received[bytes]
) -> list[Outgoing]:
    """A message stored before this start, back into the desk (publishing nothing); every
    ``FORGET_BATCH`` of the stream's sequences, ``forget`` (``ExecutionDesk.forget_replayed``): the
    desk holds the retention's window of the history as it replays it, not the whole history."""
    if forget is not None and received.seq % FORGET_BATCH == 0:
        forget()
    if not received.subject.startswith(REBUILT_FROM):
        return []
    try:
        desk.replay(received.subject, received.data)
    except (msgspec.DecodeError, msgspec.ValidationError) as exc:
        rt.log.warning("exeq.replay_skipped", seq=received.seq, subject=received.subject, error=str(exc))
    return []


def _forget(desk: ExecutionDesk, retention_s: float, cutoff_ms: int, limit: int | None) -> int:
    """Venue orders ended before ``cutoff_ms`` leave the desk (their keys stay), and the keys of those
    that ended a retention before them go too."""
    forgotten = desk.forget_ended(cutoff_ms, limit)
    ids_before = ids_cutoff(cutoff_ms, retention_s)
    if ids_before is not None:
        desk.drop_forgotten(ids_before, limit)
    return forgotten


def _no_handler(received: Received[MarketTick]) -> list[Outgoing]:
    raise AssertionError("ticks go to the desk in batches (live)")


async def _forward_venue_reports(state: ExeqState) -> None:
    while True:
        report = await state.venue_reports.get()
        await state.desk.on_venue_report(report.venue, report)


async def _close(adapters: dict[str, VenueAdapter]) -> None:
    for adapter in adapters.values():
        with contextlib.suppress(Exception):
            await adapter.close()


SERVICE = Exeq
