"""Publishing batches to JetStream with acknowledgements, deduplication ids and retry.

Every message carries a ``Nats-Msg-Id`` where its producer has a natural identity (venue + trade id),
so a batch that is retried after a lost acknowledgement is stored once: JetStream drops the copies
that arrive within the stream's duplicate window.
"""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import Awaitable, Callable, Sequence
from dataclasses import dataclass, field

from nats.js import JetStreamContext

MSG_ID = "Nats-Msg-Id"


@dataclass(frozen=True, slots=True)
class Outgoing:
    subject: str
    payload: bytes
    msg_id: str | None = None
    headers: dict[str, str] | None = None

    def all_headers(self) -> dict[str, str] | None:
        if self.msg_id is None:
            return self.headers
        return {**(self.headers or {}), MSG_ID: self.msg_id}


@dataclass
class BatchResult:
    stored: int = 0
    duplicates: int = 0
    failed: list[Outgoing] = field(default_factory=list)
    errors: list[str] = field(default_factory=list)


async def publish_batch(
    js: JetStreamContext, items: Sequence[Outgoing], *, ack_timeout: float = 5.0
) -> BatchResult:
    """Publish all of ``items`` pipelined and wait for every acknowledgement.

    What was not acknowledged in time, or was refused, comes back in ``failed`` for the caller to
    retry; nothing is dropped here.
    """
    result = BatchResult()
    pending: list[tuple[Outgoing, asyncio.Future]] = []
    for index, item in enumerate(items):
        try:
            future = await js.publish_async(item.subject, item.payload, headers=item.all_headers())
        except Exception as exc:  # not connected, buffer full: the rest of the batch waits for a retry
            result.failed.extend(items[index:])
            result.errors.append(f"publish: {exc!r}")
            break
        pending.append((item, future))
    if pending:
        _done, not_done = await asyncio.wait([f for _, f in pending], timeout=ack_timeout)
        for future in not_done:
            future.cancel()  # frees nats-py's slot for it; the message is retried by the caller
        for item, future in pending:
            if future in not_done:
                result.failed.append(item)
                continue
            exc = future.exception()
            if exc is not None:
                result.failed.append(item)
                result.errors.append(f"ack: {exc!r}")
            elif future.result().duplicate:
                result.duplicates += 1
            else:
                result.stored += 1
        if not_done:
            result.errors.append(f"ack: {len(not_done)} not acknowledged within {ack_timeout}s")
    return result


class Outbox:
    """Messages published in order by one task, so that a producer hands them over without waiting for
    their acknowledgements: what is put while a batch is in flight goes out as the next batch. For a
    producer whose inputs are not acknowledged per message (a market-data callback): one that must
    not acknowledge its input before the output is stored publishes itself."""

    def __init__(self, publish: Callable[[list[Outgoing]], Awaitable[object]]) -> None:
        self._publish = publish
        self._items: list[Outgoing] = []
        self._wake = asyncio.Event()
        self._empty = asyncio.Event()
        self._empty.set()
        self._task: asyncio.Task[None] | None = None

    def put(self, items: list[Outgoing]) -> None:
        if not items:
            return
        if self._task is None:
            self._task = asyncio.create_task(self._run(), name="outbox")
        self._items += items
        self._empty.clear()
        self._wake.set()

    @property
    def waiting(self) -> int:
        return len(self._items)

    async def _run(self) -> None:
        while True:
            await self._wake.wait()
            self._wake.clear()
            items, self._items = self._items, []
            try:
                await self._publish(items)  # publish_reliably: retries until stored
            except Exception:  # kept, in order, for the next try
                self._items = items + self._items
                self._wake.set()
                await asyncio.sleep(0.5)
                continue
            if not self._items:
                self._empty.set()

    async def drain(self) -> None:
        """Until everything put so far is published."""
        await self._empty.wait()

    async def close(self) -> None:
        await self.drain()
        if self._task is not None:
            self._task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._task
            self._task = None
