"""The runtime's helpers of the old readers, for the services not on the intake yet (exeq, the
router, pnl and strategy, while they move): a follower's error hook, a follower of the latest of each
subject, and the loop of a service over its ``StreamConsumer``. New code declares its inputs to the
intake (``trader.runtime.intake``) instead; these go once no service uses them.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Awaitable, Callable
from typing import Generic, TypeVar

from nats.js.api import DeliverPolicy

from trader.bus.publish import Outgoing
from trader.bus.read import Delivery, ErrorHook, Follower, Stored
from trader.bus.refusals import InvalidMessage, Refused
from trader.runtime.consumer import StreamConsumer
from trader.runtime.service import Runtime

T = TypeVar("T")


def handler_errors(rt: Runtime, stream: str) -> ErrorHook:
    """The error hook of a service's follower: counted (``<stream>.handler``) and logged with the trace."""

    def on_error(stored: Stored, exc: Exception) -> None:
        rt.metrics.count_error(f"{stream.lower()}.handler")
        rt.log.exception("follower.handler_failed", subject=stored.subject, error=repr(exc))

    return on_error


def follow_latest(
    rt: Runtime,
    *,
    stream: str,
    subjects: str | list[str],
    decode: Callable[[bytes], T],
    apply: Callable[[T, Stored], Awaitable[None]],
) -> Follower:
    """A service's follower of the latest message of each subject, then of every new one: for state that
    is "the latest of each" (quotes, positions), where a restart needs no history. Each message is
    decoded (``InvalidMessage``: to the dead letters) and applied; an error is counted and logged."""

    async def handle(stored: Stored) -> None:
        try:
            value = decode(stored.data)
        except InvalidMessage as exc:
            await rt.dead_letter(stream, [stored.refused(exc)])
            return
        await apply(value, stored)

    return Follower(
        rt.js,
        stream=stream,
        subjects=subjects,
        handler=handle,
        deliver_policy=DeliverPolicy.LAST_PER_SUBJECT,
        on_error=handler_errors(rt, stream),
    )


# Acknowledging in bulk -----------------------------------------------------------------------------

A = TypeVar("A")

ACK_DELAY_S = 0.05


class LazyAcks(Generic[A]):
    """Acknowledgements held for ``delay_s`` and then sent together by ``send``.

    Each acknowledgement is a message to the server, and each burst of them a socket write: sending
    them as the work is done costs every service one more write per message, on the critical path of
    the next hop. Held a moment, those of many messages go in one write, off that path. Only work
    already done (and published) is added, so a crash meanwhile means a redelivery, which the
    services take as a repeat (message ids, versions)."""

    def __init__(self, send: Callable[[list[A]], Awaitable[None]], delay_s: float = ACK_DELAY_S) -> None:
        self._send, self.delay_s = send, delay_s
        self._held: list[A] = []
        self._timer: asyncio.Task[None] | None = None

    def add(self, item: A) -> None:
        self._held.append(item)
        if self._timer is None:
            self._timer = asyncio.create_task(self._flush_later())

    async def _flush_later(self) -> None:
        await asyncio.sleep(self.delay_s)
        self._timer = None
        await self.flush()

    async def flush(self) -> None:
        held, self._held = self._held, []
        if held:
            await self._send(held)

    async def close(self) -> None:
        """Send what is held now (the service is stopping)."""
        if self._timer is not None:
            self._timer.cancel()
            self._timer = None
        await self.flush()


# Working through a StreamConsumer -----------------------------------------------------------------


def work_consumer(rt: Runtime, *, stream: str, subject: str, start_seq: int) -> StreamConsumer:
    """The service's ``StreamConsumer`` for work that must not wait: each message is handed over as soon
    as it arrives, in batches of what arrived meanwhile (up to 1,000)."""
    return StreamConsumer(
        rt,
        stream=stream,
        name=rt.name,
        subject=subject,
        start_seq=start_seq,
        max_rows=1_000,
        max_wait_s=0.25,  # only paces the empty batches of a quiet stream
        eager=True,
    )


async def work_through(
    rt: Runtime, consumer: StreamConsumer, process: Callable[[list[Delivery]], Awaitable[None]]
) -> None:
    """Until the service stops: every batch of ``consumer`` through ``process``, then acknowledged (a
    moment later, with the batches after it: one acknowledgement covers all before it)."""

    async def ack_latest(batches: list[list[Delivery]]) -> None:
        await consumer.ack(batches[-1])

    acks = LazyAcks(ack_latest)
    try:
        async for batch in consumer.batches():
            if batch:
                started = time.perf_counter()
                await process(batch)
                acks.add(batch)
                rt.metrics.observe_batch(time.perf_counter() - started)
    finally:
        await acks.close()


async def take_batch(
    rt: Runtime,
    stream: str,
    batch: list[Delivery],
    handle: Callable[[Stored], Awaitable[list[Outgoing]]],
    *,
    latest_only: bool = False,
) -> None:
    """Each message of ``batch`` through ``handle``, in order: one it refuses (``InvalidMessage``) goes
    to the dead letters, then what the others caused is published; ``latest_only``: only the last of
    each subject (what a snapshot subject's consumers read is its latest message)."""
    out: list[Outgoing] = []
    refused: list[Refused] = []
    for delivery in batch:
        stored = Stored.of(delivery)
        try:
            out += await handle(stored)
        except InvalidMessage as exc:
            refused.append(stored.refused(exc))
    await rt.dead_letter(stream, refused)
    if latest_only:
        out = list({item.subject: item for item in out}.values())  # a dict keeps the last, in order
    await rt.publish_reliably(out)
    rt.metrics.count_in(len(batch))
