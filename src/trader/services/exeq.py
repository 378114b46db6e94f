"""exeq: execution algorithms and venue adapters.

Consumes: ``exec.order.>`` (stream EXEC), VenueOrders from the router (new, cancel or replace);
``market.tick.>`` (MARKET_TICKS, ``market.tick.<venue>.<SYMBOL>``, the latest per subject then live),
shown to every adapter so that resting orders fill as the market moves. Runs one ``VenueAdapter`` per
``settings.exeq.venues`` entry (kind ``paper``: ``PaperVenue(settings.exeq.paper, name=...)``, filling
only against the ticks of its quote venue, ``exeq.paper.quote_venue`` or else the mock feed's
``gateway.venue``: never a live feed's and the mock one's mixed; kind ``ccxt``: a live exchange,
``CcxtVenue``, from the venue's own config). After the replay and before the restore, each adapter's
``reconcile`` compares the venue with the orders exeq believes open there: the reports of what the venue
did meanwhile (fills, an order's end) are published as any report (numbered on from the replay, so once);
every mismatch left is logged at warning and counted (``reconcile.mismatch``), and changes nothing. Each
venue's balances are then logged, set on the ``trader_venue_balance`` gauge and, for a live venue,
reconciled with the baseline recorded at the previous start plus the fills published since
(``trader.execution.balances``): a difference is a mismatch too, and the balances the new baseline.
Produces: every ExecutionReport on ``exec.report.<venue>``, ``Nats-Msg-Id`` = ``exec_id``; undecodable
orders and ticks on the dead letters.

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

Restart: on start exeq replays ``exec.order.>``, ``exec.algo.>`` and ``exec.report.>`` from the EXEC
stream (kept for ever). Every venue order comes back with its fills, its report count and whether it
ended; every algo is rebuilt by feeding it the same calls in the same order (``next_actions`` at each
recorded child's release time, ``on_report`` with each report), so its children, schedule and aggregate
are exactly those of before. Then the simpler rule for the paper venue, whose book lived in memory:

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

Memory: a venue order that ended more than ``exeq.closed_order_retention_s`` ago (a day by default)
leaves memory, here and in its adapter (paper, ccxt), after the restore and then a few at a time on
the algos' clock; its key and exec id counter stay, so a repeated order is still a repeat and anything
published later about it is numbered after what was (a cancel for it: "unknown order", as a venue says
of old orders). A child is kept while its algo works.
"""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import Awaitable, Callable
from decimal import Decimal

import msgspec
from nats.js import JetStreamContext
from nats.js.errors import NotFoundError
from nats.js.kv import KeyValue
from prometheus_client import Gauge

from trader.bus.publish import Outgoing
from trader.bus.read import (
    Follower,
    Stored,
    catch_up,
    decode_message,
    follow_latest,
    replay,
    work_consumer,
    work_through,
)
from trader.bus.streams import exec_report_subject
from trader.config import CcxtVenueSettings, Settings
from trader.execution.balances import BalanceBaseline, BalanceBook, baseline_key, check_balances
from trader.execution.desk import ExecutionDesk
from trader.execution.venues import PaperVenue, VenueAdapter, venue_class
from trader.marketdata.decode import InvalidMessage, decode_tick
from trader.messages import ExecutionReport, MarketTick, VenueOrder, encode
from trader.runtime.consumer import Delivery, now_ms
from trader.runtime.service import Refused, Runtime, Service
from trader.trading.retention import FORGET_BATCH, Forgetting
from trader.trading.state import state_bucket

REPLAY_SUBJECTS = ["exec.order.>", "exec.algo.>", "exec.report.>"]

_venue_order = msgspec.json.Decoder(VenueOrder)
_report = msgspec.json.Decoder(ExecutionReport)

Key = tuple[str, str]  # venue, venue_client_id
Publish = Callable[[list[Outgoing]], Awaitable[object]]


def _order_of(stored: Stored) -> VenueOrder:
    order = decode_message(_venue_order, stored.data)
    if not order.venue:  # the subject names the venue the router chose
        order = msgspec.structs.replace(order, venue=stored.subject.rpartition(".")[2])
    return order


_balance_baseline = msgspec.json.Decoder(BalanceBaseline)


class JetStreamBalanceBook:
    """Baselines in the ``TRADER_STATE`` bucket; fills from ``exec.report.<venue>`` in the EXEC stream."""

    def __init__(self, js: JetStreamContext, kv: KeyValue, *, timeout_s: float = 60.0) -> None:
        self.js, self.kv, self.timeout_s = js, kv, timeout_s

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
        if upto <= seq:
            return []
        fills: list[ExecutionReport] = []
        failures: list[Exception] = []

        async def keep(stored: Stored) -> None:
            report = _report.decode(stored.data)
            if stored.seq <= upto and report.kind == "fill":
                fills.append(report)

        follower = Follower(
            self.js,
            stream="EXEC",
            subjects=exec_report_subject(venue),
            handler=keep,
            start_seq=seq + 1,
            on_error=_raise_later(failures),
            inactive_threshold_s=5.0,
        )
        await follower.start()
        try:
            await catch_up([follower], self.timeout_s, f"fills of {venue} after {seq}")
        finally:
            await follower.stop()
        if failures:  # an undecodable report: the sum would be wrong, so no sum
            raise failures[0]
        return fills


def _raise_later(failures: list[Exception]) -> Callable[[Stored, Exception], None]:
    def on_error(_stored: Stored, exc: Exception) -> None:
        failures.append(exc)

    return on_error


class Exeq(Service):
    name = "exeq"
    balance_book: BalanceBook | None = None  # JetStream's, made at the first reconcile; tests set one
    balance_mismatches: list[dict[str, str]]  # found at this start: in /health until the next

    def __init__(self, settings: Settings) -> None:
        super().__init__(settings)
        self.balance_mismatches = []

    async def start(self, rt: Runtime) -> None:
        self.rt = rt
        await self.stop(rt)  # a start retried after a failure begins afresh
        self._venue_reports: asyncio.Queue[ExecutionReport] = asyncio.Queue()
        adapters = {name: self._adapter(name, cfg.kind) for name, cfg in self.settings.exeq.venues.items()}
        for adapter in adapters.values():
            await adapter.start()
        self.desk = ExecutionDesk(adapters, self._publish, now_ms)
        last_seq = await self._rebuild(rt)
        await self._reconcile(rt)
        outcome = await self.desk.restore()
        self.forgetting = Forgetting(
            self.settings.exeq.closed_order_retention_s,
            self.desk.forget_ended,
            lambda: len(self.desk.orders),
            rt.log,
            "exeq.forgot_ended",
        )
        self.forgetting()
        rt.log.info(
            "exeq.restored",
            **outcome,
            open_orders=self.desk.open_orders(),
            forgotten=self.desk.forgotten_count,
        )
        # Ticks stored before now may have been used by the previous run (see the module docstring).
        self.ticks_before = (await rt.js.stream_info("MARKET_TICKS")).state.last_seq
        self.last_tick_seq = 0  # the last tick the venues have seen (health: how far market data got)
        self.ticks = follow_latest(
            rt, stream="MARKET_TICKS", subjects="market.tick.>", decode=decode_tick, apply=self._on_tick
        )
        await self.ticks.start()
        self.consumer = work_consumer(rt, stream="EXEC", subject="exec.order.>", start_seq=last_seq + 1)
        await self.consumer.start()

    def _adapter(self, name: str, kind: str) -> VenueAdapter:
        listener = self._venue_reports.put_nowait
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

    async def _reconcile(self, rt: Runtime) -> None:
        """Before the restore: each venue against the orders exeq believes open there. What the venue did
        meanwhile is published; every mismatch left is logged and counted, and changes nothing that exeq
        believes (an operator decides). Then the venue's balances are logged, set as gauges and
        reconciled (``_reconcile_balances``)."""
        self.balance_mismatches.clear()  # this start's findings only
        if not hasattr(self, "_balance_gauge"):  # once: a start retried after a failure reuses it
            labels = ["service", "venue", "asset"]
            self._balance_gauge = Gauge(
                "trader_venue_balance", "Balance per asset", labels, registry=rt.metrics.registry
            )
        for venue, adapter in self.desk.adapters.items():
            found = await adapter.reconcile(self.desk.believed_open(venue), self.desk.unanswered(venue))
            for mismatch in found.mismatches:
                rt.metrics.count_error("reconcile.mismatch")
                rt.log.warning("exeq.reconcile_mismatch", **vars(mismatch))
            if found.reports:
                rt.log.info("exeq.caught_up", venue=venue, reports=len(found.reports))
                await self.desk.catch_up(venue, found.reports)
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
            self.balance_book = JetStreamBalanceBook(rt.js, await state_bucket(rt.js))
        return self.balance_book

    async def _rebuild(self, rt: Runtime) -> int:
        last_seq = 0

        async def take(stored: Stored) -> None:
            nonlocal last_seq
            last_seq = stored.seq
            try:
                self.desk.replay(stored.subject, stored.data)
            except (msgspec.DecodeError, msgspec.ValidationError) as exc:
                rt.log.warning("exeq.replay_skipped", seq=stored.seq, subject=stored.subject, error=str(exc))

        replayed = await replay(rt.js, "EXEC", REPLAY_SUBJECTS, take)
        rt.log.info("exeq.replayed", messages=replayed, last_seq=last_seq)
        return last_seq

    async def _publish(self, items: list[Outgoing]) -> None:
        await self.rt.publish_reliably(items)

    async def _on_tick(self, tick: MarketTick, stored: Stored) -> None:
        self.rt.metrics.count_in()
        await self.desk.on_tick(tick, seen_before=stored.seq <= self.ticks_before)
        self.last_tick_seq = stored.seq

    async def run(self, rt: Runtime) -> None:
        tasks = [
            asyncio.create_task(self._drive_algos(rt)),
            asyncio.create_task(self._forward_venue_reports()),
        ]
        try:
            await work_through(rt, self.consumer, self._process)
        finally:
            for task in tasks:
                task.cancel()

    async def _process(self, batch: list[Delivery]) -> None:
        """The batch's orders in one turn of the desk, which publishes their reports together."""
        orders: list[VenueOrder] = []
        refused: list[Refused] = []
        for delivery in batch:
            stored = Stored.of(delivery)
            try:
                orders.append(_order_of(stored))
            except InvalidMessage as exc:
                refused.append(stored.refused(exc))
        await self.rt.dead_letter("EXEC", refused)
        await self.desk.on_orders(orders)
        self.rt.metrics.count_in(len(batch))

    async def _drive_algos(self, rt: Runtime) -> None:
        interval = self.settings.exeq.algo_interval_s
        while not rt.stopping.is_set():
            await asyncio.sleep(interval)
            try:
                await self.desk.drive_algos()
            except Exception as exc:  # one bad algo must not stop the clock of the others
                rt.metrics.count_error("algo")
                rt.log.exception("exeq.algo_failed", error=repr(exc))
            async with self.desk.lock:  # on the algos' clock: venue orders ended long ago leave memory
                self.forgetting(FORGET_BATCH)

    async def _forward_venue_reports(self) -> None:
        while True:
            report = await self._venue_reports.get()
            await self.desk.on_venue_report(report.venue, report)

    async def stop(self, rt: Runtime) -> None:
        if hasattr(self, "ticks"):
            await self.ticks.stop()
        if hasattr(self, "desk"):
            for adapter in self.desk.adapters.values():
                with contextlib.suppress(Exception):
                    await adapter.close()

    def ready_checks(self) -> dict[str, bool]:
        return {"consumer": hasattr(self, "consumer")}

    def health_details(self) -> dict[str, object]:
        if not hasattr(self, "desk"):
            return {}
        return {
            "open_orders": self.desk.open_orders(),
            "forgotten_orders": self.desk.forgotten_count,
            "algos": len(self.desk.algos),
            "balance_mismatches": list(self.balance_mismatches),
            "last_tick_seq": getattr(self, "last_tick_seq", 0),
        }


SERVICE = Exeq
