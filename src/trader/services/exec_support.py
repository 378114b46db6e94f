"""What the execution services share (execution-router, exeq, ptrc, pnl).

- ``replay``: every message a stream holds on some subjects, oldest first: how a restarted service
  rebuilds its state from the trading history (the trading streams are never aged out).
- ``Follower``: the latest stored message of each subject, then every new one, in order: for state that
  is "the latest of each" (quotes, positions), where a restart needs no history.
- ``decode_message``: a bus message decoded strictly, or ``InvalidMessage`` naming the field at fault,
  ready for the dead letters.
- The subjects these services add to the EXEC and POSITIONS streams (see the functions below). They sit
  beside the order-flow subjects of ``trader.bus.streams`` and match none of their wildcards.
"""

from __future__ import annotations

import contextlib
import re
from collections.abc import AsyncIterator, Awaitable, Callable
from dataclasses import dataclass
from typing import Any, TypeVar

import msgspec
import nats.errors
from nats.aio.msg import Msg
from nats.js import JetStreamContext
from nats.js.api import AckPolicy, ConsumerConfig, DeliverPolicy

from trader.marketdata.decode import InvalidMessage
from trader.runtime.service import Refused, Runtime

T = TypeVar("T")

# Header on what the router publishes: the EXEC stream sequence of the route message it answers, so that a
# restarted router knows where it stopped from the stream alone.
SOURCE_SEQ = "Trader-Source-Seq"


@dataclass(frozen=True, slots=True)
class Stored:
    """A message as the stream holds it."""

    seq: int
    subject: str
    data: bytes
    headers: dict[str, str] | None

    def refused(self, exc: InvalidMessage) -> Refused:
        return Refused(self.seq, self.subject, self.data, self.headers, exc.field, str(exc))


# Subjects the execution services add ------------------------------------------------------------


def exec_algo_order_subject(venue: str) -> str:
    """VenueOrder of an algo's child order, as exeq sent it to the venue (EXEC). Not ``exec.order.>``:
    the router and exeq's order intake do not see children."""
    return f"exec.algo.order.{venue}"


def exec_algo_report_subject(venue: str) -> str:
    """ExecutionReport about an algo's child that is not a fill (accepted, canceled, expired, rejected):
    kept for exeq's rebuild, and off ``exec.report.>`` because the oms knows only the parent order.
    A child's fills do go on ``exec.report.<venue>``: they fill the parent."""
    return f"exec.algo.report.{venue}"


def strategy_position_subject(account: str, venue: str, symbol: str, strategy: str) -> str:
    """Position of one strategy: five tokens, where the net ``position.<account>.<venue>.<symbol>`` has
    four, so ``position.*.*.*`` is every net position and ``position.*.*.*.*`` every strategy's."""
    return f"position.{account}.{venue}.{symbol}.{strategy}"


# Decoding ---------------------------------------------------------------------------------------

_PATH = re.compile(r"at `\$\.?([^`\[]*)")


def decode_message(decoder: msgspec.json.Decoder[T], data: bytes) -> T:
    """Decode strictly; a failure becomes ``InvalidMessage`` with the field named by msgspec's path."""
    try:
        return decoder.decode(data)
    except msgspec.ValidationError as exc:
        match = _PATH.search(str(exc))
        field = (match.group(1) if match else "") or "body"
        raise InvalidMessage(field, str(exc)) from None
    except msgspec.DecodeError as exc:
        raise InvalidMessage("body", f"malformed JSON: {exc}") from None


# Replay -----------------------------------------------------------------------------------------


async def replay(
    js: JetStreamContext, stream: str, subjects: list[str], *, batch: int = 512, timeout: float = 5.0
) -> AsyncIterator[Stored]:
    """Every message of ``stream`` on ``subjects``, oldest first, until none is pending (those stored
    while reading included): an ephemeral pull consumer without acknowledgements, removed at the end."""
    config = ConsumerConfig(
        ack_policy=AckPolicy.NONE,
        deliver_policy=DeliverPolicy.ALL,
        inactive_threshold=60.0,
        mem_storage=True,
        filter_subjects=subjects if len(subjects) > 1 else None,
    )
    sub = await js.pull_subscribe(subjects[0], stream=stream, config=config)
    try:
        pending = (await sub.consumer_info()).num_pending
        while pending > 0:
            try:
                msgs = await sub.fetch(min(batch, pending), timeout=timeout)
            except nats.errors.TimeoutError:
                pending = (await sub.consumer_info()).num_pending
                continue
            for msg in msgs:
                yield Stored(msg.metadata.sequence.stream, msg.subject, msg.data, msg.headers)
            pending = msgs[-1].metadata.num_pending if msgs else 0
    finally:
        with contextlib.suppress(Exception):
            name = (await sub.consumer_info()).name
            await sub.unsubscribe()
            await js.delete_consumer(stream, name)


# Following --------------------------------------------------------------------------------------

Handler = Callable[[Stored], Awaitable[None]]


class Follower:
    """An ordered push consumer: the latest stored message of each subject, then every new one, in
    stream order; nats-py re-creates it after a gap or a reconnect. Nothing is acknowledged: the state
    it feeds is rebuilt from the stream at every start."""

    def __init__(
        self,
        rt: Runtime,
        *,
        stream: str,
        subject: str,
        handler: Handler,
        deliver_policy: DeliverPolicy = DeliverPolicy.LAST_PER_SUBJECT,
    ) -> None:
        self.rt, self.stream, self.subject = rt, stream, subject
        self.handler, self.deliver_policy = handler, deliver_policy
        self._sub: Any = None
        self.last_seq = 0

    async def start(self) -> None:
        self._sub = await self.rt.js.subscribe(
            self.subject,
            stream=self.stream,
            cb=self._on_message,
            ordered_consumer=True,
            deliver_policy=self.deliver_policy,
            idle_heartbeat=5,
        )
        self.rt.log.info("follower.started", stream=self.stream, subject=self.subject)

    async def _on_message(self, msg: Msg) -> None:
        if not msg.reply:  # flow control and heartbeats are handled by nats-py
            return
        self.last_seq = msg.metadata.sequence.stream
        try:
            await self.handler(Stored(self.last_seq, msg.subject, msg.data, msg.headers))
        except Exception as exc:  # a handler bug must not stop the feed; it shows in the errors
            self.rt.metrics.count_error(f"{self.stream.lower()}.handler")
            self.rt.log.exception("follower.handler_failed", subject=msg.subject, error=repr(exc))

    async def stop(self) -> None:
        if self._sub is not None:
            with contextlib.suppress(Exception):
                await self._sub.unsubscribe()
            self._sub = None
