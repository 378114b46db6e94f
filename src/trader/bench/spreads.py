"""`trader bench spreads`: spread-analyzer driven at full speed on the running servers.

The benchmark starts its own spread-analyzer (``trader service run spread-analyzer``) on the servers of
`trader up --detach --services ''` and feeds it ticks of the mock model on three venues (``bench``,
``bench-b``, ``bench-c``: each main tick followed by one per other venue, every one with a bid and an
ask, so every tick is a quote), stamped at publish time. Two phases, as in `trader bench ingest`:

- drain: ``backlog`` quotes are published before the service starts; its rate through them (from its
  consumer's creation until its acknowledgement floor passes the last) and its CPU time per quote (from
  ``/proc``: what does not depend on what else the machine runs);
- live: with the service caught up, ``quotes`` more are published as fast as the publisher goes (or at
  ``rate``); the lag of each quote is from its publish acknowledgement to the service's acknowledgement
  of it, which comes after the batch's snapshots and events are stored on the bus. The floor is sampled
  every ``sample_s``, which bounds the resolution.

And the service's peak RSS (``VmHWM``).
"""

from __future__ import annotations

import asyncio
import os
import time
import uuid
from typing import Any

from nats.js import JetStreamContext

from trader.bench.ingest import (
    Batches,
    Progress,
    _consumer_figures,
    _drain_figures,
    _round,
    _sample,
    _service_pids,
    _spawn_consumers,
    _wait_until,
    peak_rss_mib,
    stop_processes,
)
from trader.bus.connection import connect_nats
from trader.bus.publish import MSG_ID, publish_acked
from trader.bus.streams import ensure_streams, tick_subject
from trader.config import Settings
from trader.marketdata.mock import MockVenueSettings, MultiVenueTicks, TickGenerator
from trader.messages import encode

SERVICE = "spread-analyzer"
VENUES = {
    "bench-b": MockVenueSettings(noise_bps=3.0, latency_ms=5),
    "bench-c": MockVenueSettings(noise_bps=3.0, latency_ms=20),
}


def _generator(symbols: int) -> MultiVenueTicks:
    names = [f"BENCH{i}USDT" for i in range(symbols)]
    main = TickGenerator(names, venue="bench", seed=1, first_trade_id=time.time_ns())
    return MultiVenueTicks(main, VENUES, seed=1, first_trade_id=time.time_ns())


async def _publish(
    js: JetStreamContext, generator: MultiVenueTicks, quotes: int, batch: int, rate: float | None
) -> Batches:
    """Publish ``quotes`` quotes in pipelined batches (paced to ``rate`` a second when given)."""
    run = uuid.uuid4().hex[:8]
    batches: Batches = []
    sent = 0
    began = time.monotonic()
    while sent < quotes:
        if rate:
            ahead = sent / rate - (time.monotonic() - began)
            if ahead > 0:
                await asyncio.sleep(ahead)
        now_ms = time.time_ns() // 1_000_000
        futures: list[asyncio.Future[Any]] = []
        while len(futures) < min(batch, quotes - sent):
            for tick in generator.next_ticks(now_ms):
                headers = {MSG_ID: f"bench:{run}:{tick.venue}:{tick.symbol}:{tick.trade_id}"}
                subject = tick_subject(tick.venue, tick.symbol)
                futures.append(await publish_acked(js, subject, encode(tick), headers))
        acks = await asyncio.wait_for(asyncio.gather(*futures), timeout=60)
        batches.append(([ack.seq for ack in acks], time.monotonic()))
        sent += len(futures)
    return batches


async def run_spreads_bench(
    settings: Settings,
    *,
    quotes: int,
    backlog: int,
    symbols: int,
    batch: int,
    rate: float | None = None,
    sample_s: float = 0.01,
    timeout_s: float = 600,
) -> dict[str, Any]:
    pids = _service_pids(settings)
    if SERVICE in pids:
        raise RuntimeError(
            f"the stack runs {SERVICE}: the benchmark starts its own; "
            "run `trader up --detach --services ''` (servers only) first"
        )
    nc = await asyncio.wait_for(connect_nats(settings.effective_nats_url, "trader-bench"), timeout=10)
    assert nc is not None
    js = nc.jetstream()
    await ensure_streams(js, settings)
    generator = _generator(symbols)
    drain, live = Progress(), Progress()
    stop_drain, stop = asyncio.Event(), asyncio.Event()
    procs = {}
    tasks = []
    try:
        backlog_batches = await _publish(js, generator, backlog, batch, None)
        load_before = os.getloadavg()
        procs = _spawn_consumers(settings, (SERVICE,))
        pid = {SERVICE: procs[SERVICE].pid}
        tasks.append(asyncio.create_task(_sample(js, {SERVICE: drain}, stop_drain, sample_s, pid)))
        await _wait_until({SERVICE: drain}, backlog_batches[-1][0][-1], sample_s, timeout_s)
        stop_drain.set()
        await asyncio.sleep(1.0)  # caught up: the service goes live (its start-up outputs published)
        tasks.append(asyncio.create_task(_sample(js, {SERVICE: live}, stop, sample_s, pid)))
        began = time.monotonic()
        batches = await _publish(js, generator, quotes, batch, rate)
        published_s = time.monotonic() - began
        await _wait_until({SERVICE: live}, batches[-1][0][-1], sample_s, timeout_s)
        rss = peak_rss_mib(procs[SERVICE].pid)
    finally:
        stop_drain.set()
        stop.set()
        await asyncio.gather(*tasks, return_exceptions=True)
        await nc.close()
        stop_processes(procs)
    first_backlog, last_backlog = backlog_batches[0][0][0], backlog_batches[-1][0][-1]
    drained = _drain_figures(drain, first_backlog, last_backlog)
    return {
        "backlog": backlog,
        "quotes": quotes,
        "symbols": symbols,
        "venues": 1 + len(VENUES),
        "publisher_quotes_per_s": round(quotes / published_s),
        "drain": {
            "quotes_per_s": drained["ticks_per_s"],
            "seconds": drained.get("seconds"),
            "cpu_us_per_quote": drained.get("cpu_us_per_tick"),
            "cpu_share": drained.get("cpu_share"),
        },
        "live": {k.replace("ticks", "quotes"): v for k, v in _consumer_figures(live, batches, began).items()},
        "peak_rss_mib": _round(rss),
        "machine": {
            "cpus": os.cpu_count(),
            "load_avg_1m_before": round(load_before[0], 2),
            "load_avg_1m_after": round(os.getloadavg()[0], 2),
        },
    }
