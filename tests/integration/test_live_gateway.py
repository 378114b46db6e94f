"""live-gateway against local stand-ins of the five exchanges, on a real NATS: exactly once, gaps, DLQ.

One run, because every check needs the same one: the gateway streams from Binance, Coinbase, Kraken,
Bybit and OKX look-alikes (tests/fakes/fake_exchanges.py) that send normal streams, repeated and
out-of-order trades, malformed frames, leave trades out (a gap), drop the connection mid-stream and,
for OKX, fall silent. Afterwards:
- every trade of every venue is on MARKET_TICKS exactly once, with the unified symbol, the venue's own
  symbol, exact price and size, side and time;
- the malformed frames are in the dead letters, byte for byte, with their reason;
- the gaps are on MARKET_EVENTS, and were filled from REST; so are the reconnects and the stale stream;
- the gateway is still up, and a gateway with no venue configured is ready and idle.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import signal
import subprocess
import sys
import time
from collections import Counter
from collections.abc import Iterator
from decimal import Decimal
from pathlib import Path
from typing import Any

import httpx
import msgspec
import pytest

from tests.fakes.fake_exchanges import (
    BROKEN_JSON,
    CONFIGURED_SYMBOLS,
    TAPE_LENGTH,
    UNIFIED,
    ExchangesThread,
    FakeExchange,
    build_exchanges,
)
from tests.stack_helpers import Stack, free_port_map, nats_only
from trader.bus import dlq
from trader.bus.connection import connect_nats
from trader.messages import FeedEvent, MarketTick
from trader.services import REGISTRY

pytestmark = pytest.mark.integration

# Started directly while the registry does not name live-gateway yet; `trader service run` once it does.
LAUNCH = """
import asyncio, sys
from trader.config import Settings
from trader.runtime.logging import configure_logging
from trader.runtime.service import serve
from trader.services.live_gateway import LiveGateway
settings = Settings()
configure_logging(settings.log_level, settings.log_format, service="live-gateway")
sys.exit(asyncio.run(serve(LiveGateway(settings), settings.ports.live_gateway)))
"""


def _gateway_command() -> list[str]:
    if "live-gateway" in REGISTRY:
        return [sys.executable, "-m", "trader", "service", "run", "live-gateway"]
    return [sys.executable, "-c", LAUNCH]


def _venue_env(exchanges: dict[str, FakeExchange]) -> dict[str, str]:
    env = {
        "TRADER_LIVE_GATEWAY__GAP_GRACE_S": "0.5",
        "TRADER_LIVE_GATEWAY__RECONNECT_INITIAL_S": "0.2",
        "TRADER_LIVE_GATEWAY__RECONNECT_MAX_S": "2",
    }
    for name, exchange in exchanges.items():
        prefix = f"TRADER_LIVE_GATEWAY__VENUES__{name.upper()}__"
        env[prefix + "SYMBOLS"] = json.dumps([CONFIGURED_SYMBOLS[name]])
        env[prefix + "WS_URL"] = exchange.ws_url
        env[prefix + "REST_URL"] = exchange.rest_url
    env["TRADER_LIVE_GATEWAY__VENUES__OKX__STALE_AFTER_S"] = "2"
    return env


def _wait(predicate: Any, timeout: float, what: str) -> None:
    deadline = time.monotonic() + timeout
    while not predicate():
        assert time.monotonic() < deadline, what
        time.sleep(0.2)


def _ready(port: int) -> bool:
    with contextlib.suppress(httpx.HTTPError):
        return httpx.get(f"http://127.0.0.1:{port}/ready", timeout=2).status_code == 200
    return False


@pytest.fixture(scope="module")
def nats_stack(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Stack]:
    """Only a NATS server: the gateway needs nothing else."""
    with nats_only(Path(tmp_path_factory.mktemp("live"))) as stack:
        yield stack


@pytest.fixture(scope="module")
def run(nats_stack: Stack) -> Iterator[dict[str, Any]]:
    """The fake exchanges, the gateway streaming from them until every trade is in; what NATS holds."""
    exchanges = build_exchanges()
    log_path = nats_stack.data_dir / "live-gateway.log"
    with ExchangesThread(exchanges), log_path.open("w") as log:
        env = {**nats_stack.env, **_venue_env(exchanges)}
        gateway = subprocess.Popen(_gateway_command(), env=env, stdout=log, stderr=subprocess.STDOUT)
        processes = [gateway]
        port = nats_stack.ports["live_gateway"]
        try:
            _wait(
                lambda: _ready(port), 60, "live-gateway never became ready:\n" + log_path.read_text()[-3000:]
            )
            expected = TAPE_LENGTH * len(exchanges)
            counts = lambda: asyncio.run(_stream_counts(nats_stack.nats_url))  # noqa: E731
            _wait(lambda: counts()["MARKET_TICKS"] >= expected, 60, "not every trade arrived")
            time.sleep(2.0)  # anything extra (a duplicate) would arrive meanwhile
            stored = asyncio.run(_read_all(nats_stack.nats_url))
            health = httpx.get(f"http://127.0.0.1:{port}/health", timeout=5).json()
            yield {
                "exchanges": exchanges,
                "stored": stored,
                "health": health,
                "alive": gateway.poll() is None,
                "ready": _ready(port),
                "log": log_path,
                "env": env,
                "port": port,
                "processes": processes,
            }
        finally:
            for process in processes:
                if process.poll() is None:
                    process.send_signal(signal.SIGTERM)
                    process.wait(20)


async def _stream_counts(url: str) -> dict[str, int]:
    nc = await connect_nats(url, "test")
    assert nc is not None
    try:
        js = nc.jetstream()
        counts = {}
        for name in ("MARKET_TICKS", "MARKET_EVENTS", "DLQ"):
            try:
                counts[name] = (await js.stream_info(name)).state.messages
            except Exception:
                counts[name] = 0
        return counts
    finally:
        await nc.close()


async def _read_all(url: str) -> dict[str, list[Any]]:
    nc = await connect_nats(url, "test")
    assert nc is not None
    try:
        js = nc.jetstream()
        out: dict[str, list[Any]] = {}
        for name in ("MARKET_TICKS", "MARKET_EVENTS", "DLQ"):
            state = (await js.stream_info(name)).state
            seqs = range(state.first_seq, state.last_seq + 1) if state.messages else range(0)
            out[name] = [await js.get_msg(name, seq) for seq in seqs]
        return out
    finally:
        await nc.close()


def _ticks(run: dict[str, Any]) -> list[tuple[str, MarketTick, dict[str, str]]]:
    stored = run["stored"]["MARKET_TICKS"]
    return [(m.subject, msgspec.json.decode(m.data, type=MarketTick), m.headers or {}) for m in stored]


def _events(run: dict[str, Any]) -> list[FeedEvent]:
    return [msgspec.json.decode(m.data, type=FeedEvent) for m in run["stored"]["MARKET_EVENTS"]]


@pytest.mark.parametrize("venue", ["binance", "coinbase", "kraken", "bybit", "okx"])
def test_every_trade_is_on_market_ticks_exactly_once_and_exact(run: dict[str, Any], venue: str) -> None:
    exchange: FakeExchange = run["exchanges"][venue]
    mine = [(subject, tick, headers) for subject, tick, headers in _ticks(run) if tick.venue == venue]
    by_id = Counter(tick.trade_id for _, tick, _ in mine)
    assert [i for i, n in by_id.items() if n > 1] == [], "a trade is stored twice"
    tape = {t.trade_id: t for t in exchange.expected_trades()}
    assert set(by_id) == set(tape)
    for subject, tick, headers in mine:
        truth = tape[tick.trade_id]
        assert subject == f"market.tick.{venue}.{UNIFIED[venue]}"
        assert tick.symbol == UNIFIED[venue]
        assert tick.venue_symbol == exchange.encoder.venue_symbol
        assert tick.exchange == venue
        assert isinstance(tick.price, Decimal)
        assert tick.price == truth.price
        assert tick.size == truth.size == tick.volume
        assert tick.side == truth.side
        assert tick.timestamp == truth.ts
        assert headers["Nats-Msg-Id"] == f"{venue}:{exchange.encoder.venue_symbol}:{truth.trade_id}"
        if tick.bid is not None and tick.ask is not None:
            assert tick.bid < tick.ask


def test_ticks_carry_the_venues_top_of_book(run: dict[str, Any]) -> None:
    exchange: FakeExchange = run["exchanges"]["binance"]
    tape = exchange.expected_trades()
    first = next(t for _, t, _ in _ticks(run) if t.venue == "binance" and t.trade_id == tape[1].trade_id)
    # The first connection sends one bookTicker, for tape[0], before any trade.
    assert (first.bid, first.ask) == (tape[0].price - Decimal("0.01"), tape[0].price + Decimal("0.01"))


@pytest.mark.parametrize("venue", ["binance", "coinbase", "kraken", "bybit", "okx"])
def test_malformed_frames_are_dead_letters_with_their_reason(run: dict[str, Any], venue: str) -> None:
    exchange: FakeExchange = run["exchanges"][venue]
    broken, corrupted = exchange.expected_dead()
    assert broken == BROKEN_JSON
    unreadable = [m for m in run["stored"]["DLQ"] if m.subject == f"dlq.live-gateway.live.{venue}"]
    assert [bytes(m.data) for m in unreadable] == [broken.encode()]
    assert "malformed JSON" in unreadable[0].headers[dlq.REASON]
    assert unreadable[0].headers[dlq.SERVICE] == "live-gateway"
    assert unreadable[0].headers[dlq.SUBJECT] == f"live.{venue}"
    # The corrupted trade names its instrument: the letter keeps the subject the tick would have had.
    garbled = [m for m in run["stored"]["DLQ"] if bytes(m.data) == corrupted.encode()]
    assert len(garbled) == 1
    assert garbled[0].subject == f"dlq.live-gateway.market.tick.{venue}.{UNIFIED[venue]}"
    assert "'abc' is not a number" in garbled[0].headers[dlq.REASON]


@pytest.mark.parametrize("venue", ["binance", "coinbase", "kraken", "okx"])
def test_gaps_are_events_and_were_filled_from_rest(run: dict[str, Any], venue: str) -> None:
    exchange: FakeExchange = run["exchanges"][venue]
    tape = exchange.expected_trades()
    events = [e for e in _events(run) if e.venue == venue]
    gaps = {(e.from_id, e.to_id) for e in events if e.kind == "gap"}
    assert (tape[12].trade_id, tape[14].trade_id) in gaps  # left out in the middle of connection 1
    assert (tape[20].trade_id, tape[21].trade_id) in gaps  # traded while disconnected
    filled = {(e.from_id, e.to_id): e.count for e in events if e.kind == "gap_filled"}
    assert filled[(tape[12].trade_id, tape[14].trade_id)] == 3
    assert filled[(tape[20].trade_id, tape[21].trade_id)] == 2
    assert all(e.symbol == UNIFIED[venue] and e.venue_symbol == exchange.encoder.venue_symbol for e in events)
    assert any(path for path, _ in exchange.rest_calls), "REST was never asked"
    # Out of order within the grace period is not a gap.
    assert (tape[10].trade_id, tape[10].trade_id) not in gaps


def test_bybit_recovers_the_reconnect_window_from_rest(run: dict[str, Any]) -> None:
    exchange: FakeExchange = run["exchanges"]["bybit"]
    events = [e for e in _events(run) if e.venue == "bybit"]
    filled = [e for e in events if e.kind == "gap_filled"]
    assert filled
    assert (filled[0].count or 0) >= 2  # trades 20 and 21 at least
    assert exchange.rest_calls[0][0] == "/v5/market/recent-trade"


def test_reconnects_and_the_stale_stream_are_events(run: dict[str, Any]) -> None:
    events = _events(run)
    reconnects = Counter(e.venue for e in events if e.kind == "reconnect")
    assert set(reconnects) == {"binance", "coinbase", "kraken", "bybit", "okx"}
    assert reconnects["okx"] >= 2  # the drop, then the silent stream
    stale = [e for e in events if e.kind == "stale"]
    assert [e.venue for e in stale] == ["okx"]
    subjects = {m.subject for m in run["stored"]["MARKET_EVENTS"]}
    assert "market.event.okx.BTCUSDT" in subjects
    assert "market.event.kraken.BTCUSD" in subjects


def test_the_gateway_stayed_up_and_connected(run: dict[str, Any]) -> None:
    assert run["alive"]
    assert run["ready"]
    venues = run["health"]["venues"]
    assert set(venues) == {"binance", "coinbase", "kraken", "bybit", "okx"}
    for name, health in venues.items():
        assert health["connected"], name
        assert health["connections"] >= 2, name
        assert health["trades"] == TAPE_LENGTH, name
        assert health["dead_letters"] == 2, name
    assert venues["okx"]["connections"] >= 3
    assert venues["okx"]["stale"] == 1
    # The venues' keep-alives were sent: Kraken's and Bybit's JSON pings need 20 s, OKX's "ping" 15 s; the
    # subscriptions at least went out again on every connection.
    kraken: FakeExchange = run["exchanges"]["kraken"]
    subscribes = [f for f in kraken.client_frames if '"subscribe"' in f]
    assert len(subscribes) == 2 * kraken.connections


def test_without_venues_the_gateway_is_ready_and_idle(nats_stack: Stack, run: dict[str, Any]) -> None:
    ports = free_port_map()
    env = {**nats_stack.env, "TRADER_PORTS__LIVE_GATEWAY": str(ports["live_gateway"])}
    before = asyncio.run(_stream_counts(nats_stack.nats_url))
    idle = subprocess.Popen(_gateway_command(), env=env, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    try:
        _wait(lambda: _ready(ports["live_gateway"]), 60, "an idle live-gateway never became ready")
        health = httpx.get(f"http://127.0.0.1:{ports['live_gateway']}/health", timeout=5).json()
        assert health["venues"] == {}
        time.sleep(1.0)
        assert asyncio.run(_stream_counts(nats_stack.nats_url)) == before
    finally:
        idle.send_signal(signal.SIGTERM)
        assert idle.wait(20) == 0


def test_after_a_sigkill_the_restarted_gateway_fills_what_it_missed(
    nats_stack: Stack, run: dict[str, Any]
) -> None:
    """Runs last: the gateway dies hard, Binance trades meanwhile (35, 36), the restarted gateway resumes
    from its checkpoint, sees the gap at the first new trade (37) and fills it from REST."""
    exchange: FakeExchange = run["exchanges"]["binance"]
    tape = exchange.encoder.tape
    before = asyncio.run(_stream_counts(nats_stack.nats_url))["MARKET_TICKS"]
    first = run["processes"][0]
    first.send_signal(signal.SIGKILL)
    first.wait(10)
    with run["log"].open("a") as log:
        run["processes"].append(
            subprocess.Popen(_gateway_command(), env=run["env"], stdout=log, stderr=subprocess.STDOUT)
        )
        counts = lambda: asyncio.run(_stream_counts(nats_stack.nats_url))["MARKET_TICKS"]  # noqa: E731
        _wait(lambda: counts() >= before + 5, 60, "the restarted gateway did not fill the missed trades")
        time.sleep(2.0)
    stored = asyncio.run(_read_all(nats_stack.nats_url))
    binance = [msgspec.json.decode(m.data, type=MarketTick) for m in stored["MARKET_TICKS"]]
    ids = Counter(t.trade_id for t in binance if t.venue == "binance")
    assert set(ids) == {t.trade_id for t in tape}
    assert max(ids.values()) == 1
    assert len(stored["MARKET_TICKS"]) == before + 5  # nothing else stored twice by the restart
    events = [msgspec.json.decode(m.data, type=FeedEvent) for m in stored["MARKET_EVENTS"]]
    gaps = {(e.from_id, e.to_id) for e in events if e.venue == "binance" and e.kind == "gap"}
    assert (tape[TAPE_LENGTH].trade_id, tape[TAPE_LENGTH + 1].trade_id) in gaps
    assert _ready(run["port"])
