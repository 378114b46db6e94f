"""The bulk reading path across a nats-server restart: a stream consumer routed through the connection's
BulkParser keeps receiving after nats-py reconnects, every message once, and publishing with
acknowledgements read in bulk works again on the new connection."""

from __future__ import annotations

import asyncio
import time

import pytest
from nats.js.api import StreamConfig

from tests.stack_helpers import RestartableNats
from trader.bus.connection import connect_nats
from trader.bus.publish import Outgoing
from trader.config import Settings
from trader.runtime.consumer import StreamConsumer
from trader.runtime.service import Runtime

pytestmark = pytest.mark.integration


def _messages(first: int, count: int) -> list[Outgoing]:
    return [Outgoing(f"rc.{i % 4}", b"%d" % i, msg_id=f"rc-{i}") for i in range(first, first + count)]


async def _take(consumer: StreamConsumer, until_seq: int, timeout: float = 30) -> list[int]:
    seen: list[int] = []
    deadline = time.monotonic() + timeout
    while not seen or seen[-1] < until_seq:
        assert time.monotonic() < deadline, f"got up to {seen[-1:] or None}, waited for {until_seq}"
        await consumer._fill()
        batch = consumer._take()
        seen += [d.seq for d in batch]
        await consumer.ack(batch)
    return seen


async def test_a_routed_consumer_and_bulk_acknowledgements_survive_a_server_restart(
    restartable_nats: RestartableNats,
) -> None:
    rt = Runtime("test", Settings())
    changes: list[bool] = []
    rt.nc = await connect_nats(restartable_nats.url, "test", on_change=changes.append)
    assert rt.nc is not None
    rt._js = rt.nc.jetstream()
    try:
        await rt.js.add_stream(StreamConfig(name="RC", subjects=["rc.>"]))
        consumer = StreamConsumer(rt, stream="RC", name="rc", subject="rc.>", start_seq=None, max_wait_s=0.1)
        await consumer.start()

        result = await rt.publish_reliably(_messages(0, 500))
        assert result.stored == 500
        assert await _take(consumer, 500) == list(range(1, 501))

        restartable_nats.stop()
        await asyncio.sleep(0.5)
        restartable_nats.start()
        deadline = time.monotonic() + 30
        while changes[-1:] != [True] or len(changes) < 3:
            assert time.monotonic() < deadline, f"nats-py did not reconnect: {changes}"
            await asyncio.sleep(0.1)
        assert changes == [True, False, True]  # connected, dropped, reconnected

        result = await rt.publish_reliably(_messages(500, 500))
        assert result.stored + result.duplicates == 500
        assert await _take(consumer, 1000) == list(range(501, 1001))  # each once, none lost
        await consumer.stop_intake()
    finally:
        await rt.nc.close()
