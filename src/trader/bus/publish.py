"""Publishing batches to JetStream with acknowledgements, deduplication ids and retry.

Every message carries a ``Nats-Msg-Id`` where its producer has a natural identity (venue + trade id),
so a batch that is retried after a lost acknowledgement is stored once: JetStream drops the copies
that arrive within the stream's duplicate window.

The acknowledgements come back on one routed subscription per connection (``AckedPublisher``), read
in bulk by the connection's parser: nats-py's ``publish_async`` makes a ``Msg``, parses headers and
calls a coroutine for each acknowledgement, which cost the trading services more than their work.
"""

from __future__ import annotations

import asyncio
import contextlib
import weakref
from collections.abc import Awaitable, Callable, Sequence
from dataclasses import dataclass, field
from typing import Any

import msgspec
from nats.aio.client import Client
from nats.aio.msg import Msg
from nats.js import JetStreamContext
from nats.js.errors import APIError, NoStreamResponseError

from trader.bus.wire import RawMessage, bulk_parser, connection_of, subscribe_raw

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
    # The highest stream sequence acknowledged (a duplicate's is its first copy's): what a reader of
    # the stream must have read to have seen all of the batch.
    last_seq: int = 0


class PubAck(msgspec.Struct):
    """JetStream's answer to a publish: where the message was stored, or why not."""

    stream: str = ""
    seq: int = 0
    duplicate: bool = False
    error: dict[str, Any] | None = None


_decode_ack = msgspec.json.Decoder(PubAck).decode


class AckedPublisher:
    """Publishes to JetStream and gives a future per message for its acknowledgement, which arrives on
    this publisher's own inbox, read raw and in bulk."""

    def __init__(self, nc: Client) -> None:
        self.nc = nc
        self._prefix = nc.new_inbox() + "."
        self._prefix_bytes = self._prefix.encode()
        self._futures: dict[bytes, asyncio.Future[PubAck]] = {}
        self._next = 0
        self._started = False
        self._starting = asyncio.Lock()

    async def _start(self) -> None:
        # Routed before anything is published. The callback sees only what the parser leaves to
        # nats-py: a status message (503, no stream takes the subject).
        await subscribe_raw(self.nc, self._prefix + "*", self._on_acks, status=self._on_status)
        self._started = True

    async def publish(
        self, subject: str, payload: bytes, headers: dict[str, str] | None
    ) -> asyncio.Future[PubAck]:
        if not self._started:
            async with self._starting:
                if not self._started:
                    await self._start()
        self._next += 1
        token = b"%d" % self._next
        future: asyncio.Future[PubAck] = asyncio.get_running_loop().create_future()
        self._futures[token] = future
        try:
            await self.nc.publish(subject, payload, reply=self._prefix + token.decode(), headers=headers)
        except BaseException:
            del self._futures[token]
            raise
        return future

    def forget_unanswered(self) -> None:
        """Drops the futures given up on (cancelled after a timeout): their answers, if any, are late."""
        self._futures = {token: f for token, f in self._futures.items() if not f.done()}

    def _on_acks(self, messages: list[RawMessage]) -> None:
        futures, start = self._futures, len(self._prefix_bytes)
        for subject, _reply, _headers, payload in messages:
            future = futures.pop(subject[start:], None)
            if future is None or future.done():
                continue
            try:
                ack = _decode_ack(payload)
            except msgspec.DecodeError as exc:
                future.set_exception(exc)
                continue
            if ack.error is not None:
                future.set_exception(_api_error(ack.error))
            else:
                future.set_result(ack)

    async def _on_status(self, msg: Msg) -> None:
        future = self._futures.pop(msg.subject[len(self._prefix) :].encode(), None)
        if future is not None and not future.done():
            future.set_exception(NoStreamResponseError())


def _api_error(error: dict[str, Any]) -> APIError:
    """The error JetStream answered, as nats-py's class for its code (``from_error`` raises it)."""
    try:
        APIError.from_error(error)
    except APIError as exc:
        return exc
    except Exception:  # fields nats-py does not know
        pass
    return APIError(code=error.get("code"), description=str(error.get("description", error)))


_publishers: weakref.WeakKeyDictionary[Client, AckedPublisher] = weakref.WeakKeyDictionary()


def publisher_of(js: JetStreamContext) -> AckedPublisher:
    """The connection's ``AckedPublisher`` (a ``TypeError`` for a connection not made by
    ``trader.bus.connection.connect_nats``)."""
    nc = connection_of(js)
    bulk_parser(nc)
    publisher = _publishers.get(nc)
    if publisher is None:
        publisher = _publishers[nc] = AckedPublisher(nc)
    return publisher


async def publish_acked(
    js: JetStreamContext, subject: str, payload: bytes, headers: dict[str, str] | None = None
) -> asyncio.Future[Any]:
    """Publish one message; the future gives its acknowledgement (``duplicate``, ``seq``)."""
    return await publisher_of(js).publish(subject, payload, headers)


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
            future = await publish_acked(js, item.subject, item.payload, item.all_headers())
        except Exception as exc:  # not connected, buffer full: the rest of the batch waits for a retry
            result.failed.extend(items[index:])
            result.errors.append(f"publish: {exc!r}")
            break
        pending.append((item, future))
    if pending:
        _done, not_done = await asyncio.wait([f for _, f in pending], timeout=ack_timeout)
        for future in not_done:
            future.cancel()  # the message is retried by the caller
        if not_done:
            publisher_of(js).forget_unanswered()
        for item, future in pending:
            if future in not_done:
                result.failed.append(item)
                continue
            error = future.exception()
            if error is not None:
                result.failed.append(item)
                result.errors.append(f"ack: {error!r}")
            else:
                ack = future.result()
                result.last_seq = max(result.last_seq, ack.seq)
                if ack.duplicate:
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

    @property
    def idle(self) -> bool:
        """Everything put so far is published (stored)."""
        return self._empty.is_set()

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
