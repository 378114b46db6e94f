"""`trader bench ohlcv-agg`: ohlcv-agg fed the 1m bars of many symbols at full speed.

On the servers of `trader up --detach --services ''` (the benchmark starts ohlcv-agg itself):

- ``minutes`` minutes of 1m bars of ``symbols`` symbols (venue ``bench-<run>``) are published as fast as
  JetStream takes them, minute after minute, each minute's bars of every symbol together, as the
  normalizer publishes them. Their minutes are of the future (the hours after the next midnight), so
  that the wall clock closes nothing: bars close when their last minute arrives, as when live;
- ohlcv-agg's rate: bars/s from the first publish until its intake's acknowledgement floor passes the
  last bar (it acknowledges once a bar is in its state), and until QuestDB holds every closed bar of
  the run's last bucket of the smallest timeframe (stored; the bus is published at the same flush);
- its CPU time per bar (from ``/proc``: independent of the other work on the machine, unlike the rate)
  and its peak RSS (``VmHWM``);
- whether it keeps up with a live market: ``symbols`` bars a minute is ``symbols / 60`` bars/s; the
  headroom is the sustained rate over that.
"""

from __future__ import annotations

import asyncio
import os
import subprocess
import time
import uuid
from decimal import Decimal
from typing import Any

import httpx
from nats.js import JetStreamContext
from nats.js.errors import NotFoundError

from trader.analytics.timeframes import MINUTE_MS
from trader.bench.ingest import (
    Progress,
    _service_pids,
    _spawn_consumers,
    cpu_seconds,
    peak_rss_mib,
    percentile,
    stop_processes,
)
from trader.bus.connection import connect_nats
from trader.bus.publish import MSG_ID, publish_acked
from trader.bus.streams import bar_subject, ensure_streams
from trader.config import Settings
from trader.marketdata.bars import timeframe_ms
from trader.messages import Bar, encode

SERVICE = "ohlcv-agg"
STREAM = "BARS"
DAY_MS = 86_400_000


def minute_bars(symbols: list[str], start: int, n: int, venue: str = "bench") -> list[Bar]:
    """One 1m bar per symbol for the minute at ``start``; prices walk with ``n`` (deterministic)."""
    out = []
    for i, symbol in enumerate(symbols):
        base = Decimal(1000 + (i * 37 + n * 11) % 500) + Decimal(n % 97) / 100
        volume = Decimal(1 + (i + n) % 9) + Decimal("0.12345678")
        notional = volume * (base + Decimal("0.25"))
        out.append(
            Bar(
                venue=venue,
                symbol=symbol,
                timeframe="1m",
                start=start,
                open=base,
                high=base + 1,
                low=base - 1,
                close=base + Decimal("0.5"),
                volume=volume,
                vwap=base + Decimal("0.25"),
                trades=1 + (i + n) % 40,
                notional=notional,
            )
        )
    return out


async def _publish(
    js: JetStreamContext, venue: str, symbols: list[str], first_minute: int, minutes: int
) -> list[tuple[int, float]]:
    """Every minute's bars, pipelined; (last stream sequence, acknowledged at) per minute."""
    acked = []
    for n in range(minutes):
        start = first_minute + n * MINUTE_MS
        futures = []
        for bar in minute_bars(symbols, start, n, venue):
            headers = {MSG_ID: f"{venue}:{bar.symbol}:{bar.start}"}
            subject = bar_subject("1m", bar.venue, bar.symbol)
            futures.append(await publish_acked(js, subject, encode(bar), headers))
        acks = await asyncio.wait_for(asyncio.gather(*futures), timeout=120)
        acked.append((max(a.seq for a in acks), time.monotonic()))
    return acked


async def _sample(js: JetStreamContext, progress: Progress, stop: asyncio.Event, pid: int) -> None:
    while not stop.is_set():
        try:
            info = await js.consumer_info(STREAM, SERVICE)
            floor = info.ack_floor.stream_seq if info.ack_floor else 0
            progress.add(time.monotonic(), floor, cpu_seconds(pid))
        except NotFoundError:
            pass  # not created yet: the service is starting
        await asyncio.sleep(0.05)


async def _wait_ready(settings: Settings, proc: subprocess.Popen[bytes], timeout_s: float) -> None:
    url = f"http://127.0.0.1:{settings.ports.ohlcv_agg}/ready"
    deadline = time.monotonic() + timeout_s
    async with httpx.AsyncClient(timeout=2) as client:
        while time.monotonic() < deadline:
            if proc.poll() is not None:
                raise RuntimeError(f"ohlcv-agg exited {proc.returncode}: see its log")
            try:
                if (await client.get(url)).status_code == 200:
                    return
            except httpx.TransportError:
                pass
            await asyncio.sleep(0.2)
    raise RuntimeError("ohlcv-agg did not become ready")


async def _wait_stored(
    settings: Settings, venue: str, timeframe: str, start: int, symbols: int, timeout_s: float
) -> float | None:
    """When QuestDB first holds the closed bars of every symbol for the bucket at ``start``."""
    sql = f"select count() from ohlcv_{timeframe} where venue = '{venue}' and closed and ts = {start * 1000}"
    deadline = time.monotonic() + timeout_s
    async with httpx.AsyncClient(timeout=10) as client:
        while time.monotonic() < deadline:
            body = (await client.get(f"{settings.questdb_http_url}/exec", params={"query": sql})).json()
            if (body.get("dataset") or [[0]])[0][0] >= symbols:
                return time.monotonic()
            await asyncio.sleep(0.1)
    return None


async def run_ohlcv_agg_bench(
    settings: Settings, *, symbols: int, minutes: int, timeout_s: float = 600
) -> dict[str, Any]:
    pids = _service_pids(settings)
    if SERVICE in pids:
        raise RuntimeError(
            "the stack runs ohlcv-agg: the benchmark starts its own; run `trader up --detach --services ''`"
        )
    sizes = sorted(timeframe_ms(tf) for tf in settings.ohlcv_agg.timeframes)
    smallest_tf = min(settings.ohlcv_agg.timeframes, key=timeframe_ms)
    if minutes * MINUTE_MS < sizes[0]:
        raise RuntimeError(f"--minutes: at least {sizes[0] // MINUTE_MS}, for a {smallest_tf} bar to close")
    now = time.time_ns() // 1_000_000
    first_minute = now - now % DAY_MS + DAY_MS  # the next midnight: the wall clock closes nothing
    last_closed = first_minute + (minutes * MINUTE_MS // sizes[0] - 1) * sizes[0]
    names = [f"B{i}USDT" for i in range(symbols)]
    venue = f"bench-{uuid.uuid4().hex[:6]}"  # a run of its own: no bar of an earlier run is amended
    nc = await asyncio.wait_for(connect_nats(settings.effective_nats_url, "trader-bench"), timeout=10)
    assert nc is not None
    js = nc.jetstream()
    await ensure_streams(js, settings)
    proc = _spawn_consumers(settings, (SERVICE,))[SERVICE]
    progress, stop = Progress(), asyncio.Event()
    sampler = None
    try:
        await _wait_ready(settings, proc, 120)
        sampler = asyncio.create_task(_sample(js, progress, stop, proc.pid))
        await asyncio.sleep(0.3)
        cpu_before = cpu_seconds(proc.pid)
        began = time.monotonic()
        acked = await _publish(js, venue, names, first_minute, minutes)
        published_s = time.monotonic() - began
        last_seq = acked[-1][0]
        deadline = time.monotonic() + timeout_s
        while progress.reached(last_seq) is None and time.monotonic() < deadline:
            await asyncio.sleep(0.05)
        consumed_at = progress.reached(last_seq)
        cpu_consumed = progress.cpu_at(last_seq)
        stored_at = await _wait_stored(settings, venue, smallest_tf, last_closed, symbols, timeout_s)
        cpu_after = cpu_seconds(proc.pid)
        rss = peak_rss_mib(proc.pid)
    finally:
        stop.set()
        if sampler is not None:
            await asyncio.gather(sampler, return_exceptions=True)
        await nc.close()
        stop_processes({SERVICE: proc})
    bars = symbols * minutes
    lags = [reached - at for seq, at in acked if (reached := progress.reached(seq)) is not None]
    consumed_s = None if consumed_at is None else consumed_at - began
    stored_s = None if stored_at is None else stored_at - began
    cpu_us = None
    if cpu_before is not None and cpu_after is not None:
        cpu_us = round((cpu_after - cpu_before) / bars * 1e6, 1)
    rate = round(bars / stored_s) if stored_s else None
    return {
        "symbols": symbols,
        "minutes": minutes,
        "bars": bars,
        "timeframes": settings.ohlcv_agg.timeframes,
        "publisher_bars_per_s": round(bars / published_s),
        "consumed_bars_per_s": round(bars / consumed_s) if consumed_s else None,
        "stored_bars_per_s": rate,
        "stored_after_s": None if stored_s is None else round(stored_s, 2),
        "minute_lag_p50_s": round(percentile(lags, 50), 3) if lags else None,
        "minute_lag_max_s": round(max(lags), 3) if lags else None,
        "cpu_us_per_bar": cpu_us,
        "cpu_us_per_bar_consumed": None
        if cpu_before is None or cpu_consumed is None
        else round((cpu_consumed - cpu_before) / bars * 1e6, 1),
        "live_need_bars_per_s": round(symbols / 60, 1),
        "headroom": None if rate is None else round(rate / (symbols / 60), 1),
        "peak_rss_mib": None if rss is None else round(rss, 1),
        "machine": {"cpus": os.cpu_count(), "load_avg_1m_after": round(os.getloadavg()[0], 2)},
    }


def run_engine_bench(*, symbols: int, minutes: int, timeframes: list[str]) -> dict[str, Any]:
    """The engine alone, in this process (no servers, no bus): each minute's bars added, then what to
    store and publish taken, as the service does at each flush; and one snapshot encoded at the end."""
    import resource

    import msgspec

    from trader.analytics.timeframes import HigherTimeframes, TimeframeConfig

    engine = HigherTimeframes(TimeframeConfig(tuple(timeframes)))
    names = [f"B{i}USDT" for i in range(symbols)]
    now = time.time_ns() // 1_000_000
    first_minute = now - now % DAY_MS + DAY_MS
    cpu = wall = 0.0
    written = published = 0
    for n in range(minutes):
        bars = minute_bars(names, first_minute + n * MINUTE_MS, n)  # made outside the measured time
        cpu_0, wall_0 = time.process_time(), time.perf_counter()
        for bar in bars:
            engine.add(bar)
        out = engine.take()
        cpu += time.process_time() - cpu_0
        wall += time.perf_counter() - wall_0
        written += len(out.write)
        published += len(out.publish)
    started = time.perf_counter()
    snapshot = msgspec.msgpack.encode(engine.state())
    snapshot_s = time.perf_counter() - started
    count = symbols * minutes
    return {
        "symbols": symbols,
        "minutes": minutes,
        "bars": count,
        "timeframes": timeframes,
        "bars_per_s": round(count / wall),
        "cpu_us_per_bar": round(cpu / count * 1e6, 1),
        "rows_written": written,
        "bars_published": published,
        "open_bars": engine.open_buckets(),
        "snapshot_mib": round(len(snapshot) / 2**20, 1),
        "snapshot_encode_ms": round(snapshot_s * 1000, 1),
        "peak_rss_mib": round(resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024, 1),
        "live_need_bars_per_s": round(symbols / 60, 1),
    }
