"""``trader bench features``: how fast feature-eng turns closed bars into features, for the default feature
set (or the one in the settings).

Two figures, each with CPU microseconds per bar and peak RSS:

- the engine in this process (no stack needed): bars decoded from their JSON, the feature set
  updated, the ``Features`` message encoded, over ``series`` (venue, symbol) series;
- the service (needs the servers: ``trader up --detach --services ''``): a backlog of bars published on
  BARS under a venue of the run's own, then feature-eng started by the benchmark; its rate through
  the backlog, where it reads, computes, publishes every bar's features (acknowledged) and writes
  its rows to QuestDB, measured between 10 % and 90 % of the backlog from its /health, its CPU time
  from /proc. The features published are counted: one per bar.
"""

from __future__ import annotations

import asyncio
import random
import resource
import subprocess
import sys
import time
import uuid
from collections.abc import Iterator
from decimal import Decimal
from typing import Any

import httpx
import msgspec

from trader.analytics.features.engine import FeatureEngine
from trader.bench.ingest import cpu_seconds, peak_rss_mib, stop_processes
from trader.bus.connection import connect_nats
from trader.bus.publish import Outgoing, publish_batch
from trader.bus.streams import bar_subject, ensure_streams
from trader.config import Settings
from trader.messages import Bar, encode
from trader.stack.state import read_state

SERVICE = "feature-eng"


def make_bars(count: int, series: int, venue: str, timeframe: str, seed: int = 1) -> Iterator[Bar]:
    """``count`` closed bars over ``series`` symbols, a random walk each, in the order a feed gives them."""
    rng = random.Random(seed)
    prices = [Decimal(rng.randrange(100, 100_000)) for _ in range(series)]
    for i in range(count):
        n = i % series
        open_ = prices[n]
        close = max(Decimal(1), (open_ * Decimal(str(1 + rng.gauss(0, 0.002)))).quantize(Decimal("0.01")))
        prices[n] = close
        yield (
            Bar(
                venue=venue,
                symbol=f"B{n}USDT",
                timeframe=timeframe,
                start=(i // series) * 60_000,
                open=open_,
                high=max(open_, close) + 1,
                low=min(open_, close) - Decimal("0.5"),
                close=close,
                volume=Decimal(rng.randrange(1, 10**6)) / 1000,
                vwap=close,
                trades=rng.randrange(1, 100),
            )
        )


def engine_figures(settings: Settings, bars: int, series: int) -> dict[str, Any]:
    """The engine alone, with the decoding of each bar and the encoding of its features."""
    timeframe = settings.feature_eng.timeframes[0]
    payloads = [encode(b) for b in make_bars(bars, series, "bench", timeframe)]
    decode = msgspec.json.Decoder(Bar).decode
    engine = FeatureEngine(settings.feature_eng)
    cpu, wall = time.process_time(), time.perf_counter()
    for data in payloads:
        features = engine.on_bar(decode(data))
        assert features is not None
        encode(features)
    wall, cpu = time.perf_counter() - wall, time.process_time() - cpu
    return {
        "bars": bars,
        "series": series,
        "columns": len(engine.columns),
        "bars_per_s": round(bars / wall),
        "cpu_us_per_bar": round(cpu / bars * 1e6, 2),
        # The whole process: the bars' JSON held for the run (a few hundred bytes each) and the engine.
        "peak_rss_mib": round(resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024, 1),
    }


async def _publish_backlog(settings: Settings, bars: list[Bar], batch: int) -> tuple[int, int]:
    """The bars on BARS; the first and last stream sequence they took."""
    nc = await connect_nats(settings.effective_nats_url, "bench-features")
    if nc is None:
        raise RuntimeError("NATS does not answer")
    js = nc.jetstream()
    await ensure_streams(js, settings)
    first = (await js.stream_info("BARS")).state.last_seq + 1
    for i in range(0, len(bars), batch):
        items = [
            Outgoing(
                bar_subject(b.timeframe, b.venue, b.symbol),
                encode(b),
                msg_id=f"{b.venue}:{b.symbol}:{b.timeframe}:{b.start}:{b.trades}",
            )
            for b in bars[i : i + batch]
        ]
        result = await publish_batch(js, items)
        if result.failed:
            raise RuntimeError(f"{len(result.failed)} bars were not stored")
    last = (await js.stream_info("BARS")).state.last_seq
    await nc.close()
    return first, last


async def _features_published(settings: Settings, venue: str) -> int:
    nc = await connect_nats(settings.effective_nats_url, "bench-features")
    assert nc is not None
    info = await nc.jetstream().stream_info("FEATURES", subjects_filter=f"market.feature.*.{venue}.>")
    await nc.close()
    return sum((info.state.subjects or {}).values())


async def _follow(
    port: int, pid: int, first: int, last: int, timeout_s: float
) -> list[tuple[float, int, float]]:
    """(time, covered sequence, CPU seconds) of the service, until it has covered ``last``."""
    samples: list[tuple[float, int, float]] = []
    deadline = time.monotonic() + timeout_s
    async with httpx.AsyncClient() as client:
        while time.monotonic() < deadline:
            try:
                health = (await client.get(f"http://127.0.0.1:{port}/health", timeout=2)).json()
                covered = health["intake"]["covered_seq"]
            except (httpx.HTTPError, KeyError, ValueError):
                covered = 0  # starting
            samples.append((time.monotonic(), covered, cpu_seconds(pid) or 0.0))
            if covered >= last:
                return samples
            await asyncio.sleep(0.1)
    raise RuntimeError(f"{SERVICE} did not get through the backlog in {timeout_s:.0f} s")


def _between(samples: list[tuple[float, int, float]], first: int, last: int) -> dict[str, Any]:
    """Rate and CPU per bar from 10 % to 90 % of the backlog (start-up and the tail left out)."""
    low, high = first + (last - first) // 10, first + 9 * (last - first) // 10
    a = next(s for s in samples if s[1] >= low)
    b = next(s for s in samples if s[1] >= high)
    bars = b[1] - a[1]
    if bars <= 0 or b[0] <= a[0]:
        raise RuntimeError("too few samples: give more bars")
    return {"bars_per_s": round(bars / (b[0] - a[0])), "cpu_us_per_bar": round((b[2] - a[2]) / bars * 1e6, 2)}


def _spawn(settings: Settings) -> subprocess.Popen[bytes]:
    log = settings.log_file(SERVICE).open("ab")
    argv = [sys.executable, "-m", "trader", "service", "run", SERVICE]
    return subprocess.Popen(argv, stdout=log, stderr=subprocess.STDOUT)


async def service_figures(settings: Settings, bars: int, series: int, batch: int) -> dict[str, Any]:
    state = read_state(settings.run_dir)
    if state is None or state.phase not in ("ready", "degraded"):
        raise RuntimeError("the servers are not running: start them with `trader up --detach --services ''`")
    if any(c["name"] == SERVICE for c in state.components):
        raise RuntimeError(f"{SERVICE} runs in the stack: start it with `trader up --detach --services ''`")
    venue = f"bench-{uuid.uuid4().hex[:8]}"
    timeframe = settings.feature_eng.timeframes[0]
    backlog = list(make_bars(bars, series, venue, timeframe))
    first, last = await _publish_backlog(settings, backlog, batch)
    proc = _spawn(settings)
    try:
        samples = await _follow(settings.ports.feature_eng, proc.pid, first, last, timeout_s=600)
        figures = _between(samples, first, last)
        figures["peak_rss_mib"] = round(peak_rss_mib(proc.pid) or 0.0, 1)
    finally:
        stop_processes({SERVICE: proc})
    figures |= {
        "bars": bars,
        "series": series,
        "features_published": await _features_published(settings, venue),
    }
    return figures


async def run_features_bench(
    settings: Settings, bars: int, series: int, batch: int, engine_only: bool
) -> dict[str, Any]:
    report: dict[str, Any] = {"engine": engine_figures(settings, bars, series)}
    if not engine_only:
        report["service"] = await service_figures(settings, bars, series, batch)
    return report
