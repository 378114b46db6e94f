"""A feed that fills JetStream's store must not leave an order unstored: on a real nats-server started
as `trader up` starts it (its nats.conf), with a store small enough to fill in a few seconds."""

from __future__ import annotations

import subprocess
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.stack_helpers import free_port_map
from trader.bus.connection import connect_nats
from trader.bus.publish import Outgoing, publish_batch
from trader.bus.streams import ensure_streams, order_submit_subject, tick_subject
from trader.config import Settings
from trader.stack.nats import NatsServer
from trader.stack.probes import port_is_free

pytestmark = pytest.mark.integration

STORE = 16 * 1024 * 1024


@pytest.fixture
def small_store(tmp_path: Path) -> Iterator[Settings]:
    settings = Settings(data_dir=tmp_path, ports=free_port_map(), jetstream_max_file_store_bytes=STORE)
    server = NatsServer(settings)
    server.prepare()
    process = subprocess.Popen(server.command(), stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    deadline = time.monotonic() + 15
    while port_is_free(settings.ports.nats):
        assert time.monotonic() < deadline, "nats-server did not start"
        time.sleep(0.05)
    try:
        yield settings
    finally:
        process.terminate()
        process.wait(10)


async def test_ticks_beyond_their_share_drop_the_oldest_and_orders_are_still_stored(
    small_store: Settings,
) -> None:
    nc = await connect_nats(small_store.effective_nats_url, "test-store")
    js = nc.jetstream()
    try:
        await ensure_streams(js, small_store)
        tick = b"x" * 4000
        for _ in range(10):  # 40 MB of ticks into a 16 MB store
            batch = [Outgoing(tick_subject("BTCUSDT"), tick) for _ in range(1000)]
            result = await publish_batch(js, batch)
            assert result.failed == [], result.errors[:3]
        kept = (await js.stream_info("MARKET_TICKS")).state
        assert 0 < kept.bytes <= 0.4 * STORE
        assert kept.first_seq > 1  # the oldest were dropped
        order = await publish_batch(js, [Outgoing(order_submit_subject("s1"), b'{"an": "order"}')])
        assert order.stored == 1, order.errors
    finally:
        await nc.close()
