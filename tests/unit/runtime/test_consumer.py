"""StreamConsumer on stand-ins for nats-py's client: messages come as wire bytes through the connection's
BulkParser and are taken in bulk, batches by rows, bytes and time, redeliveries skipped, one
acknowledgement per batch."""

from __future__ import annotations

import asyncio
import time
from typing import Any

import pytest
import structlog
from nats.js.api import AckPolicy, DeliverPolicy

from trader.bus.wire import BulkParser
from trader.runtime.consumer import Delivery, StreamConsumer, ack_metadata

SID = 5


class FakeSubscription:
    def __init__(self, conn: Any, sid: int, subject: str) -> None:
        self._conn, self._id, self.subject = conn, sid, subject
        self.unsubscribed = False

    async def unsubscribe(self) -> None:
        self.unsubscribed = True


class FakeClient:
    """What StreamConsumer uses of nats-py's client, with the real parser in front of it."""

    def __init__(self, events: list[str]) -> None:
        self._ps = BulkParser(self)  # type: ignore[arg-type]
        self._sid = SID - 1  # nats-py hands out subscription ids in order
        self.events = events
        self.acked: list[str] = []
        self.not_routed: list[tuple[Any, ...]] = []

    def new_inbox(self) -> str:
        return "_INBOX.test"

    async def subscribe(self, subject: str, cb: Any) -> FakeSubscription:
        self.events.append("subscribe")
        self._sid += 1
        self.sub = FakeSubscription(self, self._sid, subject)
        return self.sub

    async def publish(self, subject: str, payload: bytes = b"") -> None:
        self.acked.append(subject)

    async def _process_msg(self, *args: Any) -> None:  # what the parser leaves to nats-py
        self.not_routed.append(args)

    async def deliver(self, *wire: bytes) -> None:
        await self._ps.parse(b"".join(wire))


class FakeJetStream:
    def __init__(self, events: list[str]) -> None:
        self.events = events
        self.config: Any = None

    async def delete_consumer(self, stream: str, name: str) -> None:
        return None

    async def add_consumer(self, stream: str, config: Any) -> None:
        self.events.append("add_consumer")
        self.config = config


class FakeRuntime:
    def __init__(self) -> None:
        self.events: list[str] = []
        self.nc = FakeClient(self.events)
        self.js = FakeJetStream(self.events)
        self.stopping = asyncio.Event()
        self.log = structlog.get_logger("test")
        self.consumers: dict[str, tuple[int, int | None]] = {}  # what the runtime was told

    def note_consumer(self, name: str, pending: int, last_arrival_ms: int | None) -> None:
        self.consumers[name] = (pending, last_arrival_ms)

    def forget_consumer(self, name: str) -> None:
        del self.consumers[name]


def reply(seq: int, pending: int = 0, *, v2: bool = False) -> str:
    ts_ns = (1_795_600_000_000 + seq) * 1_000_000
    if v2:
        return f"$JS.ACK.dom.hash.S.c.1.{seq}.{seq}.{ts_ns}.{pending}.tok"
    return f"$JS.ACK.S.c.1.{seq}.{seq}.{ts_ns}.{pending}"


def message(seq: int, pending: int = 0, data: bytes = b"x" * 10, *, to: str | None = None) -> bytes:
    """A JetStream delivery as it comes on the wire, with a header."""
    headers = b"NATS/1.0\r\nk: %d\r\n\r\n" % seq
    size = len(headers) + len(data)
    answer = to or reply(seq, pending)
    line = b"HMSG market.tick.S%d %d %s %d %d\r\n" % (seq, SID, answer.encode(), len(headers), size)
    return line + headers + data + b"\r\n"


async def started(**kwargs: Any) -> tuple[StreamConsumer, FakeClient, FakeRuntime]:
    rt = FakeRuntime()
    options = {"start_seq": None, "max_rows": 4, "max_wait_s": 0.05, **kwargs}
    consumer = StreamConsumer(rt, stream="S", name="c", subject="s.>", **options)  # type: ignore[arg-type]
    await consumer.start()
    return consumer, rt.nc, rt


async def next_batch(consumer: StreamConsumer) -> list[Delivery]:
    await consumer._fill()
    return consumer._take()


def test_ack_metadata_reads_both_forms() -> None:
    assert ack_metadata(reply(7, pending=3)) == (7, 1_795_600_000_007, 3)
    assert ack_metadata(reply(7, pending=3, v2=True)) == (7, 1_795_600_000_007, 3)
    with pytest.raises(ValueError, match="not a JetStream ack subject"):
        ack_metadata("_INBOX.abc")


async def test_the_subscription_is_routed_before_the_consumer_exists() -> None:
    consumer, nc, rt = await started(start_seq=12, max_rows=100)
    assert rt.events == ["subscribe", "add_consumer"]
    assert nc._ps.routes[SID] == consumer._inbox._receive  # type: ignore[union-attr]
    config = rt.js.config
    assert (config.durable_name, config.deliver_subject, config.filter_subject) == ("c", "_INBOX.test", "s.>")
    assert (config.ack_policy, config.deliver_policy, config.opt_start_seq) == (
        AckPolicy.ALL,
        DeliverPolicy.BY_START_SEQUENCE,
        12,
    )
    assert config.max_ack_pending == 200


async def test_a_connection_without_the_bulk_parser_is_refused() -> None:
    rt = FakeRuntime()
    rt.nc._ps = object()  # type: ignore[assignment]
    consumer = StreamConsumer(rt, stream="S", name="c", subject="s.>", start_seq=None)  # type: ignore[arg-type]
    with pytest.raises(TypeError, match="connect_nats"):
        await consumer.start()


async def test_a_batch_takes_what_arrived_up_to_max_rows() -> None:
    consumer, nc, _ = await started()
    await nc.deliver(*(message(seq, pending=10 - seq) for seq in range(1, 7)))
    batch = await next_batch(consumer)
    assert [d.seq for d in batch] == [1, 2, 3, 4]
    first = batch[0]
    assert (first.arrival_ms, first.subject, first.data, first.headers) == (
        1_795_600_000_001,
        "market.tick.S1",
        b"x" * 10,
        {"k": "1"},
    )
    assert consumer.pending == 6  # from the last message taken
    assert not consumer.caught_up
    assert [d.seq for d in await next_batch(consumer)] == [5, 6]  # then max_wait_s
    assert nc.not_routed == []


async def test_each_batch_tells_the_runtime_what_waits_and_a_stopped_consumer_is_forgotten() -> None:
    consumer, nc, rt = await started()
    await nc.deliver(*(message(seq, pending=10 - seq) for seq in range(1, 7)))
    batches = consumer.batches()
    assert [d.seq for d in await anext(batches)] == [1, 2, 3, 4]
    assert rt.consumers == {"c": (6, 1_795_600_000_004)}  # pending, and when the last one was stored
    assert [d.seq for d in await anext(batches)] == [5, 6]
    assert rt.consumers == {"c": (4, 1_795_600_000_006)}
    assert await anext(batches) == []
    assert rt.consumers == {"c": (4, None)}  # an empty batch: nothing new was stored or taken
    rt.stopping.set()
    with pytest.raises(StopAsyncIteration):
        await anext(batches)
    assert rt.consumers == {}


async def test_a_batch_closes_at_max_bytes() -> None:
    consumer, nc, _ = await started(max_rows=100, max_bytes=25)
    await nc.deliver(*(message(seq) for seq in range(1, 6)))
    batch = await next_batch(consumer)
    assert len(batch) == 5  # everything that arrived is taken at once; the bytes close the batch early
    started_at = time.monotonic()
    assert await next_batch(consumer) == []
    assert time.monotonic() - started_at >= 0.04  # an empty batch after max_wait_s


async def test_a_batch_waits_for_more_until_full_or_max_wait() -> None:
    consumer, nc, _ = await started(max_wait_s=1.0)

    async def trickle() -> None:
        for seq in range(1, 5):
            await asyncio.sleep(0.01)
            await nc.deliver(message(seq))

    task = asyncio.create_task(trickle())
    started_at = time.monotonic()
    batch = await next_batch(consumer)
    await task
    assert [d.seq for d in batch] == [1, 2, 3, 4]
    assert time.monotonic() - started_at < 0.5  # full before max_wait_s


async def test_eager_hands_over_as_soon_as_anything_came() -> None:
    consumer, nc, _ = await started(max_wait_s=1.0, eager=True)

    async def later() -> None:
        await asyncio.sleep(0.01)
        await nc.deliver(message(1))

    task = asyncio.create_task(later())
    started_at = time.monotonic()
    assert [d.seq for d in await next_batch(consumer)] == [1]
    assert time.monotonic() - started_at < 0.5
    await task


async def test_redeliveries_are_skipped_and_the_last_new_message_is_acknowledged() -> None:
    consumer, nc, _ = await started(start_seq=3)
    await nc.deliver(*(message(seq) for seq in (2, 3, 4, 3, 5, 4)))
    batch = await next_batch(consumer)
    assert [d.seq for d in batch] == [3, 4, 5]
    await consumer.ack(batch)
    assert nc.acked == [reply(5)]


async def test_one_acknowledgement_covers_the_batches_before_it() -> None:
    consumer, nc, _ = await started(max_rows=2)
    await nc.deliver(*(message(seq) for seq in range(1, 5)))
    first, second = await next_batch(consumer), await next_batch(consumer)
    await consumer.ack(second)
    await consumer.ack(first)  # already covered: nothing more is sent
    assert nc.acked == [reply(4)]
    assert consumer._to_ack == {}


async def test_caught_up_only_with_nothing_pending_and_nothing_waiting() -> None:
    consumer, nc, _ = await started(max_rows=2)
    await nc.deliver(message(1, pending=0), message(2, pending=0), message(3, pending=0))
    await next_batch(consumer)
    assert consumer.pending == 0
    assert not consumer.caught_up  # one still waiting
    await next_batch(consumer)
    assert consumer.caught_up


async def test_on_stop_what_was_delivered_comes_last_and_intake_stops() -> None:
    consumer, nc, rt = await started(max_rows=10)
    await nc.deliver(message(1))
    batches = consumer.batches()
    assert [d.seq for d in await anext(batches)] == [1]
    await nc.deliver(message(2))
    rt.stopping.set()
    assert [d.seq for d in await anext(batches)] == [2]
    with pytest.raises(StopAsyncIteration):
        await anext(batches)
    assert nc.sub.unsubscribed
    assert SID not in nc._ps.routes
    await nc.deliver(message(3))  # after the route is gone: nats-py's, which knows no such subscription
    assert len(nc.not_routed) == 1


async def test_leaving_the_batches_early_stops_intake() -> None:
    consumer, nc, _ = await started()
    await nc.deliver(message(1))
    batches = consumer.batches()
    await anext(batches)
    await batches.aclose()  # what the event loop does with a generator left by an exception
    assert nc.sub.unsubscribed


async def test_a_message_not_from_jetstream_is_passed_over_and_a_heartbeat_is_nats_pys() -> None:
    consumer, nc, _ = await started()
    heartbeat = b"NATS/1.0 100 Idle Heartbeat\r\n\r\n"
    hmsg = b"HMSG _INBOX.test %d %d %d\r\n%s\r\n" % (SID, len(heartbeat), len(heartbeat), heartbeat)
    await nc.deliver(message(1, to="_INBOX.abc"), hmsg, message(2))
    assert [d.seq for d in await next_batch(consumer)] == [2]
    assert [args[0] for args in nc.not_routed] == [SID]  # the heartbeat


async def test_a_trickle_waits_for_small_wait_s_after_a_first_small_batch() -> None:
    consumer, nc, _ = await started(max_rows=100, max_wait_s=0.05, small_rows=10, small_wait_s=0.4)
    await nc.deliver(message(1))
    started_at = time.monotonic()
    assert [d.seq for d in await next_batch(consumer)] == [1]  # the first closes at max_wait_s
    assert time.monotonic() - started_at < 0.3

    async def trickle() -> None:
        for seq in range(2, 5):
            await nc.deliver(message(seq))
            await asyncio.sleep(0.1)

    task = asyncio.create_task(trickle())
    started_at = time.monotonic()
    batch = await next_batch(consumer)
    waited = time.monotonic() - started_at
    await task
    assert [d.seq for d in batch] == [2, 3, 4]  # one batch for the trickle, not three
    assert waited >= 0.35


async def test_a_small_batch_after_a_big_one_closes_at_max_wait_s() -> None:
    consumer, nc, _ = await started(max_rows=100, max_wait_s=0.05, small_rows=3, small_wait_s=5.0)
    await nc.deliver(*(message(seq) for seq in range(1, 5)))
    assert len(await next_batch(consumer)) == 4  # a burst
    await nc.deliver(message(5))
    started_at = time.monotonic()
    assert [d.seq for d in await next_batch(consumer)] == [5]  # its tail is not held back
    assert time.monotonic() - started_at < 1.0


async def test_a_quiet_stream_still_gives_an_empty_batch_every_max_wait_s_while_trickling() -> None:
    consumer, nc, _ = await started(max_rows=100, max_wait_s=0.05, small_rows=10, small_wait_s=5.0)
    await nc.deliver(message(1))
    await next_batch(consumer)  # small: trickling from now on
    started_at = time.monotonic()
    assert await next_batch(consumer) == []
    assert time.monotonic() - started_at < 1.0


async def test_stopping_ends_a_trickles_wait_within_max_wait_s() -> None:
    consumer, nc, rt = await started(max_rows=100, max_wait_s=0.05, small_rows=10, small_wait_s=5.0)
    await nc.deliver(message(1))
    await next_batch(consumer)
    await nc.deliver(message(2))
    started_at = time.monotonic()
    asyncio.get_running_loop().call_later(0.1, rt.stopping.set)
    assert [d.seq for d in await next_batch(consumer)] == [2]  # what came is handed over, not lost
    assert time.monotonic() - started_at < 1.0
