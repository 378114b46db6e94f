"""``trader.bus.read.replay`` of a whole history on a real nats-server: every message of the subjects
asked, once, in stream order, however many (more than the replay's window of unacknowledged ones)."""

from __future__ import annotations

import asyncio
import contextlib
import itertools
import time

import nats
import pytest
from nats.aio.client import Client as NATS
from nats.aio.msg import Msg
from nats.js.api import ConsumerConfig, DeliverPolicy, StreamConfig

from tests.stack_helpers import Stack
from trader.bus.read import REPLAY_WINDOW, Stored, replay, replay_messages

pytestmark = pytest.mark.integration

STREAM = "REPLAYTEST"


_streams = itertools.count()


async def _fresh_stream(nc: NATS) -> str:
    """A new stream on ``rt.>`` (a new name each time: deleting a big one may outlast the request)."""
    js = nc.jetstream()
    for info in await js.streams_info():
        if info.config.name.startswith(STREAM):
            with contextlib.suppress(Exception):
                await js.delete_stream(info.config.name)
    name = f"{STREAM}{next(_streams)}"
    await js.add_stream(StreamConfig(name=name, subjects=["rt.>"]))
    return name


async def _publish(nc: NATS, subjects: list[str]) -> None:
    js = nc.jetstream()
    acks = [await js.publish_async(subject, str(i).encode()) for i, subject in enumerate(subjects)]
    await asyncio.gather(*acks)


async def test_a_long_history_is_replayed_whole_once_and_in_order_on_the_subjects_asked(nc: NATS) -> None:
    stream = await _fresh_stream(nc)
    count = REPLAY_WINDOW + 7_000  # past the window: the replay must acknowledge to get the rest
    subjects = [("rt.a", "rt.b", "rt.c")[i % 3] for i in range(count)]
    await _publish(nc, subjects)
    seen: list[Stored] = []

    async def keep(stored: Stored) -> None:
        seen.append(stored)

    handled = await replay(nc.jetstream(), stream, ["rt.a", "rt.c"], keep)
    expected = [(i + 1, s, str(i).encode()) for i, s in enumerate(subjects) if s != "rt.b"]
    assert handled == len(expected)
    assert [(m.seq, m.subject, m.data) for m in seen] == expected


async def test_a_plain_nats_py_client_reads_what_the_replay_reads(nc: NATS, stack: Stack) -> None:
    # Other programs read the streams with nats-py as it comes (an ordered consumer, nats-py's parser).
    stream = await _fresh_stream(nc)
    await _publish(nc, ["rt.a", "rt.b", "rt.a", "rt.c"])
    seen: dict[str, list[tuple[int, bytes]]] = {"bulk": [], "plain": []}

    async def keep(stored: Stored) -> None:
        seen["bulk"].append((stored.seq, stored.data))

    assert await replay(nc.jetstream(), stream, ["rt.a", "rt.c"], keep) == 3

    plain = await nats.connect(stack.nats_url)
    try:
        three = asyncio.Event()

        async def on_message(msg: Msg) -> None:
            seen["plain"].append((msg.metadata.sequence.stream, msg.data))
            if len(seen["plain"]) == 3:
                three.set()

        await plain.jetstream().subscribe(
            "rt.a",
            stream=stream,
            cb=on_message,
            ordered_consumer=True,
            config=ConsumerConfig(filter_subjects=["rt.a", "rt.c"]),
        )
        await asyncio.wait_for(three.wait(), 30)
    finally:
        await plain.close()
    assert seen["bulk"] == seen["plain"] == [(1, b"0"), (3, b"2"), (4, b"3")]


async def test_a_short_history_delivered_before_the_replay_looks_is_replayed_whole(nc: NATS) -> None:
    # A handful of messages reach the client before the replay asks the consumer what is pending.
    for _ in range(20):
        stream = await _fresh_stream(nc)
        await _publish(nc, ["rt.a", "rt.b", "rt.a"])
        seen: list[bytes] = []

        async def keep(stored: Stored, seen: list[bytes] = seen) -> None:
            seen.append(stored.data)

        assert await replay(nc.jetstream(), stream, "rt.a", keep) == 2
        assert seen == [b"0", b"2"]


async def test_a_replay_of_subjects_with_no_message_ends_at_once(nc: NATS) -> None:
    stream = await _fresh_stream(nc)
    await _publish(nc, ["rt.a"] * 10)

    async def fail(stored: Stored) -> None:
        raise AssertionError(f"nothing to hand over, got {stored}")

    started = time.monotonic()
    assert await replay(nc.jetstream(), stream, "rt.nothing", fail, timeout=30) == 0
    assert time.monotonic() - started < 5  # not the timeout


async def test_a_handler_that_raises_ends_the_replay_with_its_error(nc: NATS) -> None:
    stream = await _fresh_stream(nc)
    await _publish(nc, ["rt.a"] * 10)

    async def broken(stored: Stored) -> None:
        if stored.seq == 4:
            raise RuntimeError("bad message")

    with pytest.raises(RuntimeError, match="bad message"):
        await replay(nc.jetstream(), stream, "rt.a", broken)


async def test_a_range_of_sequences_is_read_alone_and_nothing_after_it(nc: NATS) -> None:
    # exeq's balance check: a venue's reports after the baseline's sequence, up to the start's.
    stream = await _fresh_stream(nc)
    await _publish(nc, ["rt.a", "rt.b", "rt.a", "rt.a", "rt.b", "rt.a", "rt.a"])
    got = await replay_messages(nc.jetstream(), stream, "rt.a", after=1, upto=5)
    assert [(m.seq, m.data) for m in got] == [(3, b"2"), (4, b"3")]  # 6 and 7 are past upto
    assert await replay_messages(nc.jetstream(), stream, "rt.a", after=7) == []


async def test_the_latest_message_of_each_subject_is_read_in_bulk(nc: NATS) -> None:
    stream = await _fresh_stream(nc)
    await _publish(nc, ["rt.a", "rt.b", "rt.a", "rt.c", "rt.b"])
    latest = await replay_messages(
        nc.jetstream(), stream, "rt.>", deliver_policy=DeliverPolicy.LAST_PER_SUBJECT
    )
    assert sorted((m.subject, m.seq) for m in latest) == [("rt.a", 3), ("rt.b", 5), ("rt.c", 4)]
