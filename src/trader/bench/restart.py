"""`trader bench restart`: how long the trading services take to be ready again after a crash, and
their peak memory, on a trading history of 10,000 to 1,000,000 orders.

On the servers of `trader up --detach --services ''` (a data directory of its own: the benchmark
empties ORDERS, EXEC and POSITIONS, writes its history there and moves the services' work
checkpoints past it), for each history size in turn, each on a history of its own:

1. the history: ORDERS, EXEC and POSITIONS purged and the six services' snapshots deleted, then each
   order as the live path leaves it with one venue (the oms sends it straight to exeq), written
   directly to the streams in bulk, acknowledgements in flight, not through the services: on ORDERS
   its request, risk's approval and its states NEW, ACCEPTED and FILLED (the last two naming their
   report in ``Trader-Exec-Id``), on EXEC the venue order and two reports, accepted and a fill
   (``paper:<id>:1``, ``:2``, numbered as exeq numbers them). Orders are one ``spacing_ms`` apart in
   time, the last one now: at the default second, an hour holds 3,600 of them and the rest are older
   than the services' retention of ended orders (an hour by default, their ids two), as
   on a stack that has traded at that pace for as long as the history lasts;
2. the work checkpoints of the oms's and risk's work inputs (``intake.<service>.<input>``) set to the
   streams' ends: that work was done, as if the services had taken the history live;
3. the first start of the six services that used to replay ORDERS and EXEC from sequence 1 (oms,
   exeq, execution-router, ptrc, strategy, risk): each rebuilds from its snapshot, if any, and the
   messages after it; then the benchmark waits until every snapshot covers the streams' ends (or
   ``snapshot_wait_s``), as the services take them every N messages or T seconds;
4. SIGKILL of all six; then each restarted alone, timed from its process's start to ``/ready``, with
   its peak RSS (``VmHWM``) once ready and what it replayed (``start_seq`` of its inputs, where its
   ``/health`` says); then all six at once (a crash of the whole trading stack), the time until the
   last is ready. They are stopped (SIGTERM) before the next size.

Figures depend on the machine and what else runs on it.
"""

from __future__ import annotations

import asyncio
import contextlib
import os
import signal
import subprocess
import sys
import time
from collections.abc import Iterable
from dataclasses import dataclass, field
from decimal import Decimal
from typing import Any

import httpx
import msgspec
from nats.js import JetStreamContext
from nats.js.errors import NotFoundError

from trader.bench.ingest import peak_rss_mib, stop_processes
from trader.bench.trading import STRATEGY, service_env
from trader.bus.connection import connect_nats
from trader.bus.publish import Outgoing, publish_batch
from trader.bus.streams import (
    EXEC_ID_HEADER,
    STATE_BUCKET,
    ensure_state_bucket,
    ensure_streams,
    exec_order_subject,
    exec_report_subject,
    order_risk_subject,
    order_state_subject,
    order_submit_subject,
)
from trader.config import Settings
from trader.messages import (
    ExecutionReport,
    Order,
    OrderRequest,
    ReportKind,
    RiskDecision,
    Side,
    VenueOrder,
    encode,
)
from trader.runtime.intake import checkpoint_key
from trader.runtime.snapshots import KEY_PREFIX, OBJECT_BUCKET, Entry, InObjectStore, Record, decompress
from trader.services import REGISTRY
from trader.stack.state import read_state

SERVICES = ("oms", "exeq", "execution-router", "ptrc", "strategy", "risk")
# The work inputs whose checkpoints the benchmark moves past the history it writes: (service, input,
# stream).
WORK_INPUTS = (("oms", "oms-orders", "ORDERS"), ("oms", "oms-reports", "EXEC"), ("risk", "risk", "ORDERS"))
# The snapshots that cover ORDERS or EXEC: key -> stream.
SNAPSHOTS = {
    "oms": "ORDERS",
    "exeq": "EXEC",
    "execution-router": "EXEC",
    "ptrc": "EXEC",
    "risk-orders": "ORDERS",
    "strategy": "ORDERS",  # and EXEC: its contexts cover both
}
VENUE = "paper"
SYMBOL = "BTCUSDT"
PUBLISH_BATCH = 5_000
READY_POLL_S = 0.05
SNAPSHOT_POLL_S = 3.0
ACK_AND_FILL: tuple[tuple[int, ReportKind], ...] = ((1, "accepted"), (2, "fill"))


# The history ----------------------------------------------------------------------------------------


def order_messages(i: int, at_ms: int, run: str) -> list[Outgoing]:
    """The eight messages of one filled order, as the live path stores them (ORDERS, then EXEC)."""
    coid = f"{STRATEGY}-{run}-{i}"
    side: Side = "buy" if i % 2 else "sell"
    quantity, price = Decimal("0.001"), Decimal("60000.5")
    request = OrderRequest(
        client_order_id=coid,
        strategy=STRATEGY,
        symbol=SYMBOL,
        side=side,
        quantity=quantity,
        type="limit",
        price=price,
        tif="IOC",
        venue=VENUE,
        timestamp=at_ms,
    )
    decision = RiskDecision(request=request, approved=True, timestamp=at_ms)
    new = Order(
        client_order_id=coid,
        strategy=STRATEGY,
        account="paper",
        symbol=SYMBOL,
        side=side,
        type="limit",
        quantity=quantity,
        status="NEW",
        price=price,
        tif="IOC",
        venue=VENUE,
        version=1,
        created=at_ms,
        updated=at_ms,
    )
    accepted = msgspec.structs.replace(new, status="ACCEPTED", version=2, venue_order_id=coid)
    filled = msgspec.structs.replace(
        accepted, status="FILLED", version=3, filled_quantity=quantity, average_price=price
    )
    venue_order = VenueOrder(
        action="new",
        client_order_id=coid,
        venue_client_id=coid,
        strategy=STRATEGY,
        account="paper",
        venue=VENUE,
        symbol=SYMBOL,
        side=side,
        quantity=quantity,
        type="limit",
        price=price,
        tif="IOC",
        timestamp=at_ms,
    )
    ack, fill = (
        ExecutionReport(
            exec_id=f"{VENUE}:{coid}:{n}",
            kind=kind,
            client_order_id=coid,
            strategy=STRATEGY,
            account="paper",
            venue=VENUE,
            symbol=SYMBOL,
            side=side,
            venue_order_id=coid,
            last_quantity=quantity if kind == "fill" else Decimal(0),
            last_price=price if kind == "fill" else None,
            liquidity="taker" if kind == "fill" else None,
            timestamp=at_ms,
            venue_client_id=coid,
        )
        for n, kind in ACK_AND_FILL
    )
    state_subject = order_state_subject(STRATEGY)
    return [
        Outgoing(order_submit_subject(STRATEGY), encode(request), msg_id=coid),
        Outgoing(order_risk_subject(STRATEGY), encode(decision), msg_id=f"risk:{coid}"),
        Outgoing(state_subject, encode(new), msg_id=f"{coid}:1"),
        Outgoing(state_subject, encode(accepted), msg_id=f"{coid}:2", headers={EXEC_ID_HEADER: ack.exec_id}),
        Outgoing(state_subject, encode(filled), msg_id=f"{coid}:3", headers={EXEC_ID_HEADER: fill.exec_id}),
        Outgoing(exec_order_subject(VENUE), encode(venue_order), msg_id=f"route:{coid}:new"),
        Outgoing(exec_report_subject(VENUE), encode(ack), msg_id=ack.exec_id),
        Outgoing(exec_report_subject(VENUE), encode(fill), msg_id=fill.exec_id),
    ]


async def write_history(js: JetStreamContext, orders: int, spacing_ms: int, run: str) -> None:
    """A history of ``orders`` orders, the last one now, each batch's acknowledgements awaited
    together; what was not stored fails the benchmark."""
    now = time.time_ns() // 1_000_000
    batch: list[Outgoing] = []
    for i in range(orders):
        batch += order_messages(i, now - (orders - 1 - i) * spacing_ms, run)
        if len(batch) >= PUBLISH_BATCH:
            await _publish(js, batch)
            batch = []
    if batch:
        await _publish(js, batch)


async def _publish(js: JetStreamContext, batch: list[Outgoing]) -> None:
    result = await publish_batch(js, batch, ack_timeout=30)
    if result.failed:
        raise RuntimeError(f"{len(result.failed)} history messages not stored: {result.errors[:3]}")


async def clear_history(js: JetStreamContext) -> None:
    """ORDERS, EXEC and POSITIONS empty (their sequences go on), and no snapshot of the services."""
    for stream in ("ORDERS", "EXEC", "POSITIONS"):
        await js.purge_stream(stream)
    await ensure_state_bucket(js)
    kv = await js.key_value(STATE_BUCKET)
    for key in SNAPSHOTS:
        with contextlib.suppress(NotFoundError):
            await kv.delete(KEY_PREFIX + key)


async def move_work_checkpoints(js: JetStreamContext) -> dict[str, int]:
    """The work inputs' checkpoints at their streams' ends: the history's work counts as done."""
    await ensure_state_bucket(js)
    kv = await js.key_value(STATE_BUCKET)
    ends = {stream: (await js.stream_info(stream)).state.last_seq for stream in ("ORDERS", "EXEC")}
    for service, name, stream in WORK_INPUTS:
        await kv.put(checkpoint_key(service, name), str(ends[stream]).encode())
    return ends


_entry = msgspec.msgpack.Decoder(Entry)
_record = msgspec.msgpack.Decoder(Record)


async def snapshot_covers(js: JetStreamContext, key: str, stream: str) -> tuple[int, int]:
    """The stream sequence the service's latest snapshot covers (0: none yet), and its size as stored."""
    kv = await js.key_value(STATE_BUCKET)
    try:
        entry = await kv.get(KEY_PREFIX + key)
    except NotFoundError:
        return 0, 0
    where = _entry.decode(entry.value or b"")
    if isinstance(where, InObjectStore):
        object_store = await js.object_store(OBJECT_BUCKET)
        stored = (await object_store.get(where.name)).data or b""
    else:
        stored = where.record
    record = decompress(stored) if where.compressed else stored
    return _record.decode(record).covers.get(stream, 0), len(stored)


# The services -----------------------------------------------------------------------------------------


def spawn(settings: Settings, name: str, env: dict[str, str]) -> subprocess.Popen[bytes]:
    settings.log_dir.mkdir(parents=True, exist_ok=True)
    with settings.log_file(name).open("ab") as log:
        argv = [sys.executable, "-m", "trader", "service", "run", name]
        return subprocess.Popen(argv, stdout=log, stderr=subprocess.STDOUT, env=env)


def ready_url(settings: Settings, name: str, path: str = "/ready") -> str:
    port = getattr(settings.ports, REGISTRY[name].port_field)
    return f"http://{settings.bind_host}:{port}{path}"


async def wait_ready(
    settings: Settings, procs: dict[str, subprocess.Popen[bytes]], started: float, timeout_s: float
) -> dict[str, float]:
    """Seconds from ``started`` (perf_counter) until each service answered /ready, with its peak RSS
    read at that moment."""
    ready: dict[str, float] = {}
    async with httpx.AsyncClient(timeout=2) as client:
        while len(ready) < len(procs):
            for name, proc in procs.items():
                if name in ready:
                    continue
                if proc.poll() is not None:
                    raise RuntimeError(f"{name} exited while starting: see {settings.log_file(name)}")
                try:
                    body = (await client.get(ready_url(settings, name))).json()
                except (httpx.HTTPError, ValueError):
                    continue
                if body.get("ready"):
                    ready[name] = time.perf_counter() - started
            if time.perf_counter() - started > timeout_s:
                waiting = sorted(set(procs) - set(ready))
                raise RuntimeError(f"not ready within {timeout_s:.0f}s: {', '.join(waiting)}")
            await asyncio.sleep(READY_POLL_S)
    return ready


def start_seqs(health: Any) -> list[int]:
    """Every ``start_seq`` an intake shows in a service's /health (where it began reading)."""
    if isinstance(health, dict):
        found = [health["start_seq"]] if isinstance(health.get("start_seq"), int) else []
        for value in health.values():
            found += start_seqs(value)
        return found
    return []


async def health_of(settings: Settings, name: str) -> dict[str, Any]:
    async with httpx.AsyncClient(timeout=5) as client:
        try:
            body = (await client.get(ready_url(settings, name, "/health"))).json()
        except (httpx.HTTPError, ValueError):
            return {}
    return body if isinstance(body, dict) else {}


def kill(procs: Iterable[subprocess.Popen[bytes]]) -> None:
    for proc in procs:
        if proc.poll() is None:
            proc.send_signal(signal.SIGKILL)
            proc.wait()


@dataclass
class Restart:
    """One service's restart after SIGKILL."""

    ready_s: float
    peak_rss_mib: float | None
    start_seqs: list[int] = field(default_factory=list)


async def restart_alone(settings: Settings, name: str, env: dict[str, str], timeout_s: float) -> Restart:
    """``name`` started alone (the others down), timed to /ready; then stopped."""
    started = time.perf_counter()
    proc = spawn(settings, name, env)
    try:
        ready = await wait_ready(settings, {name: proc}, started, timeout_s)
        rss = peak_rss_mib(proc.pid)
        health = await health_of(settings, name)
    finally:
        stop_processes({name: proc})
    return Restart(round(ready[name], 2), None if rss is None else round(rss, 1), start_seqs(health))


# The benchmark ----------------------------------------------------------------------------------------


async def wait_for_snapshots(
    js: JetStreamContext, ends: dict[str, int], wait_s: float
) -> dict[str, tuple[int, int]]:
    """Until every snapshot covers its stream's end (or ``wait_s``): what each covers, and its size."""
    deadline = time.monotonic() + wait_s
    found = dict.fromkeys(SNAPSHOTS, (0, 0))
    while True:
        waiting = [key for key, stream in SNAPSHOTS.items() if found[key][0] < ends[stream]]
        for key in waiting:  # (a large snapshot is read whole: only those not there yet)
            found[key] = await snapshot_covers(js, key, SNAPSHOTS[key])
        if not waiting or time.monotonic() > deadline:
            return found
        await asyncio.sleep(SNAPSHOT_POLL_S)


async def one_size(
    settings: Settings,
    js: JetStreamContext,
    env: dict[str, str],
    *,
    orders: int,
    snapshot_wait_s: float,
    timeout_s: float,
) -> dict[str, Any]:
    """The history at ``orders``: first start, snapshots, SIGKILL, each restarted alone, all at once."""
    ends = await move_work_checkpoints(js)
    started = time.perf_counter()
    procs = {name: spawn(settings, name, env) for name in SERVICES}
    try:
        first = await wait_ready(settings, procs, started, timeout_s)
        first_rss = {name: peak_rss_mib(proc.pid) for name, proc in procs.items()}
        snapshots = await wait_for_snapshots(js, ends, snapshot_wait_s)
    finally:
        kill(procs.values())
    alone = {name: await restart_alone(settings, name, env, timeout_s) for name in SERVICES}
    started = time.perf_counter()
    procs = {name: spawn(settings, name, env) for name in SERVICES}
    try:
        together = await wait_ready(settings, procs, started, timeout_s)
        together_rss = {name: peak_rss_mib(proc.pid) for name, proc in procs.items()}
    finally:
        stop_processes(procs)
    return {
        "orders": orders,
        "stream_last_seq": ends,
        "snapshot_covers": {key: covers for key, (covers, _) in snapshots.items()},
        "snapshot_bytes": {key: size for key, (_, size) in snapshots.items()},
        "services": {
            name: {
                "first_start_s": round(first[name], 2),
                "first_start_rss_mib": _round(first_rss[name]),
                "restart_alone_s": alone[name].ready_s,
                "restart_alone_rss_mib": alone[name].peak_rss_mib,
                "replayed_from": alone[name].start_seqs,
                "restart_together_s": round(together[name], 2),
                "restart_together_rss_mib": _round(together_rss[name]),
            }
            for name in SERVICES
        },
        "all_ready_together_s": round(max(together.values()), 2),
    }


def _round(value: float | None) -> float | None:
    return None if value is None else round(value, 1)


def _check_stack(settings: Settings) -> None:
    state = read_state(settings.run_dir)
    if state is None or state.phase not in ("ready", "degraded"):
        raise RuntimeError("the stack is not running: start it with `trader up --detach --services ''` first")
    running = sorted(c["name"] for c in state.components if c["name"] in SERVICES)
    if running:
        raise RuntimeError(
            f"the stack runs {', '.join(running)}: the benchmark starts its own; "
            "run `trader up --detach --services ''` (servers only) on a data directory of its own"
        )


async def run_restart_bench(
    settings: Settings,
    *,
    sizes: list[int],
    spacing_ms: int = 1_000,
    snapshot_wait_s: float = 90.0,
    timeout_s: float = 600.0,
) -> dict[str, Any]:
    """The restart figures at each history size (orders), in turn."""
    _check_stack(settings)
    nc = await asyncio.wait_for(connect_nats(settings.effective_nats_url, "trader-bench-restart"), 10)
    assert nc is not None
    env = service_env("0.001", dict(os.environ))
    results = []
    try:
        js = nc.jetstream()
        await ensure_streams(js, settings)
        for orders in sizes:
            await clear_history(js)
            began = time.perf_counter()
            await write_history(js, orders, spacing_ms, f"{time.time_ns() // 1_000_000:x}")
            write_s = time.perf_counter() - began
            figures = await one_size(
                settings, js, env, orders=orders, snapshot_wait_s=snapshot_wait_s, timeout_s=timeout_s
            )
            figures["history_write_s"] = round(write_s, 1)
            results.append(figures)
    finally:
        await nc.close()
    return {"services": list(SERVICES), "spacing_ms": spacing_ms, "sizes": results}


def to_json(report: dict[str, Any]) -> bytes:
    return msgspec.json.format(msgspec.json.encode(report))
