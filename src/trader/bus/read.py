"""Reading streams: one way for each kind of reading a service does.

- ``Stored``: a message as the stream holds it (sequence, subject, bytes, headers): what every handler
  here is given, except a durable consumer's, which needs the ``Msg`` to acknowledge it.
- ``decode_message``: a message decoded strictly, or ``InvalidMessage`` naming the field at fault;
  ``refusal`` (and ``Stored.refused``): a message on its way to the dead letters, the reason starting
  with the field.
- ``Follower``: an ordered consumer (ephemeral, no acknowledgements, re-created by nats-py after a gap)
  for state a service rebuilds at every start: all of some subjects, the latest message per subject, or
  from a sequence on, then every new one. ``caught_up`` tells when what the stream held at the start has
  been handled. ``follow_latest``: a service's follower of the latest of each subject, then live.
- ``replay`` (``replay_messages`` for a list): what a stream holds on some subjects now, through a
  ``Follower``, and then no more.
- ``DurableConsumer``: work that must be done once: a durable push consumer with explicit
  acknowledgements, given after processing (and publishing), so a crash redelivers exactly the work in
  hand; its messages wait in a queue the service's loop reads with ``next_batch``.
- ``work_through`` and ``take_batch``: the loop of a service over a ``trader.runtime.consumer.
  StreamConsumer`` (the fast batch consumer from an exact position): each batch processed, then
  acknowledged; each message decoded and handled, the refused ones dead-lettered, what it caused
  published.
"""

from __future__ import annotations

import asyncio
import contextlib
import re
import time
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from typing import Any, Generic, TypeVar

import msgspec
from nats.aio.msg import Msg
from nats.js import JetStreamContext
from nats.js.api import AckPolicy, ConsumerConfig, DeliverPolicy

from trader.bus.publish import Outgoing
from trader.bus.wire import PushInbox, connection_of, parse_headers, reads_in_bulk
from trader.marketdata.decode import InvalidMessage
from trader.runtime.consumer import Delivery, StreamConsumer, ack_metadata
from trader.runtime.service import Refused, Runtime

T = TypeVar("T")


@dataclass(frozen=True, slots=True)
class Stored:
    """A message as the stream holds it."""

    seq: int
    subject: str
    data: bytes
    headers: dict[str, str] | None
    arrival_ms: int  # when JetStream stored it

    @classmethod
    def of(cls, message: Msg | Delivery) -> Stored:
        """A JetStream message, or a ``StreamConsumer`` delivery, as stored."""
        if isinstance(message, Delivery):
            return cls(message.seq, message.subject, message.data, message.headers, message.arrival_ms)
        seq, arrived, _pending = ack_metadata(message.reply)  # nats-py's ``metadata`` is slower to make
        return cls(seq, message.subject, message.data, message.headers, arrived)

    def refused(self, exc: InvalidMessage) -> Refused:
        return refusal(self, exc.field, exc.reason)


# Decoding and refusing ----------------------------------------------------------------------------

_PATH = re.compile(r"at `\$\.?([^`\[]*)")


def decode_message(decoder: msgspec.json.Decoder[T], data: bytes) -> T:
    """Decode strictly; a failure becomes ``InvalidMessage`` with the field named by msgspec's path
    (``request.quantity``; ``body`` when it names none)."""
    try:
        return decoder.decode(data)
    except msgspec.ValidationError as exc:
        match = _PATH.search(str(exc))
        field = (match.group(1) if match else "") or "body"
        raise InvalidMessage(field, str(exc)) from None
    except msgspec.DecodeError as exc:
        raise InvalidMessage("body", f"malformed JSON: {exc}") from None


def refusal(message: Stored | Msg, field: str, reason: str) -> Refused:
    """A consumed message on its way to the dead letters; the reason starts with the field."""
    stored = message if isinstance(message, Stored) else Stored.of(message)
    return Refused(stored.seq, stored.subject, stored.data, stored.headers, field, f"{field}: {reason}")


def subject_token(subject: str) -> str:
    """The last token of a subject: the strategy of ``order.risk.<strategy>``."""
    return subject.rsplit(".", 1)[-1]


# Following ----------------------------------------------------------------------------------------

Handler = Callable[[Stored], Awaitable[None]]
ErrorHook = Callable[[Stored, Exception], None]


class Follower:
    """An ordered push consumer on ``subjects`` (one, or several) of ``stream``, from ``deliver_policy``
    (or from ``start_seq``), in stream order. Nothing is acknowledged: the state it feeds is rebuilt from
    the stream at every start. A handler that raises does not stop it: ``on_error`` is told."""

    def __init__(
        self,
        js: JetStreamContext,
        *,
        stream: str,
        subjects: str | list[str],
        handler: Handler,
        deliver_policy: DeliverPolicy = DeliverPolicy.ALL,
        start_seq: int | None = None,
        on_error: ErrorHook | None = None,
        inactive_threshold_s: float = 300.0,
    ) -> None:
        self.js, self.stream, self.handler = js, stream, handler
        self.subjects = [subjects] if isinstance(subjects, str) else list(subjects)
        self.deliver_policy = DeliverPolicy.BY_START_SEQUENCE if start_seq else deliver_policy
        self.start_seq = start_seq
        self.on_error = on_error
        self.inactive_threshold_s = inactive_threshold_s
        self.caught_up = asyncio.Event()
        self.handled = 0
        self._end_seq = 0
        self._sub: Any = None

    async def start(self) -> None:
        # What the stream holds now is the past to catch up with; a message at or past its last
        # sequence is live. (A busy subject may never show zero pending.)
        self._end_seq = (await self.js.stream_info(self.stream)).state.last_seq
        config = ConsumerConfig(
            deliver_policy=self.deliver_policy,
            opt_start_seq=self.start_seq,
            filter_subjects=self.subjects if len(self.subjects) > 1 else None,
        )
        self._sub = await self.js.subscribe(
            self.subjects[0],
            stream=self.stream,
            cb=self._on_message,
            ordered_consumer=True,
            config=config,
            deliver_policy=self.deliver_policy,
            inactive_threshold=self.inactive_threshold_s,
        )
        info = await self._sub.consumer_info()
        if info.num_pending == 0 and (info.delivered is None or info.delivered.consumer_seq == 0):
            self.caught_up.set()  # nothing to replay

    async def _on_message(self, msg: Msg) -> None:
        if not msg.reply:  # flow control and heartbeats are nats-py's
            return
        seq, arrived, pending = ack_metadata(msg.reply)
        stored = Stored(seq, msg.subject, msg.data, msg.headers, arrived)
        try:
            await self.handler(stored)
        except Exception as exc:  # one bad message must not stop the follower
            if self.on_error is not None:
                self.on_error(stored, exc)
        self.handled += 1
        if pending == 0 or seq >= self._end_seq:
            self.caught_up.set()

    async def stop(self) -> None:
        if self._sub is not None:
            with contextlib.suppress(Exception):
                await self._sub.unsubscribe()
            self._sub = None


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


# Replaying ----------------------------------------------------------------------------------------


async def replay(
    js: JetStreamContext,
    stream: str,
    subjects: str | list[str],
    handler: Handler,
    *,
    deliver_policy: DeliverPolicy = DeliverPolicy.ALL,
    timeout: float = 60.0,
) -> int:
    """Hand every message of ``subjects`` (or the latest per subject) stored now to ``handler``, oldest
    first; returns how many there were. A handler that raises ends the replay with its error;
    ``TimeoutError`` when ``timeout`` seconds pass without a message."""
    if deliver_policy == DeliverPolicy.ALL and reads_in_bulk(connection_of(js)):
        return await _replay_all(js, stream, subjects, handler, timeout)
    failure: list[Exception] = []

    def on_error(_stored: Stored, exc: Exception) -> None:
        failure.append(exc)
        follower.caught_up.set()  # wakes the wait below

    follower = Follower(
        js,
        stream=stream,
        subjects=subjects,
        handler=handler,
        deliver_policy=deliver_policy,
        on_error=on_error,
        inactive_threshold_s=5.0,  # the server forgets the consumer soon after
    )
    await follower.start()
    try:
        handled = -1
        while not follower.caught_up.is_set():
            if follower.handled == handled:
                raise TimeoutError(f"replay of {subjects} in {stream}: nothing for {timeout}s")
            handled = follower.handled
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(follower.caught_up.wait(), timeout)
    finally:
        await follower.stop()
    if failure:
        raise failure[0]
    return follower.handled


REPLAY_WINDOW = 20_000  # messages delivered ahead of the handler: bounds memory, not speed


async def _replay_all(
    js: JetStreamContext, stream: str, subjects: str | list[str], handler: Handler, timeout: float
) -> int:
    """``replay`` of the whole history: an ephemeral consumer read raw and in bulk (``PushInbox``),
    where an ordered consumer costs a coroutine call and a ``Msg`` per message and several times the
    time (every service replays its history at start). One acknowledgement per bulk (``AckPolicy.ALL``)
    paces the server: at most ``REPLAY_WINDOW`` unacknowledged."""
    names = [subjects] if isinstance(subjects, str) else list(subjects)
    end = (await js.stream_info(stream)).state.last_seq
    if end == 0:
        return 0
    config = ConsumerConfig(
        ack_policy=AckPolicy.ALL,
        deliver_policy=DeliverPolicy.ALL,
        max_ack_pending=REPLAY_WINDOW,
        ack_wait=300,
        inactive_threshold=5.0,  # the server forgets the consumer soon after, whatever happens here
        filter_subject=names[0] if len(names) == 1 else None,
        filter_subjects=names if len(names) > 1 else None,
    )
    inbox = PushInbox(connection_of(js))
    info = None
    try:
        info = await inbox.open(js, stream, config)
        if not info.num_pending:
            return 0
        return await _take_all(inbox, end, handler, timeout, f"replay of {subjects} in {stream}")
    finally:
        await inbox.close()
        if info is not None:
            with contextlib.suppress(Exception):
                await js.delete_consumer(stream, info.name)


async def _take_all(inbox: PushInbox, end: int, handler: Handler, timeout: float, what: str) -> int:
    """Hand over what ``inbox`` receives until nothing is pending or ``end`` is reached."""
    handled, last_seq = 0, 0
    while True:
        if not await inbox.wait(timeout):
            raise TimeoutError(f"{what}: nothing for {timeout}s")
        done, last_reply = False, b""
        for subject, reply, headers, data in inbox.take():
            if not reply:
                continue  # not from JetStream
            last_reply = reply
            seq, arrived, pending = ack_metadata(reply.decode())
            if seq > last_seq:  # not a redelivery
                last_seq = seq
                await handler(Stored(seq, subject.decode(), data, parse_headers(headers), arrived))
                handled += 1
            if pending == 0 or seq >= end:
                done = True
                break
        if last_reply:
            await inbox.ack(last_reply)  # paces delivery only: the consumer is dropped after
        if done:
            return handled


async def replay_messages(
    js: JetStreamContext,
    stream: str,
    subjects: str | list[str],
    *,
    deliver_policy: DeliverPolicy = DeliverPolicy.ALL,
    timeout: float = 60.0,
) -> list[Stored]:
    """The messages ``replay`` would hand over, as a list (for small sets: latest per subject)."""
    messages: list[Stored] = []

    async def keep(stored: Stored) -> None:
        messages.append(stored)

    await replay(js, stream, subjects, keep, deliver_policy=deliver_policy, timeout=timeout)
    return messages


# Durable work -------------------------------------------------------------------------------------


class DurableConsumer:
    """A durable push consumer on ``subjects`` of ``stream`` that puts its messages on ``inbox``.

    Created on the first start with ``DeliverPolicy.ALL``; later starts bind to it, so delivery resumes
    after the last acknowledged message and what was in hand at a crash comes again (``num_delivered``
    above one)."""

    def __init__(
        self,
        js: JetStreamContext,
        *,
        stream: str,
        name: str,
        subjects: list[str],
        inbox: asyncio.Queue[Msg],
        max_ack_pending: int = 1000,
        ack_wait_s: float = 10.0,
    ) -> None:
        self.js, self.stream, self.name, self.subjects, self.inbox = js, stream, name, subjects, inbox
        self.max_ack_pending, self.ack_wait_s = max_ack_pending, ack_wait_s
        self._sub: Any = None

    async def start(self) -> None:
        config = ConsumerConfig(
            durable_name=self.name,
            ack_policy=AckPolicy.EXPLICIT,
            deliver_policy=DeliverPolicy.ALL,
            max_ack_pending=self.max_ack_pending,
            ack_wait=self.ack_wait_s,
        )
        if len(self.subjects) > 1:
            config.filter_subjects = list(self.subjects)
        self._sub = await self.js.subscribe(
            self.subjects[0],
            stream=self.stream,
            durable=self.name,
            cb=self._on_message,
            manual_ack=True,
            config=config,
        )

    async def _on_message(self, msg: Msg) -> None:
        self.inbox.put_nowait(msg)

    async def pending(self) -> int:
        """Messages not yet delivered (the lag)."""
        if self._sub is None:
            return 0
        info = await self._sub.consumer_info()
        return info.num_pending or 0

    async def stop(self) -> None:
        if self._sub is not None:
            with contextlib.suppress(Exception):
                await self._sub.unsubscribe()
            self._sub = None


async def next_batch(inbox: asyncio.Queue[Msg], max_batch: int, wait_s: float = 0.25) -> list[Msg]:
    """What the inbox holds, up to ``max_batch``, waiting up to ``wait_s`` for the first (else empty)."""
    try:
        first = await asyncio.wait_for(inbox.get(), timeout=wait_s)
    except TimeoutError:
        return []
    batch = [first]
    while len(batch) < max_batch and not inbox.empty():
        batch.append(inbox.get_nowait())
    return batch


async def ack_each(messages: list[Msg]) -> None:
    """Acknowledge each message (in one socket write: nothing awaits in between). A lost acknowledgement
    is a redelivery, which the services take as a repeat."""
    for msg in messages:
        with contextlib.suppress(Exception):
            await msg.ack()


def redelivered(msg: Msg) -> bool:
    """Delivered before: a crash (or a nak) came between its delivery and its acknowledgement."""
    return msg.metadata.num_delivered > 1


def arrival_ms(msg: Msg) -> int:
    """When JetStream stored the message, in epoch milliseconds."""
    return ack_metadata(msg.reply)[1]


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
