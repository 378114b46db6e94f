"""`trader bench ingest`: the market-data pipeline driven at full speed on the running stack.

What it measures, on the stack that `trader up` started (nothing here is mocked):

- the publisher: ticks/s acknowledged by JetStream into ``MARKET_TICKS``;
- each consumer (``normalizer``, ``sink-ticks``): ticks/s it sustained, from the first publish to the
  moment its acknowledgement floor passed the last tick (it was caught up before). While it keeps up,
  this is bounded by the publisher's rate: compare the two;
- end-to-end lag per tick: from its publish acknowledgement to the consumer's acknowledgement of it.
  Both services acknowledge only after the work is durable (a Delta commit for sink-ticks; bars written
  to QuestDB and the checkpoint moved for normalizer), so this is publish-to-stored. The floor is
  sampled every ``sample_s``, which bounds the resolution;
- bar visibility: for each 1s bucket of the benchmark's ticks, from the bucket's end to the first poll of
  QuestDB (every ``sample_s``) that sees it as a closed bar: what "a closed 1s bar is queryable within
  2 s" means;
- each service's peak RSS (the kernel's high-water mark, ``VmHWM``).

The ticks come from the mock model with venue ``bench``, stamped at publish time so that none is late.
"""

from __future__ import annotations

import asyncio
import bisect
import os
import signal
import subprocess
import sys
import time
import uuid
from dataclasses import dataclass, field
from datetime import datetime
from pathlib import Path
from typing import Any

import httpx
import msgspec
from nats.js import JetStreamContext
from nats.js.errors import NotFoundError

from trader.bus.connection import connect_nats
from trader.bus.publish import MSG_ID, publish_acked
from trader.bus.streams import ensure_streams, tick_subject
from trader.config import Settings
from trader.marketdata.mock import TickGenerator
from trader.messages import encode
from trader.stack.state import read_state

CONSUMERS = ("normalizer", "sink-ticks")
STREAM = "MARKET_TICKS"


@dataclass
class Progress:
    """Samples of one consumer's acknowledgement floor: (monotonic time, stream sequence), with the CPU
    seconds its process had used by then (None when unknown)."""

    times: list[float] = field(default_factory=list)
    floors: list[int] = field(default_factory=list)
    cpu: list[float | None] = field(default_factory=list)

    def add(self, at: float, floor: int, cpu_s: float | None = None) -> None:
        if not self.floors or floor > self.floors[-1]:
            self.times.append(at)
            self.floors.append(floor)
            self.cpu.append(cpu_s)

    def cpu_at(self, seq: int) -> float | None:
        """The CPU seconds used when the floor first reached ``seq``."""
        i = bisect.bisect_left(self.floors, seq)
        return self.cpu[i] if i < len(self.floors) else None

    def reached(self, seq: int) -> float | None:
        """When the floor first reached ``seq``."""
        i = bisect.bisect_left(self.floors, seq)
        return self.times[i] if i < len(self.floors) else None


def percentile(values: list[float], q: float) -> float:
    """Nearest-rank percentile."""
    if not values:
        return float("nan")
    ordered = sorted(values)
    rank = max(0, min(len(ordered) - 1, round(q / 100 * len(ordered) + 0.5) - 1))
    return ordered[rank]


def peak_rss_mib(pid: int | None) -> float | None:
    if not pid:
        return None
    try:
        for line in Path(f"/proc/{pid}/status").read_text().splitlines():
            if line.startswith("VmHWM:"):
                return int(line.split()[1]) / 1024
    except OSError:
        return None
    return None


def cpu_seconds(pid: int | None) -> float | None:
    """User and system CPU time a process has used (``/proc/<pid>/stat``)."""
    if not pid:
        return None
    try:
        stat = Path(f"/proc/{pid}/stat").read_text()
    except OSError:
        return None
    fields = stat[stat.rindex(")") + 2 :].split()  # after the command name, which may hold spaces
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def _service_pids(settings: Settings) -> dict[str, int | None]:
    state = read_state(settings.run_dir)
    if state is None or state.phase != "ready":
        raise RuntimeError("the stack is not running: start it with `trader up --detach` first")
    return {c["name"]: c.get("pid") for c in state.components}


async def _sample(
    js: JetStreamContext,
    progress: dict[str, Progress],
    stop: asyncio.Event,
    every: float,
    pids: dict[str, int],
) -> None:
    while not stop.is_set():
        for name in progress:
            try:
                info = await js.consumer_info(STREAM, name)
            except NotFoundError:  # not created yet: the service is starting
                continue
            floor = info.ack_floor.stream_seq if info.ack_floor else 0
            progress[name].add(time.monotonic(), floor, cpu_seconds(pids.get(name)))
        await asyncio.sleep(every)


Batches = list[tuple[list[int], float]]  # (stream sequences, acknowledged at) per published batch


async def _watch_bars(url: str, stop: asyncio.Event, every: float, seen: dict[int, float]) -> None:
    """Record when each closed 1s bar of the benchmark first shows in QuestDB (wall clock, ms)."""
    sql = "select max(ts) from ohlcv_1s where venue = 'bench' and closed"
    async with httpx.AsyncClient(timeout=5) as client:
        while not stop.is_set():
            body = (await client.get(f"{url}/exec", params={"query": sql})).json()
            latest = (body.get("dataset") or [[None]])[0][0]
            if latest is not None:
                start = int(datetime.fromisoformat(latest.replace("Z", "+00:00")).timestamp() * 1000)
                seen.setdefault(start, time.time() * 1000)
            await asyncio.sleep(every)


def _visibility(seen: dict[int, float], flowing_until_ms: float) -> dict[str, Any]:
    """Seconds from each bar's end to its first sighting, for the bars that ended while ticks flowed (a
    quiet symbol's last bar closes on the clock, after the lateness window). The first bar seen may
    predate the run: dropped."""
    delays = [
        (at - (start + 1000)) / 1000
        for start, at in sorted(seen.items())[1:]
        if start + 1000 <= flowing_until_ms
    ]
    return {
        "bars": len(delays),
        "p50_s": round(percentile(delays, 50), 3),
        "p99_s": round(percentile(delays, 99), 3),
        "max_s": round(max(delays), 3) if delays else None,
    }


async def _publish(js: JetStreamContext, ticks: int, symbols: int, batch: int) -> Batches:
    """Publish ``ticks`` ticks in pipelined batches; return (stream sequences, acked at) per batch."""
    names = [f"BENCH{i}USDT" for i in range(symbols)]
    generator = TickGenerator(names, venue="bench", seed=1, first_trade_id=time.time_ns())
    run = uuid.uuid4().hex[:8]
    batches = []
    sent = 0
    while sent < ticks:
        now_ms = time.time_ns() // 1_000_000
        futures = []
        for _ in range(min(batch, ticks - sent)):
            tick = generator.next_tick(now_ms)
            headers = {MSG_ID: f"bench:{run}:{tick.symbol}:{tick.trade_id}"}
            subject = tick_subject(tick.venue, tick.symbol)
            futures.append(await publish_acked(js, subject, encode(tick), headers))
        acks = await asyncio.wait_for(asyncio.gather(*futures), timeout=60)
        batches.append(([ack.seq for ack in acks], time.monotonic()))
        sent += len(futures)
    return batches


def _consumer_figures(progress: Progress, batches: Batches, began: float) -> dict[str, Any]:
    """``began``: when publishing started. The consumer was caught up before, so its work on the
    benchmark's ticks runs from then until its floor passes the last one."""
    done = progress.reached(batches[-1][0][-1])
    lags = [
        max(0.0, reached - acked)
        for seqs, acked in batches
        for seq in seqs
        if (reached := progress.reached(seq)) is not None
    ]
    count = sum(len(seqs) for seqs, _ in batches)
    elapsed = done - began if done is not None else None
    return {
        "ticks": count,
        "finished": done is not None,
        "ticks_per_s": round(count / elapsed) if elapsed else None,
        "lag_p50_s": round(percentile(lags, 50), 3),
        "lag_p99_s": round(percentile(lags, 99), 3),
        "lag_max_s": round(max(lags), 3) if lags else None,
    }


def _drain_figures(progress: Progress, first_seq: int, last_seq: int) -> dict[str, Any]:
    """The consumer's rate through the backlog, from its consumer's creation to the backlog's end. Only
    the backlog's ticks are counted: a consumer that also replays older messages is under-rated."""
    done = progress.reached(last_seq)
    if done is None or len(progress.floors) < 2:
        return {"finished": False, "ticks_per_s": None}
    counted = last_seq - max(progress.floors[0], first_seq - 1)
    elapsed = done - progress.times[0]
    cpu_start, cpu_end = progress.cpu[0], progress.cpu_at(last_seq)
    # CPU time per tick does not depend on what else the machine runs, the rate does: both are given.
    cpu_us = None if cpu_start is None or cpu_end is None else (cpu_end - cpu_start) / counted * 1e6
    return {
        "finished": True,
        "ticks": counted,
        "seconds": round(elapsed, 2),
        "ticks_per_s": round(counted / elapsed),
        "cpu_us_per_tick": None if cpu_us is None else round(cpu_us, 2),
        "cpu_share": None if cpu_us is None else round(cpu_us * counted / 1e6 / elapsed, 2),
    }


def _spawn_consumers(settings: Settings, names: tuple[str, ...]) -> dict[str, subprocess.Popen[bytes]]:
    procs = {}
    for name in names:
        log = settings.log_file(name).open("ab")
        argv = [sys.executable, "-m", "trader", "service", "run", name]
        procs[name] = subprocess.Popen(argv, stdout=log, stderr=subprocess.STDOUT)
    return procs


def stop_processes(procs: dict[str, subprocess.Popen[bytes]]) -> None:
    """SIGTERM to the services a benchmark started, and SIGKILL to those still up 30 s later."""
    for proc in procs.values():
        if proc.poll() is None:
            proc.send_signal(signal.SIGTERM)
    for proc in procs.values():
        try:
            proc.wait(timeout=30)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait()


async def _wait_until(progress: dict[str, Progress], seq: int, every: float, timeout_s: float) -> None:
    deadline = time.monotonic() + timeout_s
    while any(p.reached(seq) is None for p in progress.values()) and time.monotonic() < deadline:
        await asyncio.sleep(every)


async def run_ingest_bench(
    settings: Settings,
    *,
    ticks: int,
    backlog: int,
    symbols: int,
    batch: int,
    consumers: tuple[str, ...] = CONSUMERS,
    sample_s: float = 0.05,
    timeout_s: float = 600,
) -> dict[str, Any]:
    """Two phases. Drain: ``backlog`` ticks are published with no consumer running, then the consumers
    start and their rate through the backlog is what they sustain when the bus is not the limit. Live:
    with the consumers caught up, ``ticks`` more are published at full speed: lag and bar visibility."""
    pids = _service_pids(settings)
    running = [c for c in CONSUMERS if c in pids]
    unknown = set(consumers) - set(CONSUMERS)
    if unknown:
        raise RuntimeError(f"not a consumer of this benchmark: {', '.join(sorted(unknown))}")
    if running:
        raise RuntimeError(
            f"the stack runs {', '.join(running)}: the benchmark starts its own; "
            "run `trader up --detach --services ''` (servers only) first"
        )
    nc = await asyncio.wait_for(connect_nats(settings.effective_nats_url, "trader-bench"), timeout=10)
    assert nc is not None
    js = nc.jetstream()
    await ensure_streams(js, settings)
    drain_progress = {name: Progress() for name in consumers}
    progress = {name: Progress() for name in consumers}
    stop_drain, stop = asyncio.Event(), asyncio.Event()
    seen: dict[int, float] = {}
    procs: dict[str, subprocess.Popen[bytes]] = {}
    tasks = []
    try:
        backlog_batches = await _publish(js, backlog, symbols, batch)
        load_before = os.getloadavg()
        servers_before = _cpu_now(pids)
        procs = _spawn_consumers(settings, consumers)
        consumer_pids = {name: proc.pid for name, proc in procs.items()}
        tasks.append(asyncio.create_task(_sample(js, drain_progress, stop_drain, sample_s, consumer_pids)))
        await _wait_until(drain_progress, backlog_batches[-1][0][-1], sample_s, timeout_s)
        servers_share = _cpu_share_since(servers_before, pids)
        stop_drain.set()
        tasks.append(asyncio.create_task(_sample(js, progress, stop, sample_s, consumer_pids)))
        tasks.append(asyncio.create_task(_watch_bars(settings.questdb_http_url, stop, sample_s * 2, seen)))
        began = time.monotonic()
        batches = await _publish(js, ticks, symbols, batch)
        published_s = time.monotonic() - began
        flowing_until_ms = time.time() * 1000
        await _wait_until(progress, batches[-1][0][-1], sample_s, timeout_s)
        rss = {name: peak_rss_mib(proc.pid) for name, proc in procs.items()}
        rss.update({name: peak_rss_mib(pid) for name, pid in pids.items()})
    finally:
        stop_drain.set()
        stop.set()
        await asyncio.gather(*tasks, return_exceptions=True)
        await nc.close()
        stop_processes(procs)
    first_backlog, last_backlog = backlog_batches[0][0][0], backlog_batches[-1][0][-1]
    return {
        "consumers": list(consumers),
        "backlog": backlog,
        "ticks": ticks,
        "symbols": symbols,
        "publisher_ticks_per_s": round(ticks / published_s),
        "drain": {
            name: _drain_figures(drain_progress[name], first_backlog, last_backlog) for name in consumers
        },
        # Where the rest of the two cores went while the consumers drained.
        "drain_servers_cpu_share": servers_share,
        "live": {name: _consumer_figures(progress[name], batches, began) for name in consumers},
        "bar_visibility": _visibility(seen, flowing_until_ms),
        "peak_rss_mib": {name: _round(value) for name, value in rss.items()},
        # Other work on the machine slows the consumers down: the load average says how much there was.
        "machine": {
            "cpus": os.cpu_count(),
            "load_avg_1m_before": round(load_before[0], 2),
            "load_avg_1m_after": round(os.getloadavg()[0], 2),
        },
    }


def _cpu_now(pids: dict[str, int | None]) -> tuple[float, dict[str, float | None]]:
    return time.monotonic(), {name: cpu_seconds(pid) for name, pid in pids.items()}


def _cpu_share_since(
    before: tuple[float, dict[str, float | None]], pids: dict[str, int | None]
) -> dict[str, float]:
    """The share of a core each process used since ``before``."""
    began, used_before = before
    now, used_now = _cpu_now(pids)
    return {
        name: round((used - start) / (now - began), 2)
        for name, used in used_now.items()
        if used is not None and (start := used_before.get(name)) is not None
    }


def _round(value: float | None) -> float | None:
    return None if value is None else round(value, 1)


def to_json(report: dict[str, Any]) -> bytes:
    return msgspec.json.format(msgspec.json.encode(report))
