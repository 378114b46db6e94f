"""spread-analyzer on the real servers: ticks of three mock venues in, spreads on the bus and in QuestDB,
and a SIGKILL in the middle of the feed changes nothing: every snapshot, event and row the ticks make
(computed here by the engine alone over the same ticks, in stream order) is there once, none doubled."""

from __future__ import annotations

import asyncio
import os
import signal
import time
from collections.abc import Iterator
from pathlib import Path

import httpx
import msgspec
import pytest

from tests.stack_helpers import Stack
from trader.analytics.spreads import SpreadEngine
from trader.bus.connection import connect_nats
from trader.bus.publish import publish_acked
from trader.marketdata.mock import MockVenueSettings, MultiVenueTicks, TickGenerator
from trader.messages import MarketTick, SpreadOpportunity, SpreadSnapshot, encode
from trader.services.spread_analyzer import engine_config

pytestmark = pytest.mark.integration

SYMBOLS = ["BTCUSDT", "ETHUSDT"]
STEPS = 6_000  # main-venue ticks; each followed by one on mock-b and mock-c
T0 = 1_764_720_000_000


@pytest.fixture(scope="module")
def stack(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Stack]:
    stack = Stack.create(
        Path(tmp_path_factory.mktemp("spreads")),
        TRADER_SUPERVISOR__RESTART_BACKOFF_INITIAL_S="0.2",
        TRADER_SPREAD_ANALYZER__FLUSH_INTERVAL_S="0.2",
    )
    stack.trader("up", "--detach", "--services", "spread-analyzer", check=True)
    try:
        yield stack
    finally:
        stack.trader("down", timeout=120)


def _ticks() -> list[MarketTick]:
    main = TickGenerator(SYMBOLS, seed=5, start_prices={"BTCUSDT": "60000", "ETHUSDT": "3000"})
    venues = {
        "mock-b": MockVenueSettings(noise_bps=4.0, latency_ms=5),
        "mock-c": MockVenueSettings(noise_bps=4.0, latency_ms=20),
    }
    gen = MultiVenueTicks(main, venues, seed=5)
    # 2 ms of event time per step: 12 s of quotes, 48 snapshots and 12 samples per symbol
    return [t for i in range(STEPS) for t in gen.next_ticks(T0 + 2 * i)]


def _pid(stack: Stack, name: str) -> int:
    return next(c["pid"] for c in stack.status()["components"] if c["name"] == name)


async def _feed(stack: Stack, ticks: list[MarketTick]) -> None:
    """Publish in order, pipelined in batches, over ~9 s; SIGKILL spread-analyzer at ~7 s, after its
    first snapshot (every 5 s), so the restart takes the snapshot and applies the ticks after it."""
    nc = await connect_nats(stack.nats_url, "test")
    assert nc is not None
    js = nc.jetstream()
    began, killed = time.monotonic(), False
    for start in range(0, len(ticks), 300):
        acks = [
            await publish_acked(
                js,
                f"market.tick.{t.venue}.{t.symbol}",
                encode(t),
                {"Nats-Msg-Id": f"{t.venue}:{t.symbol}:{t.trade_id}"},
            )
            for t in ticks[start : start + 300]
        ]
        stored = await asyncio.gather(*acks)
        assert [a.seq for a in stored] == list(range(start + 1, start + len(stored) + 1))  # in order
        if not killed and time.monotonic() - began > 7:
            os.kill(_pid(stack, "spread-analyzer"), signal.SIGKILL)
            killed = True
        await asyncio.sleep(0.15)
    assert killed
    await nc.close()


def _expected(stack: Stack, ticks: list[MarketTick]) -> tuple[list, list, list]:
    engine = SpreadEngine(engine_config(stack.settings()))
    snapshots, events, samples = [], [], []
    for seq, tick in enumerate(ticks, start=1):
        out = engine.on_tick(tick, seq)
        snapshots += [out.snapshot] if out.snapshot else []
        samples += [out.sample] if out.sample else []
        events += out.events
    return snapshots, events, samples


async def _bus(stack: Stack) -> tuple[list[SpreadSnapshot], list[SpreadOpportunity], list[str]]:
    nc = await connect_nats(stack.nats_url, "test")
    assert nc is not None
    js = nc.jetstream()
    last = (await js.stream_info("SPREADS")).state.last_seq
    snapshots, events, ids = [], [], []
    for seq in range(1, last + 1):
        msg = await js.get_msg("SPREADS", seq)
        ids.append((msg.headers or {})["Nats-Msg-Id"])
        if msg.subject.endswith(".opportunity"):
            events.append(msgspec.json.decode(msg.data, type=SpreadOpportunity))
        else:
            snapshots.append(msgspec.json.decode(msg.data, type=SpreadSnapshot))
    await nc.close()
    return snapshots, events, ids


def _questdb(stack: Stack, sql: str) -> list[dict]:
    body = httpx.get(f"http://127.0.0.1:{stack.ports['questdb_http']}/exec", params={"query": sql}).json()
    names = [c["name"] for c in body.get("columns", [])]
    return [dict(zip(names, row, strict=True)) for row in body.get("dataset", [])]


def test_spreads_on_the_bus_and_in_questdb_through_a_sigkill(stack: Stack) -> None:
    ticks = _ticks()
    first_pid = _pid(stack, "spread-analyzer")
    asyncio.run(_feed(stack, ticks))
    want_snapshots, want_events, want_samples = _expected(stack, ticks)
    assert len(want_events) > 20  # the scenario has opportunities to lose or double
    assert {e.kind for e in want_events} == {"open", "close"}

    deadline = time.monotonic() + 60
    while time.monotonic() < deadline:
        snapshots, events, ids = asyncio.run(_bus(stack))
        if len(snapshots) >= len(want_snapshots) and len(events) >= len(want_events):
            break
        time.sleep(0.5)
    assert _pid(stack, "spread-analyzer") != first_pid  # it was killed, and restarted
    assert len(ids) == len(set(ids))  # nothing doubled
    assert sorted(events, key=lambda e: (e.source_seq, e.kind, e.buy_venue, e.sell_venue)) == sorted(
        want_events, key=lambda e: (e.source_seq, e.kind, e.buy_venue, e.sell_venue)
    )
    assert sorted(snapshots, key=lambda s: s.source_seq) == want_snapshots

    # QuestDB: one row per sample and per event, equal to what the engine made (WAL: applied shortly).
    deadline = time.monotonic() + 60
    while time.monotonic() < deadline:
        rows = _questdb(stack, "select kind, symbol, source_seq, net_bps, best_bid, buy_venue from spreads")
        if len(rows) >= len(want_samples) + len(want_events):
            break
        time.sleep(0.5)
    samples = sorted((r["symbol"], r["source_seq"]) for r in rows if r["kind"] == "sample")
    assert samples == sorted((s.symbol, s.source_seq) for s in want_samples)
    stored_events = sorted(
        (r["kind"], r["source_seq"], r["buy_venue"]) for r in rows if r["kind"] != "sample"
    )
    assert stored_events == sorted((e.kind, e.source_seq, e.buy_venue) for e in want_events)
    by_seq = {(s.symbol, s.source_seq): s for s in want_samples}
    for r in rows:
        if r["kind"] == "sample":
            assert float(r["best_bid"]) == float(by_seq[(r["symbol"], r["source_seq"])].best_bid)

    health = httpx.get(f"http://127.0.0.1:{stack.ports['spread_analyzer']}/health").json()
    assert health["instruments"] == SYMBOLS


def test_trader_spreads_shows_the_latest_per_symbol(stack: Stack) -> None:
    result = stack.trader("spreads", "--json")
    assert result.returncode == 0, result.stderr
    shown = msgspec.json.decode(result.stdout)
    assert [s["symbol"] for s in shown] == SYMBOLS
    table = stack.trader("spreads", "BTCUSDT")
    assert table.returncode == 0, table.stderr
    assert "BTCUSDT" in table.stdout
    assert "mock-b" in table.stdout
