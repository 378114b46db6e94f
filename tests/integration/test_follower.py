"""``trader.bus.read.Follower`` reading raw on a real nats-server: the ordered consumer's promises
(every message once, in stream order, history then live) kept by its own recovery: a lost message, a
server that forgot the consumer, a handler slower than the stream."""

from __future__ import annotations

import asyncio
import contextlib
import itertools
import time
from collections.abc import Awaitable, Callable

import pytest
from nats.aio.client import Client as NATS
from nats.js.api import DeliverPolicy, StreamConfig

from tests.stack_helpers import RestartableNats
from trader.bus.connection import connect_nats
from trader.bus.read import Follower, Stored
from trader.bus.wire import RawMessage

pytestmark = pytest.mark.integration

_streams = itertools.count()


async def _fresh_stream(nc: NATS) -> str:
    js = nc.jetstream()
    name = f"FOLLOW{next(_streams)}_{int(time.time() * 1000) % 1_000_000}"
    await js.add_stream(StreamConfig(name=name, subjects=[f"{name.lower()}.>"]))
    return name


async def _publish(nc: NATS, stream: str, first: int, count: int, size: int = 0) -> None:
    js, pad = nc.jetstream(), b"." * size
    acks = [
        await js.publish_async(f"{stream.lower()}.{i % 3}", b"%d" % i + pad)
        for i in range(first, first + count)
    ]
    await asyncio.gather(*acks)


async def _until(check: Callable[[], bool], timeout: float, what: Callable[[], str]) -> None:
    deadline = time.monotonic() + timeout
    while not check():
        assert time.monotonic() < deadline, what()
        await asyncio.sleep(0.05)


def _keeper(seen: list[Stored], slow_every: int = 0) -> Callable[[Stored], Awaitable[None]]:
    async def keep(stored: Stored) -> None:
        seen.append(stored)
        if slow_every and len(seen) % slow_every == 0:
            await asyncio.sleep(0.01)

    return keep


def _payloads(seen: list[Stored]) -> list[int]:
    return [int(s.data.split(b".")[0]) for s in seen]


async def test_a_follower_hands_over_the_history_then_every_new_message_once_in_order(nc: NATS) -> None:
    stream = await _fresh_stream(nc)
    await _publish(nc, stream, 0, 300)
    seen: list[Stored] = []
    follower = Follower(nc.jetstream(), stream=stream, subjects=f"{stream.lower()}.>", handler=_keeper(seen))
    await follower.start()
    try:
        await asyncio.wait_for(follower.caught_up.wait(), 10)
        assert len(seen) >= 300
        await _publish(nc, stream, 300, 200)
        await _until(lambda: len(seen) >= 500, 10, lambda: f"{len(seen)} of 500")
        await asyncio.sleep(0.2)  # nothing more comes
        assert _payloads(seen) == list(range(500))
        assert [s.seq for s in seen] == list(range(1, 501))
        assert follower.resets == 0
    finally:
        await follower.stop()


async def test_the_latest_of_each_subject_then_what_comes_after(nc: NATS) -> None:
    stream = await _fresh_stream(nc)
    await _publish(nc, stream, 0, 30)  # subjects .0, .1, .2 in turn: the latest are 27, 28, 29
    seen: list[Stored] = []
    follower = Follower(
        nc.jetstream(),
        stream=stream,
        subjects=f"{stream.lower()}.>",
        handler=_keeper(seen),
        deliver_policy=DeliverPolicy.LAST_PER_SUBJECT,
    )
    await follower.start()
    try:
        await asyncio.wait_for(follower.caught_up.wait(), 10)
        await _publish(nc, stream, 30, 3)
        await _until(lambda: len(seen) >= 6, 10, lambda: f"{_payloads(seen)}")
        assert _payloads(seen) == [27, 28, 29, 30, 31, 32]
    finally:
        await follower.stop()


async def test_a_lost_message_makes_it_start_again_after_the_last_one_handled(nc: NATS) -> None:
    stream = await _fresh_stream(nc)
    seen: list[Stored] = []
    follower = Follower(nc.jetstream(), stream=stream, subjects=f"{stream.lower()}.>", handler=_keeper(seen))
    await follower.start()
    try:
        inbox = follower._inbox
        assert inbox is not None
        receive, dropped = inbox._receive, []

        def lose_the_eleventh(messages: list[RawMessage]) -> None:  # as a reconnection would
            kept = []
            for message in messages:
                if not dropped and inbox.received + len(kept) == 10:
                    dropped.append(message)
                    continue
                kept.append(message)
            receive(kept)

        inbox._receive = lose_the_eleventh  # type: ignore[method-assign]
        sub = inbox._sub
        assert sub is not None
        nc._ps.route(sub._id, lose_the_eleventh)
        await _publish(nc, stream, 0, 100)
        await _until(lambda: len(seen) >= 100, 15, lambda: f"{len(seen)} of 100")
        await asyncio.sleep(0.2)
        assert dropped, "the test lost nothing"
        assert _payloads(seen) == list(range(100))  # the lost one came again, in its place, once
        assert follower.resets == 1
    finally:
        await follower.stop()


async def test_a_handler_slower_than_the_stream_gets_it_whole_and_in_order(nc: NATS) -> None:
    stream = await _fresh_stream(nc)
    await _publish(nc, stream, 0, 4_000, size=8_000)  # 32 MB: the server must wait for flow control
    seen: list[Stored] = []
    follower = Follower(
        nc.jetstream(), stream=stream, subjects=f"{stream.lower()}.>", handler=_keeper(seen, slow_every=200)
    )
    await follower.start()
    try:
        await asyncio.wait_for(follower.caught_up.wait(), 60)
        assert _payloads(seen) == list(range(4_000))
        assert follower.resets == 0
        assert follower.flow_answered > 0  # the server did wait for it
    finally:
        await follower.stop()


async def test_it_keeps_following_across_a_server_restart(restartable_nats: RestartableNats) -> None:
    nc = await connect_nats(restartable_nats.url, "test")
    assert nc is not None
    try:
        stream = await _fresh_stream(nc)
        await _publish(nc, stream, 0, 50)
        seen: list[Stored] = []
        follower = Follower(
            nc.jetstream(), stream=stream, subjects=f"{stream.lower()}.>", handler=_keeper(seen)
        )
        await follower.start()
        await asyncio.wait_for(follower.caught_up.wait(), 10)

        restartable_nats.stop()
        await asyncio.sleep(0.5)
        restartable_nats.start()
        await _until(lambda: nc.is_connected, 30, lambda: "nats-py did not reconnect")
        reasons: list[str] = []
        reset = follower._reset

        async def record(backoff: float) -> float:
            reasons.append(follower._reset_reason or "")
            return await reset(backoff)

        follower._reset = record  # type: ignore[method-assign]
        with contextlib.suppress(Exception):
            await _publish(nc, stream, 50, 50)
        await _until(lambda: len(seen) >= 100, 30, lambda: f"{len(seen)} of 100, resets {follower.resets}")
        assert _payloads(seen) == list(range(100))
        assert follower.resets >= 1
        assert reasons == ["reconnected"] * len(reasons)  # not a stall: the reconnection said it
        await follower.stop()
    finally:
        await nc.close()
