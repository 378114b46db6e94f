"""Reading the trading streams: followers that replay and then keep up, and durable work consumers.

A ``Follower`` is an ordered consumer (ephemeral, no acknowledgements, re-created by nats-py after a
gap) for state a service rebuilds on every start: all of a subject, the latest message per subject, or
from a sequence on. ``caught_up`` tells when what the stream held at the start has been handled.

A ``DurableConsumer`` is for work that must be done once: a durable push consumer with explicit
acknowledgements, which the service gives after processing (and publishing), so a crash redelivers
exactly the work in hand. Its messages wait in a queue the service's loop reads.
"""

from __future__ import annotations

import asyncio
import contextlib
import re
from collections.abc import Awaitable, Callable
from typing import Any

from nats.aio.msg import Msg
from nats.js import JetStreamContext
from nats.js.api import AckPolicy, ConsumerConfig, DeliverPolicy

from trader.runtime.service import Refused

Handler = Callable[[Msg], Awaitable[None]]


class Follower:
    def __init__(
        self,
        js: JetStreamContext,
        *,
        stream: str,
        subject: str,
        handle: Handler,
        deliver_policy: DeliverPolicy = DeliverPolicy.ALL,
        start_seq: int | None = None,
        on_error: Callable[[Msg, Exception], None] | None = None,
        inactive_threshold_s: float = 300.0,
    ) -> None:
        self.js, self.stream, self.subject, self.handle = js, stream, subject, handle
        self.inactive_threshold_s = inactive_threshold_s
        self.deliver_policy = DeliverPolicy.BY_START_SEQUENCE if start_seq else deliver_policy
        self.start_seq = start_seq
        self.on_error = on_error
        self.caught_up = asyncio.Event()
        self.handled = 0
        self._end_seq = 0
        self._sub: Any = None

    async def start(self) -> None:
        # What the stream holds now is the past to catch up with; a message at or past its last
        # sequence is live. (A busy subject may never show zero pending.)
        self._end_seq = (await self.js.stream_info(self.stream)).state.last_seq
        config = ConsumerConfig(deliver_policy=self.deliver_policy, opt_start_seq=self.start_seq)
        self._sub = await self.js.subscribe(
            self.subject,
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
        try:
            await self.handle(msg)
        except Exception as exc:  # one bad message must not stop the follower
            if self.on_error is not None:
                self.on_error(msg, exc)
        self.handled += 1
        meta = msg.metadata
        if meta.num_pending == 0 or meta.sequence.stream >= self._end_seq:
            self.caught_up.set()

    async def stop(self) -> None:
        if self._sub is not None:
            with contextlib.suppress(Exception):
                await self._sub.unsubscribe()
            self._sub = None


async def replay(
    js: JetStreamContext,
    stream: str,
    subject: str,
    handle: Handler,
    *,
    deliver_policy: DeliverPolicy = DeliverPolicy.ALL,
    timeout: float = 60.0,
) -> int:
    """Hand every message of ``subject`` (or the latest per subject) stored now to ``handle``; returns
    how many there were."""
    follower = Follower(
        js,
        stream=stream,
        subject=subject,
        handle=handle,
        deliver_policy=deliver_policy,
        inactive_threshold_s=5.0,  # the server forgets the consumer soon after
    )
    await follower.start()
    try:
        await asyncio.wait_for(follower.caught_up.wait(), timeout)
    finally:
        await follower.stop()
    return follower.handled


async def replay_messages(
    js: JetStreamContext,
    stream: str,
    subject: str,
    *,
    deliver_policy: DeliverPolicy = DeliverPolicy.ALL,
    timeout: float = 60.0,
) -> list[Msg]:
    """The messages ``replay`` would hand over, as a list (for small sets: latest per subject)."""
    messages: list[Msg] = []

    async def keep(msg: Msg) -> None:
        messages.append(msg)

    await replay(js, stream, subject, keep, deliver_policy=deliver_policy, timeout=timeout)
    return messages


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


def redelivered(msg: Msg) -> bool:
    """Delivered before: a crash (or a nak) came between its delivery and its acknowledgement."""
    return msg.metadata.num_delivered > 1


def arrival_ms(msg: Msg) -> int:
    """When JetStream stored the message, in epoch milliseconds."""
    return int(msg.metadata.timestamp.timestamp() * 1000)


_PATH = re.compile(r"at `\$\.?([^`]*)`")


def decode_field(exc: Exception) -> str:
    """The field a msgspec decoding error names (``request.quantity``), else ``body``."""
    match = _PATH.search(str(exc))
    return (match.group(1) or "body") if match else "body"


def refusal(msg: Msg, field_name: str, reason: str) -> Refused:
    """A consumed message on its way to the dead letters; the reason starts with the field."""
    seq = msg.metadata.sequence.stream if msg.reply else None
    return Refused(seq, msg.subject, msg.data, msg.headers, field_name, f"{field_name}: {reason}")


def subject_token(subject: str) -> str:
    """The last token of a subject: the strategy of ``order.risk.<strategy>``."""
    return subject.rsplit(".", 1)[-1]
