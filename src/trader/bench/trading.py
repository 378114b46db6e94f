"""`trader bench trading`: tick-to-order-acknowledgement latency through the trading services.

What it measures, on the servers that `trader up --detach --services ''` started (nothing is mocked):
the benchmark starts its own strategy, risk, oms, execution-router, exeq and ptrc (subprocesses, the
same environment plus the overrides of ``service_env``), with one strategy, ``EchoStrategy``
(``trader.bench.echo_strategy``), which answers every tick of ``BENCHUSDT`` with one IOC limit order at
the touch. It then publishes ticks (venue ``bench``) at a paced rate and times each order:

- latency, two ways, from the tick's publish acknowledgement (JetStream stored it):
  to the venue's acknowledgement, the first ``ExecutionReport`` exeq publishes for the order on
  ``exec.report.<venue>`` (accepted, or a fill): strategy -> risk -> oms -> exeq (paper venue), the
  chain the issue names; and to the order's first state from the venue on ``order.state.<strategy>``
  (ACCEPTED, PARTIALLY_FILLED, FILLED, EXPIRED or CANCELED), one hop more: the oms applying that report.
  Every hop is a JetStream publish and consume (with one venue, the oms sends the order straight to
  exeq; with a choice of venues, the execution-router is one hop more). Both are read raw and in bulk
  (core subscriptions), so the benchmark's own reading costs little. A REJECTED order is counted apart,
  with its reason. Each tick's ask and bid are unique in the run, and the strategy's limit price is one
  of them: that maps an order back to its tick (and its reports, by client order id);
- orders/s: the orders acknowledged by the venue, of the ticks of the measured window, over the time
  from the window's first tick to the last of their acknowledgements: what the chain sustained. While it
  keeps up this equals the offered rate; past saturation the backlog makes it lower;
- wake-ups per order of every service (and nats-server, and the benchmark): voluntary context
  switches over the measured window, per tick; with `trader bench wakeup`'s price of one wake-up on
  the machine, they account for most of the CPU an order costs;
- CPU of every service (and nats-server, and the benchmark itself) over the measured window, in % of
  one core, and ``others``: what the rest of the machine used meanwhile (on a shared machine, the noise
  in the figures; a few % of sampling error either way);
- peak RSS of each service (``VmHWM``);
- with ``hops``, each message of the chain as the benchmark sees it on the bus (core subscriptions to
  the order and exec subjects), so that the latency splits by hop. This loads the benchmark's own
  process with six more messages per order: run it apart from the headline figures.

Every rate runs ``warmup_s`` (not counted) then ``seconds`` (counted), then waits (``drain_s`` at most)
for the answers to its orders before the next rate starts.
"""

from __future__ import annotations

import asyncio
import contextlib
import itertools
import json
import os
import subprocess
import sys
import time
import uuid
from collections import Counter
from dataclasses import dataclass, field
from decimal import Decimal
from typing import Any

import httpx
import msgspec
import psutil
from nats.aio.client import Client as NATS
from nats.aio.msg import Msg
from prometheus_client.parser import text_string_to_metric_families

from trader.bench.ingest import cpu_seconds, peak_rss_mib, percentile, stop_processes
from trader.bench.wakeup import voluntary_switches
from trader.bus.connection import connect_nats
from trader.bus.publish import MSG_ID, publish_acked
from trader.bus.streams import (
    ensure_streams,
    exec_route_subject,
    order_risk_subject,
    order_state_subject,
    order_submit_subject,
    tick_subject,
)
from trader.bus.trading_switch import read_state as read_trading_state
from trader.bus.trading_switch import state_bucket
from trader.bus.wire import RawMessage, subscribe_raw, unsubscribe_raw
from trader.config import Settings
from trader.messages import MarketTick, encode
from trader.services import REGISTRY
from trader.stack.state import read_state

SLICE_S = 10  # the window's latency is also given per this many seconds
SERVICES = ("strategy", "risk", "oms", "execution-router", "exeq", "ptrc")
STRATEGY = "bench-echo"
KIND = "trader.bench.echo_strategy:EchoStrategy"
SYMBOL = "BENCHUSDT"
VENUE = "bench"
STEP = Decimal("0.000001")  # between two ticks' prices: unique in a run, far inside the price band
HALF_SPREAD = Decimal("0.01")
TICK_SIZE = Decimal(1)  # what the paper venue may fill on one tick: more than any one order
VENUE_STATES = frozenset({"ACCEPTED", "PARTIALLY_FILLED", "FILLED", "EXPIRED", "CANCELED"})
# The chain as the benchmark sees it on the bus (``hops``): each stage's message, in order.
STAGES = ("tick", "submit", "risk", "route", "venue_order", "report", "state")
# An order the oms sends straight to its venue (nothing for the router to choose) skips "route".
HOPS = {
    ("tick", "submit"): "strategy: tick -> order.submit",
    ("submit", "risk"): "risk: order.submit -> order.risk",
    ("risk", "route"): "oms: order.risk -> exec.route",
    ("route", "venue_order"): "execution-router: exec.route -> exec.order",
    ("risk", "venue_order"): "oms: order.risk -> exec.order (no choice: no router)",
    ("venue_order", "report"): "exeq: exec.order -> exec.report",
    ("report", "state"): "oms: exec.report -> order.state",
}


def service_env(quantity: str, base: dict[str, str] | None = None) -> dict[str, str]:
    """The environment of the services the benchmark starts: the caller's, with one strategy and risk
    limits that a flow of tiny, alternating orders at thousands per second stays within."""
    strategy = {"name": STRATEGY, "kind": KIND, "symbols": [SYMBOL], "params": {"quantity": quantity}}
    return {
        **(os.environ if base is None else base),
        "TRADER_STRATEGY__STRATEGIES": json.dumps([strategy]),
        "TRADER_RISK__MAX_ORDERS_PER_SECOND": "1000000",
        "TRADER_RISK__MAX_POSITION_PER_SYMBOL": "1000000",
        "TRADER_RISK__MAX_GROSS_EXPOSURE": "1000000000000",
        "TRADER_RISK__MAX_ORDER_NOTIONAL": "1000000000",
        # The paper venue (and the router's quote of it) follows the benchmark's ticks whatever the
        # configuration says, and so does the strategy: they stand for the mock feed's.
        "TRADER_EXEQ__PAPER__QUOTE_VENUE": VENUE,
        "TRADER_GATEWAY__VENUE": VENUE,
    }


# Ticks and their orders ---------------------------------------------------------------------------


def tick_prices(base: Decimal, k: int) -> tuple[Decimal, Decimal, Decimal]:
    """(trade price, bid, ask) of the run's ``k``-th tick: every bid and every ask unique in the run."""
    price = base + k * STEP
    return price, price - HALF_SPREAD, price + HALF_SPREAD


class TickIndex:
    """Which tick an order answers: a buy is limited at the tick's ask, a sell at its bid."""

    def __init__(self) -> None:
        self._by_ask: dict[Decimal, int] = {}
        self._by_bid: dict[Decimal, int] = {}

    def add(self, k: int, bid: Decimal, ask: Decimal) -> None:
        self._by_ask[ask] = k
        self._by_bid[bid] = k

    def lookup(self, side: str, price: Decimal | None) -> int | None:
        if price is None:
            return None
        return (self._by_ask if side == "buy" else self._by_bid).get(price)


def latency_figures(values_s: list[float]) -> dict[str, float | None]:
    """p50, p99 and max, in milliseconds."""
    if not values_s:
        return {"p50_ms": None, "p99_ms": None, "max_ms": None}
    return {
        "p50_ms": round(percentile(values_s, 50) * 1000, 2),
        "p99_ms": round(percentile(values_s, 99) * 1000, 2),
        "max_ms": round(max(values_s) * 1000, 2),
    }


def reason_kind(reason: str | None) -> str:
    """A rejection's reason without its numbers: the check that refused (``price_band``, ...)."""
    if not reason:
        return "(no reason)"
    return reason.split(":", 1)[0].strip()


# Light views of the bus messages: only the fields the benchmark reads.


class _State(msgspec.Struct):
    client_order_id: str
    side: str
    status: str
    strategy: str
    price: Decimal | None = None
    reason: str | None = None


class _Ref(msgspec.Struct):
    client_order_id: str


class _Submit(msgspec.Struct):
    client_order_id: str
    side: str
    price: Decimal | None = None


class _Decision(msgspec.Struct):
    request: _Ref


class _Report(msgspec.Struct):
    client_order_id: str
    strategy: str


_state_decoder = msgspec.json.Decoder(_State)
_ref_decoder = msgspec.json.Decoder(_Ref)
_submit_decoder = msgspec.json.Decoder(_Submit)
_decision_decoder = msgspec.json.Decoder(_Decision)
_report_decoder = msgspec.json.Decoder(_Report)


@dataclass(slots=True)
class Sent:
    measured: bool
    sent: float  # perf_counter when published
    acked: float | None = None  # perf_counter when its publish acknowledgement arrived


@dataclass(slots=True)
class Answer:
    at: float  # the first state from the venue, as the oms published it
    status: str
    reason: str | None
    venue_ack: float | None = None  # the venue's first report about the order, as exeq published it


@dataclass
class Recorder:
    """Everything the benchmark saw, by tick index (``k``, in the order published)."""

    index: TickIndex = field(default_factory=TickIndex)
    ticks: list[Sent] = field(default_factory=list)
    answers: dict[int, Answer] = field(default_factory=dict)
    answered_ids: set[str] = field(default_factory=set)
    venue_acks: dict[str, float] = field(default_factory=dict)  # the first report's time, by order id
    unmapped: int = 0  # states of orders that answer no tick of this run
    # hops: when each stage's message was seen, by client order id (each subscription has its own task,
    # so a decision may be handled before its request); the tick of each order, from its request
    stages: dict[str, dict[str, float]] = field(default_factory=lambda: {s: {} for s in STAGES[1:-1]})
    by_id: dict[str, int] = field(default_factory=dict)
    # the phase in progress: its first tick, its size and the event set when all are answered
    phase_first: int = 0
    phase_size: int = 0
    phase_answered: int = 0
    phase_done: asyncio.Event = field(default_factory=asyncio.Event)

    def on_state(self, data: bytes, at: float) -> None:
        state = _state_decoder.decode(data)
        if state.status == "NEW" or state.client_order_id in self.answered_ids:
            return  # the oms's own state, before the venue; or not the first state from the venue
        self.answered_ids.add(state.client_order_id)
        k = self.index.lookup(state.side, state.price)
        if k is None or k in self.answers:
            self.unmapped += 1
            return
        venue_ack = self.venue_acks.pop(state.client_order_id, None)
        self.answers[k] = Answer(at, state.status, state.reason, venue_ack)
        if self.phase_first <= k < self.phase_first + self.phase_size:
            self.phase_answered += 1
            if self.phase_answered >= self.phase_size:
                self.phase_done.set()

    def on_report(self, data: bytes, at: float) -> None:
        """The venue's first report about one of the benchmark's orders: its acknowledgement. (Reports
        come before the states the oms makes of them.)"""
        report = _report_decoder.decode(data)
        if report.strategy == STRATEGY and report.client_order_id not in self.answered_ids:
            self.venue_acks.setdefault(report.client_order_id, at)

    def on_hop(self, stage: str, data: bytes, at: float) -> None:
        if stage == "submit":
            submit = _submit_decoder.decode(data)
            coid = submit.client_order_id
            k = self.index.lookup(submit.side, submit.price)
            if k is not None:
                self.by_id.setdefault(coid, k)
        elif stage == "risk":
            coid = _decision_decoder.decode(data).request.client_order_id
        else:
            coid = _ref_decoder.decode(data).client_order_id
        self.stages[stage].setdefault(coid, at)

    def stage_times(self, stage: str) -> dict[int, float]:
        """When each tick's order reached ``stage``, by tick."""
        return {self.by_id[coid]: at for coid, at in self.stages[stage].items() if coid in self.by_id}


# Processes ----------------------------------------------------------------------------------------


def _stack_pids(settings: Settings) -> dict[str, int | None]:
    state = read_state(settings.run_dir)
    if state is None or state.phase != "ready":
        raise RuntimeError("the stack is not running: start it with `trader up --detach --services ''` first")
    return {c["name"]: c.get("pid") for c in state.components}


def _spawn(settings: Settings, env: dict[str, str]) -> dict[str, subprocess.Popen[bytes]]:
    procs = {}
    settings.log_dir.mkdir(parents=True, exist_ok=True)
    for name in SERVICES:
        with settings.log_file(name).open("ab") as log:
            argv = [sys.executable, "-m", "trader", "service", "run", name]
            procs[name] = subprocess.Popen(argv, stdout=log, stderr=subprocess.STDOUT, env=env)
    return procs


async def _wait_ready(
    settings: Settings, procs: dict[str, subprocess.Popen[bytes]], timeout_s: float
) -> None:
    """Every service answers /ready, and the strategy service runs the benchmark's strategy."""
    deadline = time.monotonic() + timeout_s
    waiting = set(procs)
    async with httpx.AsyncClient(timeout=2) as client:
        while waiting:
            for name in sorted(waiting):
                if procs[name].poll() is not None:
                    raise RuntimeError(f"{name} exited while starting: see {settings.log_file(name)}")
                port = getattr(settings.ports, REGISTRY[name].port_field)
                try:
                    body = (await client.get(f"http://{settings.bind_host}:{port}/ready")).json()
                except (httpx.HTTPError, ValueError):
                    continue
                if body.get("ready"):
                    waiting.discard(name)
            if waiting and time.monotonic() > deadline:
                raise RuntimeError(f"not ready within {timeout_s:.0f}s: {', '.join(sorted(waiting))}")
            await asyncio.sleep(0.2)
        port = settings.ports.strategy
        health = (await client.get(f"http://{settings.bind_host}:{port}/health")).json()
    if STRATEGY not in health.get("strategies", {}):
        failed = health.get("failed_strategies", {}).get(STRATEGY, "not loaded")
        raise RuntimeError(f"the strategy service does not run {STRATEGY}: {failed}")


@dataclass(frozen=True)
class GcTotals:
    """A service's garbage collections so far, from its ``trader_gc_pause_seconds`` histogram."""

    collections: float
    seconds: float
    long_pauses: float  # 10 ms or more

    def since(self, before: GcTotals) -> dict[str, float]:
        return {
            "collections": round(self.collections - before.collections),
            "pause_ms": round((self.seconds - before.seconds) * 1000, 1),
            "pauses_10ms": round(self.long_pauses - before.long_pauses),
        }


LONG_PAUSE_S = 0.01


def gc_totals(metrics_text: str) -> GcTotals:
    """All generations together, from a service's /metrics."""
    collections = seconds = under = 0.0
    for family in text_string_to_metric_families(metrics_text):
        if family.name != "trader_gc_pause_seconds":
            continue
        for sample in family.samples:
            if sample.name.endswith("_count"):
                collections += sample.value
            elif sample.name.endswith("_sum"):
                seconds += sample.value
            elif sample.name.endswith("_bucket") and float(sample.labels["le"]) == LONG_PAUSE_S:
                under += sample.value  # cumulative: the pauses shorter than 10 ms
    return GcTotals(collections, seconds, collections - under)


async def _gc_of(settings: Settings, names: list[str]) -> dict[str, GcTotals]:
    out = {}
    async with httpx.AsyncClient(timeout=2) as client:
        for name in names:
            port = getattr(settings.ports, REGISTRY[name].port_field)
            with contextlib.suppress(httpx.HTTPError):
                out[name] = gc_totals((await client.get(f"http://{settings.bind_host}:{port}/metrics")).text)
    return out


def _cpu_seconds(pids: dict[str, int]) -> dict[str, float | None]:
    return {name: cpu_seconds(pid) for name, pid in pids.items()}


def _machine_busy_seconds() -> float:
    """CPU time every process of the machine used, all cores together."""
    t = psutil.cpu_times()
    return sum(getattr(t, name, 0.0) for name in ("user", "nice", "system", "irq", "softirq", "steal"))


def _cpu_percent(
    before: dict[str, float | None], after: dict[str, float | None], elapsed: float
) -> dict[str, int | None]:
    """CPU time over ``elapsed`` seconds, in % of one core."""
    out: dict[str, int | None] = {}
    for name, start in before.items():
        end = after.get(name)
        out[name] = None if start is None or end is None else round((end - start) / elapsed * 100)
    return out


# The benchmark ------------------------------------------------------------------------------------


class TradingBench:
    def __init__(self, nc: NATS, settings: Settings, *, hops: bool) -> None:
        self.nc = nc
        self.settings = settings
        self.js = nc.jetstream()
        self.hops = hops
        self.rec = Recorder()
        self.run = uuid.uuid4().hex[:8]
        # A base price of its own per run (within 1000..1999), so no answer of an earlier run maps here.
        self.base = Decimal(1000 + int(time.time()) % 1000)
        self.subs: list[Any] = []
        self.raw_subs: list[Any] = []

    async def subscribe(self) -> None:
        rec = self.rec

        def on_reports(messages: list[RawMessage]) -> None:
            at = time.perf_counter()
            for _subject, _reply, _headers, data in messages:
                rec.on_report(data, at)

        def on_states(messages: list[RawMessage]) -> None:
            at = time.perf_counter()
            for _subject, _reply, _headers, data in messages:
                rec.on_state(data, at)

        # Reports first: in a read holding an order's report and its state, the report is handed over
        # first.
        self.raw_subs.append(await subscribe_raw(self.nc, "exec.report.>", on_reports))
        self.raw_subs.append(await subscribe_raw(self.nc, order_state_subject(STRATEGY), on_states))
        if not self.hops:
            return
        subjects = {
            "submit": order_submit_subject(STRATEGY),
            "risk": order_risk_subject(STRATEGY),
            "route": exec_route_subject(STRATEGY),
            "venue_order": "exec.order.>",
            "report": "exec.report.>",
        }
        for stage, subject in subjects.items():

            async def on_hop(msg: Msg, stage: str = stage) -> None:
                rec.on_hop(stage, msg.data, time.perf_counter())

            self.subs.append(await self.nc.subscribe(subject, cb=on_hop))

    async def unsubscribe(self) -> None:
        for sub in self.subs:
            await sub.unsubscribe()
        for sub in self.raw_subs:
            await unsubscribe_raw(sub)
        self.subs.clear()
        self.raw_subs.clear()

    async def _publish(self, measured: bool) -> None:
        rec = self.rec
        k = len(rec.ticks)
        price, bid, ask = tick_prices(self.base, k)
        rec.index.add(k, bid, ask)
        tick = MarketTick(
            timestamp=time.time_ns() // 1_000_000,
            exchange=VENUE,
            venue=VENUE,
            symbol=SYMBOL,
            price=price,
            size=TICK_SIZE,
            volume=TICK_SIZE,
            bid=bid,
            ask=ask,
            trade_id=f"{self.run}-{k}",
        )
        sent = Sent(measured, time.perf_counter())
        rec.ticks.append(sent)
        headers = {MSG_ID: f"bench-trading:{self.run}:{k}"}
        future = await publish_acked(self.js, tick_subject(VENUE, SYMBOL), encode(tick), headers)

        def acked(f: asyncio.Future[Any]) -> None:
            if not f.cancelled() and f.exception() is None:
                sent.acked = time.perf_counter()

        future.add_done_callback(acked)

    async def phase(
        self, rate: float, *, warmup_s: float, seconds: float, drain_s: float, pids: dict[str, int]
    ) -> dict[str, Any]:
        rec = self.rec
        n_warm, n_measured = round(rate * warmup_s), max(2, round(rate * seconds))
        first = len(rec.ticks)
        rec.phase_first, rec.phase_size, rec.phase_answered = first, n_warm + n_measured, 0
        rec.phase_done.clear()
        began = time.perf_counter()
        cpu_before: dict[str, float | None] = {}
        switches_before: dict[str, int] = {}
        gc_before: asyncio.Task[dict[str, GcTotals]] | None = None
        services = [name for name in pids if name in REGISTRY]
        window_start = began
        machine_before = 0.0
        for i in range(n_warm + n_measured):
            if i == n_warm:
                # Read beside the paced loop: awaited here, it would hold the ticks back, then burst.
                gc_before = asyncio.create_task(_gc_of(self.settings, services))
                cpu_before, window_start = _cpu_seconds(pids), time.perf_counter()
                switches_before = {name: voluntary_switches(pid) for name, pid in pids.items()}
                machine_before = _machine_busy_seconds()
            delay = began + i / rate - time.perf_counter()
            if delay > 0:
                await asyncio.sleep(delay)
            await self._publish(measured=i >= n_warm)
        window_s = time.perf_counter() - window_start
        cpu = _cpu_percent(cpu_before, _cpu_seconds(pids), window_s)
        # How often each process waited and was woken, per tick of the window: the wake-ups an order
        # costs (`trader bench wakeup` prices one on this machine).
        wakeups = {
            name: round((voluntary_switches(pid) - switches_before[name]) / n_measured, 2)
            for name, pid in pids.items()
        }
        # What the rest of the machine used meanwhile: on a shared machine, the noise in the figures.
        busy = round((_machine_busy_seconds() - machine_before) / window_s * 100)
        gc_after = await _gc_of(self.settings, services)
        gc_start = await gc_before if gc_before is not None else {}
        gc = {name: gc_after[name].since(gc_start[name]) for name in gc_after if name in gc_start}
        cpu["others"] = busy - sum(v for v in cpu.values() if v is not None)
        with contextlib.suppress(TimeoutError):
            await asyncio.wait_for(rec.phase_done.wait(), drain_s)
        await asyncio.sleep(0.2)  # late hop messages (the state comes last) and acknowledgements
        figures = self._figures(rate, range(first + n_warm, first + n_warm + n_measured), cpu)
        figures["wakeups_per_order"] = wakeups
        figures["gc"] = gc
        return figures

    def _figures(self, rate: float, measured: range, cpu: dict[str, Any]) -> dict[str, Any]:
        rec = self.rec
        ticks = [rec.ticks[k] for k in measured]
        answers = {k: rec.answers[k] for k in measured if k in rec.answers}
        ok = {k: a for k, a in answers.items() if a.status in VENUE_STATES}
        rejected = {k: a for k, a in answers.items() if a.status not in VENUE_STATES}
        from_ack = [a.at - acked for k, a in ok.items() if (acked := rec.ticks[k].acked) is not None]
        venue_acks = {
            k: a.venue_ack - acked
            for k, a in ok.items()
            if a.venue_ack is not None and (acked := rec.ticks[k].acked) is not None
        }
        to_venue_ack = list(venue_acks.values())
        from_publish = [a.at - rec.ticks[k].sent for k, a in ok.items()]
        tick_acks = [t.acked - t.sent for t in ticks if t.acked is not None]
        published_s = ticks[-1].sent - ticks[0].sent
        sustained_s = max((a.at for a in ok.values()), default=ticks[0].sent) - ticks[0].sent
        reasons: dict[str, dict[str, Any]] = {}
        for a in rejected.values():
            entry = reasons.setdefault(reason_kind(a.reason), {"count": 0, "example": a.reason})
            entry["count"] += 1
        figures: dict[str, Any] = {
            "rate": rate,
            "published_per_s": round((len(ticks) - 1) / published_s) if published_s > 0 else None,
            "orders": len(ticks),
            "acknowledged": len(ok),
            "rejected": len(rejected),
            "unanswered": len(ticks) - len(answers),
            "orders_per_s": round(len(ok) / sustained_s) if ok and sustained_s > 0 else None,
            "latency_venue_ack": latency_figures(to_venue_ack),
            "latency": latency_figures(from_ack),
            "latency_from_publish": latency_figures(from_publish),
            "tick_publish_ack": latency_figures(tick_acks),
            "first_states": dict(Counter(a.status for a in ok.values())),
            "rejections": reasons,
            "cpu_percent": cpu,
            "venue_ack_by_slice": self._slices(measured, venue_acks),
        }
        if self.hops:
            figures["hops"] = self._hops(measured)
        return figures

    def _slices(self, measured: range, latencies: dict[int, float]) -> list[dict[str, float | None]]:
        """The venue-ack latency per ``SLICE_S`` of the window, by when the tick was sent: whether the
        tail is spread over the run or grows with it."""
        ticks = self.rec.ticks
        start = ticks[measured.start].sent
        slices: dict[int, list[float]] = {}
        for k in measured:
            if k in latencies:
                slices.setdefault(int((ticks[k].sent - start) // SLICE_S), []).append(latencies[k])
        return [
            {"from_s": n * SLICE_S, **latency_figures(values), "orders": len(values)}
            for n, values in sorted(slices.items())
        ]

    def _hops(self, measured: range) -> dict[str, dict[str, float | None]]:
        rec = self.rec
        seen: dict[str, dict[int, float]] = {
            "tick": {k: t.acked for k in measured if (t := rec.ticks[k]).acked is not None},
            **{stage: rec.stage_times(stage) for stage in STAGES[1:-1]},
            "state": {k: a.at for k, a in rec.answers.items() if a.status in VENUE_STATES},
        }
        gaps: dict[tuple[str, str], list[float]] = {}
        for k in measured:
            stages = [stage for stage in STAGES if k in seen[stage]]
            for before, after in itertools.pairwise(stages):
                gaps.setdefault((before, after), []).append(seen[after][k] - seen[before][k])
        return {
            label: {**latency_figures(gaps[hop]), "orders": len(gaps[hop])}
            for hop, label in HOPS.items()
            if hop in gaps
        }


async def run_trading_bench(
    settings: Settings,
    *,
    rates: list[float],
    seconds: float,
    warmup_s: float,
    drain_s: float = 120.0,
    quantity: str = "0.001",
    hops: bool = False,
    ready_timeout_s: float = 300.0,
) -> dict[str, Any]:
    """Start the trading services, run each rate in turn, stop them; the figures per rate."""
    stack = _stack_pids(settings)
    running = [name for name in SERVICES if name in stack]
    if running:
        raise RuntimeError(
            f"the stack runs {', '.join(running)}: the benchmark starts its own; "
            "run `trader up --detach --services ''` (servers only) first"
        )
    nc = await asyncio.wait_for(connect_nats(settings.effective_nats_url, "trader-bench-trading"), 10)
    assert nc is not None
    procs: dict[str, subprocess.Popen[bytes]] = {}
    bench = TradingBench(nc, settings, hops=hops)
    try:
        js = nc.jetstream()
        await ensure_streams(js, settings)
        trading, _ = await read_trading_state(await state_bucket(js))
        if trading.mode != "active":
            raise RuntimeError(f"trading is {trading.mode} ({trading.reason}): `trader resume` first")
        started = time.perf_counter()
        procs = _spawn(settings, service_env(quantity))
        await _wait_ready(settings, procs, ready_timeout_s)
        ready_s = time.perf_counter() - started
        await bench.subscribe()
        pids = {name: proc.pid for name, proc in procs.items()}
        if stack.get("nats"):
            pids["nats-server"] = stack["nats"]  # type: ignore[assignment]
        pids["bench"] = os.getpid()
        phases = []
        for rate in rates:
            phases.append(
                await bench.phase(rate, warmup_s=warmup_s, seconds=seconds, drain_s=drain_s, pids=pids)
            )
        rss = {name: _round(peak_rss_mib(proc.pid)) for name, proc in procs.items()}
        exited = [name for name, proc in procs.items() if proc.poll() is not None]
        if exited:
            raise RuntimeError(f"exited during the benchmark: {', '.join(exited)}; see their logs")
    finally:
        await bench.unsubscribe()
        await nc.close()
        stop_processes(procs)
    return {
        "strategy": STRATEGY,
        "symbol": SYMBOL,
        "services": list(SERVICES),
        "warmup_s": warmup_s,
        "seconds": seconds,
        "services_ready_s": round(ready_s, 1),
        "unmapped_states": bench.rec.unmapped,
        "phases": phases,
        "peak_rss_mib": rss,
    }


def _round(value: float | None) -> float | None:
    return None if value is None else round(value, 1)


def to_json(report: dict[str, Any]) -> bytes:
    return msgspec.json.format(msgspec.json.encode(report))
