"""The runtime's helpers of the old readers that are still used: a follower's error hook (the
intake's and the strategy service's) and the loop of a service over its own ``StreamConsumer`` with
acknowledgements held a moment (the strategy service's orders). New code declares its inputs to the
intake (``trader.runtime.intake``) instead; these go once no service uses them.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Awaitable, Callable
from typing import Generic, TypeVar

from trader.bus.read import Delivery, ErrorHook, Stored
from trader.runtime.consumer import StreamConsumer
from trader.runtime.service import Runtime

T = TypeVar("T")


def handler_errors(rt: Runtime, stream: str) -> ErrorHook:
    """The error hook of a service's follower: counted (``<stream>.handler``) and logged with the trace."""

    def on_error(stored: Stored, exc: Exception) -> None:
        rt.metrics.count_error(f"{stream.lower()}.handler")
        rt.log.exception("follower.handler_failed", subject=stored.subject, error=repr(exc))

    return on_error


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
