"""A feed that fills JetStream's store must not leave an order unstored: on a real nats-server started
as `trader up` starts it (its nats.conf), with a store small enough to fill in a few seconds."""

from __future__ import annotations

import asyncio
import os
import subprocess
import sys
from collections.abc import AsyncIterator, Iterator
from pathlib import Path

import msgspec
import pytest
from nats.js import JetStreamContext

from tests.stack_helpers import free_port_map, wait_listening
from trader.bus.connection import connect_nats
from trader.bus.publish import Outgoing, publish_batch
from trader.bus.streams import ensure_streams, history_room, order_submit_subject, tick_subject
from trader.bus.trading_switch import read_state, state_bucket, write_state
from trader.config import Settings
from trader.messages import TradingState
from trader.services.risk import check_history_room
from trader.stack.nats import NatsServer

pytestmark = pytest.mark.integration

STORE = 16 * 1024 * 1024


@pytest.fixture
def small_store(tmp_path: Path) -> Iterator[Settings]:
    settings = Settings(data_dir=tmp_path, ports=free_port_map(), jetstream_max_file_store_bytes=STORE)
    server = NatsServer(settings)
    server.prepare()
    process = subprocess.Popen(server.command(), stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    wait_listening(settings.ports.nats)
    try:
        yield settings
    finally:
        process.terminate()
        process.wait(10)


@pytest.fixture
async def js(small_store: Settings) -> AsyncIterator[JetStreamContext]:
    """A connection to the small store, its streams provisioned."""
    nc = await connect_nats(small_store.effective_nats_url, "test-store")
    try:
        context = nc.jetstream()
        await ensure_streams(context, small_store)
        yield context
    finally:
        await nc.close()


async def test_ticks_beyond_their_share_drop_the_oldest_and_orders_are_still_stored(
    js: JetStreamContext,
) -> None:
    tick = b"x" * 4000
    for _ in range(10):  # 40 MB of ticks into a 16 MB store
        batch = [Outgoing(tick_subject("mock", "BTCUSDT"), tick) for _ in range(1000)]
        result = await publish_batch(js, batch)
        assert result.failed == [], result.errors[:3]
    kept = (await js.stream_info("MARKET_TICKS")).state
    assert 0 < kept.bytes <= 0.4 * STORE
    assert kept.first_seq > 1  # the oldest were dropped
    order = await publish_batch(js, [Outgoing(order_submit_subject("s1"), b'{"an": "order"}')])
    assert order.stored == 1, order.errors


async def test_trader_streams_shows_the_budgets_and_warns_before_the_history_is_full(
    small_store: Settings, js: JetStreamContext
) -> None:
    env = {
        **os.environ,
        "TRADER_DATA_DIR": str(small_store.data_dir),
        "TRADER_NATS_URL": small_store.effective_nats_url,
        "TRADER_JETSTREAM_MAX_FILE_STORE_BYTES": str(STORE),
    }

    async def streams(*args: str) -> subprocess.CompletedProcess[str]:
        command = [sys.executable, "-m", "trader", "streams", *args]
        return await asyncio.to_thread(subprocess.run, command, env=env, capture_output=True, text=True)

    listed = msgspec.json.decode((await streams("--json")).stdout)
    budgets = {row["stream"]: row["max_bytes"] for row in listed}
    assert budgets["MARKET_TICKS"] == int(0.4 * STORE)
    assert budgets["ORDERS"] == -1
    calm = await streams()
    assert "trading history: 0 of" in " ".join(calm.stdout.split())
    assert "warning" not in calm.stderr

    order = b"o" * 4000
    room = history_room(small_store)
    batch = [Outgoing(order_submit_subject("s1"), order) for _ in range(int(0.85 * room) // 4000)]
    assert (await publish_batch(js, batch)).failed == []
    warned = " ".join((await streams()).stderr.split())  # as one line, however the console wrapped it
    assert "warning: trading history" in warned, warned
    assert "JetStream refuses new orders" in warned


async def test_risk_check_switches_to_reduce_only_before_the_history_fills_and_never_over_an_operator(
    small_store: Settings, js: JetStreamContext
) -> None:
    kv = await state_bucket(js)
    use, switched = await check_history_room(js, kv, small_store)
    assert (switched, (await read_state(kv))[0].mode) == (False, "active")
    assert use.used < 0.01 * use.room
    order = b"o" * 4000
    batch = [Outgoing(order_submit_subject("s1"), order) for _ in range(int(0.96 * use.room) // 4000)]
    assert (await publish_batch(js, batch)).failed == []
    use, switched = await check_history_room(js, kv, small_store)
    state = (await read_state(kv))[0]
    assert switched
    assert state.mode == "reduce_only"
    assert "storage: trading history at 9" in (state.reason or "")
    assert (await check_history_room(js, kv, small_store))[1] is False  # switched once
    await write_state(kv, TradingState(mode="halted", reason="operator"))
    assert (await check_history_room(js, kv, small_store))[1] is False
    assert (await read_state(kv))[0].reason == "operator"
