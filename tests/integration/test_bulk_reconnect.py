"""The bulk reading path across a nats-server restart: a stream consumer routed through the connection's
BulkParser keeps receiving after nats-py reconnects, every message once, and publishing with
acknowledgements read in bulk works again on the new connection."""

from __future__ import annotations

import asyncio
import subprocess
import time
from collections.abc import Iterator
from pathlib import Path

import pytest
from nats.js.api import StreamConfig

from tests.stack_helpers import PORT_RANGE, free_port_map
from trader.bus.connection import connect_nats
from trader.bus.publish import Outgoing
from trader.config import Settings
from trader.runtime.consumer import StreamConsumer
from trader.runtime.service import Runtime
from trader.stack.base import find_binary
from trader.stack.probes import port_is_free

pytestmark = pytest.mark.integration


class Server:
    """A nats-server with JetStream on file storage that can be stopped and started again."""

    def __init__(self, store: Path) -> None:
        self.store, self.port = store, free_port_map()["nats"]
        assert PORT_RANGE[0] <= self.port < PORT_RANGE[1]
        self.process: subprocess.Popen[bytes] | None = None

    @property
    def url(self) -> str:
        return f"nats://127.0.0.1:{self.port}"

    def start(self) -> None:
        command = [
            find_binary("nats-server"),
            "-js",
            "-sd",
            str(self.store),
            "-a",
            "127.0.0.1",
            "-p",
            str(self.port),
        ]
        self.process = subprocess.Popen(command, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        deadline = time.monotonic() + 15
        while port_is_free(self.port):
            assert time.monotonic() < deadline, "nats-server did not start"
            time.sleep(0.05)

    def stop(self) -> None:
        if self.process is not None:
            self.process.terminate()
            self.process.wait(10)
            self.process = None


@pytest.fixture
def server(tmp_path: Path) -> Iterator[Server]:
    s = Server(tmp_path / "nats")
    s.start()
    try:
        yield s
    finally:
        s.stop()


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


async def test_a_routed_consumer_and_bulk_acknowledgements_survive_a_server_restart(server: Server) -> None:
    rt = Runtime("test", Settings())
    changes: list[bool] = []
    rt.nc = await connect_nats(server.url, "test", on_change=changes.append)
    assert rt.nc is not None
    rt._js = rt.nc.jetstream()
    try:
        await rt.js.add_stream(StreamConfig(name="RC", subjects=["rc.>"]))
        consumer = StreamConsumer(rt, stream="RC", name="rc", subject="rc.>", start_seq=None, max_wait_s=0.1)
        await consumer.start()

        result = await rt.publish_reliably(_messages(0, 500))
        assert result.stored == 500
        assert await _take(consumer, 500) == list(range(1, 501))

        server.stop()
        await asyncio.sleep(0.5)
        server.start()
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
