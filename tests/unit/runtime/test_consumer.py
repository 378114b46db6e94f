"""StreamConsumer on a stand-in for nats-py's push subscription: messages taken from its queue in bulk,
batches by rows, bytes and time, redeliveries skipped, one acknowledgement per batch."""

from __future__ import annotations

import asyncio
import time
from typing import Any

import pytest
import structlog
from nats.aio.msg import Msg

from trader.runtime.consumer import Delivery, StreamConsumer, ack_metadata


class FakeClient:
    def __init__(self) -> None:
        self.acked: list[str] = []

    async def publish(self, subject: str, payload: bytes = b"") -> None:
        self.acked.append(subject)


class FakeSubscription:
    """What StreamConsumer uses of nats-py's subscription: its queue and the bytes it counts as queued."""

    def __init__(self, limit: int) -> None:
        self._pending_queue: asyncio.Queue[Msg] = asyncio.Queue(maxsize=limit)
        self._pending_size = 0
        self.unsubscribed = False

    def deliver(self, msg: Msg) -> None:  # as nats-py's _process_msg does
        self._pending_size += len(msg.data)
        self._pending_queue.put_nowait(msg)

    async def unsubscribe(self) -> None:
        self.unsubscribed = True


class FakeJetStream:
    def __init__(self) -> None:
        self.sub: FakeSubscription | None = None
        self.subscribe_kwargs: dict[str, Any] = {}

    async def delete_consumer(self, stream: str, name: str) -> None:
        return None

    async def subscribe(self, subject: str, **kwargs: Any) -> FakeSubscription:
        self.subscribe_kwargs = kwargs
        self.sub = FakeSubscription(kwargs["pending_msgs_limit"])
        return self.sub


class FakeMetrics:
    def set_lag(self, name: str, pending: int) -> None:
        self.lag = pending


class FakeRuntime:
    def __init__(self) -> None:
        self.js = FakeJetStream()
        self.stopping = asyncio.Event()
        self.metrics = FakeMetrics()
        self.log = structlog.get_logger("test")


CLIENT = FakeClient()


def message(seq: int, pending: int = 0, data: bytes = b"x" * 10, *, v2: bool = False) -> Msg:
    ts_ns = (1_795_600_000_000 + seq) * 1_000_000
    if v2:
        reply = f"$JS.ACK.dom.hash.S.c.1.{seq}.{seq}.{ts_ns}.{pending}.tok"
    else:
        reply = f"$JS.ACK.S.c.1.{seq}.{seq}.{ts_ns}.{pending}"
    return Msg(_client=CLIENT, subject=f"market.tick.S{seq}", reply=reply, data=data, headers={"k": str(seq)})


async def started(**kwargs: Any) -> tuple[StreamConsumer, FakeSubscription, FakeRuntime]:
    rt = FakeRuntime()
    options = {"start_seq": None, "max_rows": 4, "max_wait_s": 0.05, **kwargs}
    consumer = StreamConsumer(rt, stream="S", name="c", subject="s.>", **options)  # type: ignore[arg-type]
    await consumer.start()
    assert rt.js.sub is not None
    return consumer, rt.js.sub, rt


async def next_batch(consumer: StreamConsumer) -> list[Delivery]:
    await consumer._fill()
    return consumer._take()


def test_ack_metadata_reads_both_forms() -> None:
    assert ack_metadata(message(7, pending=3).reply) == (7, 1_795_600_000_007, 3)
    assert ack_metadata(message(7, pending=3, v2=True).reply) == (7, 1_795_600_000_007, 3)
    with pytest.raises(ValueError, match="not a JetStream ack subject"):
        ack_metadata("_INBOX.abc")


async def test_a_batch_takes_what_is_queued_up_to_max_rows_and_gives_the_bytes_back() -> None:
    consumer, sub, _ = await started()
    for seq in range(1, 7):
        sub.deliver(message(seq, pending=10 - seq))
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
    assert sub._pending_size == 20  # the two left in the queue
    assert [d.seq for d in await next_batch(consumer)] == [5, 6]  # then max_wait_s
    assert sub._pending_size == 0
    assert sub._pending_queue._unfinished_tasks == 0  # type: ignore[attr-defined]


async def test_a_batch_closes_at_max_bytes() -> None:
    consumer, sub, _ = await started(max_rows=100, max_bytes=25)
    for seq in range(1, 6):
        sub.deliver(message(seq))
    batch = await next_batch(consumer)
    assert len(batch) == 5  # everything queued is taken at once; the bytes close the batch early
    started_at = time.monotonic()
    assert await next_batch(consumer) == []
    assert time.monotonic() - started_at >= 0.04  # an empty batch after max_wait_s


async def test_a_batch_waits_for_more_until_full_or_max_wait() -> None:
    consumer, sub, _ = await started(max_wait_s=1.0)

    async def trickle() -> None:
        for seq in range(1, 5):
            await asyncio.sleep(0.01)
            sub.deliver(message(seq))

    task = asyncio.create_task(trickle())
    started_at = time.monotonic()
    batch = await next_batch(consumer)
    await task
    assert [d.seq for d in batch] == [1, 2, 3, 4]
    assert time.monotonic() - started_at < 0.5  # full before max_wait_s


async def test_eager_hands_over_as_soon_as_anything_came() -> None:
    consumer, sub, _ = await started(max_wait_s=1.0, eager=True)
    asyncio.get_running_loop().call_later(0.01, sub.deliver, message(1))
    started_at = time.monotonic()
    assert [d.seq for d in await next_batch(consumer)] == [1]
    assert time.monotonic() - started_at < 0.5


async def test_redeliveries_are_skipped_and_the_last_new_message_is_acknowledged() -> None:
    consumer, sub, _ = await started(start_seq=3)
    for seq in (2, 3, 4, 3, 5, 4):
        sub.deliver(message(seq))
    batch = await next_batch(consumer)
    assert [d.seq for d in batch] == [3, 4, 5]
    assert sub._pending_size == 0  # skipped ones are given back too
    CLIENT.acked.clear()
    await consumer.ack(batch)
    assert CLIENT.acked == [message(5).reply]


async def test_one_acknowledgement_covers_the_batches_before_it() -> None:
    consumer, sub, _ = await started(max_rows=2)
    for seq in range(1, 5):
        sub.deliver(message(seq))
    first, second = await next_batch(consumer), await next_batch(consumer)
    CLIENT.acked.clear()
    await consumer.ack(second)
    await consumer.ack(first)  # already covered: nothing more is sent
    assert CLIENT.acked == [message(4).reply]
    assert consumer._to_ack == {}


async def test_caught_up_only_with_nothing_pending_and_nothing_queued() -> None:
    consumer, sub, _ = await started(max_rows=2)
    sub.deliver(message(1, pending=0))
    sub.deliver(message(2, pending=0))
    sub.deliver(message(3, pending=0))
    await next_batch(consumer)
    assert consumer.pending == 0
    assert not consumer.caught_up  # one still queued
    await next_batch(consumer)
    assert consumer.caught_up


async def test_on_stop_what_was_delivered_comes_last_and_intake_stops() -> None:
    consumer, sub, rt = await started(max_rows=10)
    sub.deliver(message(1))
    batches = consumer.batches()
    assert [d.seq for d in await anext(batches)] == [1]
    sub.deliver(message(2))
    rt.stopping.set()
    assert [d.seq for d in await anext(batches)] == [2]
    with pytest.raises(StopAsyncIteration):
        await anext(batches)
    assert sub.unsubscribed


async def test_leaving_the_batches_early_stops_intake() -> None:
    consumer, sub, _ = await started()
    sub.deliver(message(1))
    batches = consumer.batches()
    await anext(batches)
    await batches.aclose()  # what the event loop does with a generator left by an exception
    assert sub.unsubscribed


async def test_a_message_not_from_jetstream_is_passed_over() -> None:
    consumer, sub, _ = await started()
    sub.deliver(Msg(_client=CLIENT, subject="x", reply="_INBOX.abc", data=b"zz"))
    sub.deliver(message(1))
    assert [d.seq for d in await next_batch(consumer)] == [1]
    assert sub._pending_size == 0
