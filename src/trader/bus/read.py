"""Reading streams: one way for each kind of reading a service does.

- ``Stored``: a message as the stream holds it (sequence, subject, bytes, headers): what every handler
  here is given; ``Delivery``: one message of a ``trader.runtime.consumer.StreamConsumer`` (made in C,
  for every message); ``ack_fields``: what a JetStream acknowledgement subject says of its message.
- ``decode_message``: a message decoded strictly, or ``InvalidMessage`` naming the field at fault;
  ``refusal`` (and ``Stored.refused``): a message on its way to the dead letters, the reason starting
  with the field.
- ``Follower``: an ordered consumer (ephemeral, no acknowledgements, re-created by nats-py after a gap)
  for state a service rebuilds at every start: all of some subjects, the latest message per subject, or
  from a sequence on, then every new one. ``caught_up`` tells when what the stream held at the start has
  been handled.
- ``replay`` (``replay_messages`` for a list): what a stream holds on some subjects now (all of it,
  a range of sequences, or the latest per subject), read once in bulk, and then no more: the CLI's,
  the api's and a service's one-shot reads.

Wire-level only: nothing here knows the runtime or a service (``trader.runtime.intake`` reads through
these).
"""

from __future__ import annotations

import asyncio
import contextlib
import re
import time
from collections.abc import Awaitable, Callable
from datetime import UTC, datetime
from typing import TypeVar

import msgspec
import structlog
from nats.aio.msg import Msg
from nats.js import JetStreamContext
from nats.js.api import AckPolicy, ConsumerConfig, ConsumerInfo, DeliverPolicy

from trader.bus.refusals import InvalidMessage, Refused
from trader.bus.wire import PushInbox, RawMessage, connection_of, parse_headers

T = TypeVar("T")
_log = structlog.get_logger("trader.bus.read")


class Delivery(msgspec.Struct):
    """One message of the stream. (A msgspec struct: made for every message, it is made in C.)"""

    seq: int  # stream sequence
    arrival_ms: int  # when JetStream stored it
    subject: str
    data: bytes
    raw_headers: bytes | None  # as on the wire: parsed only when asked for

    @property
    def headers(self) -> dict[str, str] | None:
        return parse_headers(self.raw_headers)


def ack_fields(reply: bytes) -> tuple[int, int, int, int]:
    """(stream sequence, consumer sequence, arrival in ms, messages pending) from a JetStream ack
    subject; ``ValueError`` (or ``IndexError``) for a subject that is not one.

    ``$JS.ACK.<stream>.<consumer>.<delivered>.<sseq>.<cseq>.<ts_ns>.<pending>`` or the newer form with
    domain and account hash after ``ACK`` and a random token at the end.
    """
    tokens = reply.split(b".")
    if len(tokens) != 9:
        if len(tokens) < 11:
            raise ValueError(f"not a JetStream ack subject: {reply!r}")
        tokens = tokens[2:]
    return int(tokens[5]), int(tokens[6]), int(tokens[7]) // 1_000_000, int(tokens[8])


def ack_metadata(reply: str) -> tuple[int, int, int]:
    """(stream sequence, arrival in ms, messages pending) of a nats-py message's reply subject."""
    seq, _consumer_seq, arrived, pending = ack_fields(reply.encode())
    return seq, arrived, pending


class Stored:
    """A message as the stream holds it. Headers read raw stay bytes until someone asks for them (a
    follower of ticks never does: parsing them was a fourteenth of its work)."""

    __slots__ = ("_headers", "_raw_headers", "arrival_ms", "data", "seq", "subject")

    def __init__(
        self,
        seq: int,
        subject: str,
        data: bytes,
        headers: dict[str, str] | None,
        arrival_ms: int,  # when JetStream stored it
        raw_headers: bytes | None = None,  # instead of ``headers``: as on the wire
    ) -> None:
        self.seq, self.subject, self.data, self.arrival_ms = seq, subject, data, arrival_ms
        self._headers, self._raw_headers = headers, raw_headers

    @classmethod
    def raw(cls, seq: int, subject: bytes, data: bytes, raw_headers: bytes | None, arrival_ms: int) -> Stored:
        """A message read raw (``trader.bus.wire``)."""
        return cls(seq, subject.decode(), data, None, arrival_ms, raw_headers)

    @property
    def headers(self) -> dict[str, str] | None:
        if self._raw_headers is not None:
            self._headers, self._raw_headers = parse_headers(self._raw_headers), None
        return self._headers

    def __repr__(self) -> str:
        return f"Stored(seq={self.seq}, subject={self.subject!r}, data={self.data!r})"

    @classmethod
    def of(cls, message: Msg | Delivery) -> Stored:
        """A JetStream message, or a ``StreamConsumer`` delivery, as stored."""
        if isinstance(message, Delivery):
            return cls(
                message.seq, message.subject, message.data, None, message.arrival_ms, message.raw_headers
            )
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
    the stream at every start. A handler that raises does not stop it: ``on_error`` is told.

    The messages come raw (``PushInbox``, on a connection made by ``trader.bus.connection.connect_nats``),
    where nats-py's ordered consumer makes a ``Msg``, parses headers and calls a coroutine for each
    before the handler's: the followers of ticks, order states and positions take thousands a second.
    The ordered consumer's recovery is therefore this class's: a message whose consumer
    sequence is not the next one (something was lost: a slow reader), a heartbeat naming a later one,
    a reconnection (the server may have restarted and forgotten the consumer, and what it sent
    meanwhile is lost), or no heartbeat for ``STALL_HEARTBEATS`` intervals re-creates the consumer from
    the stream sequence after the last message handled. A flow control request is answered once the
    messages that came before it are handled, so a slow handler slows the server down instead of
    piling messages up here."""

    HEARTBEAT_S = 5.0
    STALL_HEARTBEATS = 3

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
        self.resets = 0  # consumers re-created after a gap or a stall
        self.flow_answered = 0  # flow control requests answered
        self._end_seq = 0
        # The consumer in use, the last stream and consumer sequences handled, and why the consumer
        # must be re-created (None: it needs not).
        self._inbox: PushInbox | None = None
        self._consumer: str | None = None
        self._stream_seq = 0
        self._consumer_seq = 0
        self._reset_reason: str | None = None
        self._last_heard = 0.0
        self._task: asyncio.Task[None] | None = None
        self._taken = 0  # messages taken from the inbox since it opened
        self._claimed = 0  # the last consumer sequence the server says it delivered (heartbeats)
        self._reconnects = 0  # the connection's reconnections when the consumer was opened
        self._flow: list[tuple[int, str]] = []  # flow control to answer: (after this many taken, reply)

    async def start(self) -> None:
        # What the stream holds now is the past to catch up with; a message at or past its last
        # sequence is live. (A busy subject may never show zero pending.)
        self._end_seq = (await self.js.stream_info(self.stream)).state.last_seq
        info = await self._open()
        self._task = asyncio.create_task(self._read())
        if info.num_pending == 0 and (info.delivered is None or info.delivered.consumer_seq == 0):
            self.caught_up.set()  # nothing to replay

    async def _handle(self, stored: Stored, seq: int, pending: int) -> None:
        try:
            await self.handler(stored)
        except Exception as exc:  # one bad message must not stop the follower
            if self.on_error is not None:
                self.on_error(stored, exc)
        self.handled += 1
        if pending == 0 or seq >= self._end_seq:
            self.caught_up.set()

    async def _open(self) -> ConsumerInfo:
        """A consumer from where this follower is: its start, or the message after the last handled."""
        policy, start = self.deliver_policy, self.start_seq
        if self._stream_seq:
            policy, start = DeliverPolicy.BY_START_SEQUENCE, self._stream_seq + 1
        config = ConsumerConfig(
            deliver_policy=policy,
            opt_start_seq=start,
            filter_subject=self.subjects[0] if len(self.subjects) == 1 else None,
            filter_subjects=self.subjects if len(self.subjects) > 1 else None,
            # What nats-py's ordered consumer asks for.
            ack_policy=AckPolicy.NONE,
            max_deliver=1,
            flow_control=True,
            idle_heartbeat=self.HEARTBEAT_S,
            mem_storage=True,
            num_replicas=1,
            inactive_threshold=self.inactive_threshold_s,
        )
        inbox = PushInbox(connection_of(self.js), status=self._on_status)
        try:
            info = await inbox.open(self.js, self.stream, config)
        except BaseException:
            await inbox.close()
            raise
        self._inbox, self._consumer = inbox, info.name
        self._consumer_seq, self._reset_reason = 0, None
        self._taken, self._flow, self._claimed = 0, [], 0
        self._reconnects = connection_of(self.js).stats["reconnects"]
        self._last_heard = time.monotonic()
        return info

    async def _on_status(self, msg: Msg) -> None:
        """A heartbeat or a flow control request (the data messages come raw)."""
        if self._inbox is None or msg.subject != self._inbox.subject:
            return  # from a consumer already dropped
        self._last_heard = time.monotonic()
        headers = msg.headers or {}
        if msg.reply:
            # Flow control: the server sends no more until answered; answered once what came before
            # it is handled (it is all in the inbox by now: a read's messages reach the inbox before
            # nats-py hands this over).
            self._flow.append((self._inbox.received, msg.reply))
            await self._answer_flow()
        stalled = headers.get("Nats-Consumer-Stalled")
        if stalled:  # the server has been waiting for an answer: give it now
            await connection_of(self.js).publish(stalled, b"")
        last = headers.get("Nats-Last-Consumer")
        if last is not None and last.isdigit():
            # Checked by the reader once it has taken what came before this heartbeat.
            self._claimed = int(last)
            self._inbox.wake()

    async def _read(self) -> None:
        """Hand every message to the handler, in order, until stopped; re-create the consumer when
        something was lost or it stalled."""
        stall_s = self.HEARTBEAT_S * self.STALL_HEARTBEATS
        backoff = 0.0
        while True:
            inbox = self._inbox
            if inbox is None or self._reset_reason is not None:
                backoff = await self._reset(backoff)
                continue
            if self._claimed > self._consumer_seq and not inbox.messages:
                # All that came before the heartbeat is handled, and some of it never came.
                self._reset_reason = f"heartbeat: {self._claimed} delivered, {self._consumer_seq} came"
                continue
            if connection_of(self.js).stats["reconnects"] != self._reconnects:
                self._reset_reason = "reconnected"
                continue
            # A second at most: a reconnection is noticed that soon, not at the next heartbeat.
            if not await inbox.wait(min(self.HEARTBEAT_S, 1.0)):
                if time.monotonic() - self._last_heard > stall_s:
                    self._reset_reason = f"no heartbeat for {stall_s:g}s"
                continue
            self._last_heard = time.monotonic()
            await self._take(inbox.take())
            await self._answer_flow()

    async def _answer_flow(self) -> None:
        while self._flow and self._flow[0][0] <= self._taken:
            _, reply = self._flow.pop(0)
            with contextlib.suppress(Exception):  # not connected: the consumer will be re-created
                await connection_of(self.js).publish(reply, b"")
                self.flow_answered += 1

    async def _take(self, messages: list[RawMessage]) -> None:
        for subject, reply, headers, data in messages:
            self._taken += 1
            try:
                seq, consumer_seq, arrived, pending = ack_fields(reply)
            except (IndexError, ValueError):
                continue  # not from JetStream
            if consumer_seq != self._consumer_seq + 1:
                self._reset_reason = f"consumer sequence {consumer_seq} after {self._consumer_seq}"
                return  # the rest comes again from the new consumer
            self._consumer_seq, self._stream_seq = consumer_seq, seq
            await self._handle(Stored.raw(seq, subject, data, headers, arrived), seq, pending)

    async def _reset(self, backoff: float) -> float:
        """Drop the consumer in use and open one from the message after the last handled; the next
        backoff (a server away: each try waits longer, up to 5 s)."""
        if backoff:
            await asyncio.sleep(backoff)
        reason = self._reset_reason or "no consumer"
        await self._close()
        try:
            await self._open()
        except Exception as exc:
            _log.warning("follower.reopen_failed", stream=self.stream, error=repr(exc))
            self._reset_reason = reason
            return min(max(backoff * 2, 0.1), 5.0)
        self.resets += 1
        _log.info(
            "follower.reset",
            stream=self.stream,
            subjects=self.subjects,
            reason=reason,
            from_seq=self._stream_seq + 1,
        )
        return 0.0

    async def _close(self) -> None:
        inbox, name, self._inbox, self._consumer = self._inbox, self._consumer, None, None
        if inbox is not None:
            await inbox.close()
        if name is not None:
            with contextlib.suppress(Exception):
                await self.js.delete_consumer(self.stream, name)

    async def stop(self) -> None:
        if self._task is not None:
            self._task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._task
            self._task = None
        await self._close()


# Reading once -------------------------------------------------------------------------------------


async def replay(
    js: JetStreamContext,
    stream: str,
    subjects: str | list[str],
    handler: Handler,
    *,
    deliver_policy: DeliverPolicy = DeliverPolicy.ALL,
    after: int = 0,
    since_ms: int | None = None,
    upto: int | None = None,
    timeout: float = 60.0,
) -> int:
    """Hand every message of ``subjects`` stored now (or the latest per subject), oldest first, to
    ``handler``; returns how many there were. ``after``/``upto``: only those of the stream sequences
    after ``after`` up to ``upto`` included; ``since_ms`` (instead of ``after``): only those stored
    from that time on (epoch ms, by the stream's arrival time). A handler that raises ends the replay
    with its error; ``TimeoutError`` when ``timeout`` seconds pass without a message. The one way to
    read a stream once (a service reads through ``trader.runtime.intake``, whose mode ONCE reads so)."""
    if after and since_ms is not None:
        raise ValueError("a replay starts after a sequence or from a time, not both")
    names = [subjects] if isinstance(subjects, str) else list(subjects)
    last_seq = (await js.stream_info(stream)).state.last_seq
    end = last_seq if upto is None else min(upto, last_seq)
    if end <= after:
        return 0
    policy, start, start_time = deliver_policy, None, None
    if after:
        policy, start = DeliverPolicy.BY_START_SEQUENCE, after + 1
    elif since_ms is not None:
        policy = DeliverPolicy.BY_START_TIME
        start_time = datetime.fromtimestamp(max(since_ms, 0) / 1000, tz=UTC)
    config = ConsumerConfig(
        ack_policy=AckPolicy.ALL,
        deliver_policy=policy,
        opt_start_seq=start,
        opt_start_time=start_time,
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


REPLAY_WINDOW = 20_000  # messages delivered ahead of the handler: bounds memory, not speed


async def _take_all(inbox: PushInbox, end: int, handler: Handler, timeout: float, what: str) -> int:
    """Hand over what ``inbox`` receives until nothing is pending or ``end`` is reached (what comes
    after ``end`` is not handed over). Read raw and in bulk (``PushInbox``), where an ordered consumer
    costs a coroutine call and a ``Msg`` per message; one acknowledgement per bulk (``AckPolicy.ALL``)
    paces the server: at most ``REPLAY_WINDOW`` unacknowledged."""
    handled, last_seq = 0, 0
    while True:
        if not await inbox.wait(timeout):
            raise TimeoutError(f"{what}: nothing for {timeout}s")
        done, last_reply = False, b""
        for subject, reply, headers, data in inbox.take():
            if not reply:
                continue  # not from JetStream
            last_reply = reply
            seq, _consumer_seq, arrived, pending = ack_fields(reply)
            if seq > end:
                done = True
                break
            if seq > last_seq:  # not a redelivery
                last_seq = seq
                await handler(Stored.raw(seq, subject, data, headers, arrived))
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
    after: int = 0,
    since_ms: int | None = None,
    upto: int | None = None,
    timeout: float = 60.0,
) -> list[Stored]:
    """The messages ``replay`` would hand over, as a list."""
    messages: list[Stored] = []

    async def keep(stored: Stored) -> None:
        messages.append(stored)

    await replay(
        js,
        stream,
        subjects,
        keep,
        deliver_policy=deliver_policy,
        after=after,
        since_ms=since_ms,
        upto=upto,
        timeout=timeout,
    )
    return messages
