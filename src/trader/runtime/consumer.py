"""Consuming a stream in batches, fast, from an exact position.

A push consumer whose messages are read in bulk: the connection's ``BulkParser`` hands them over raw
(``trader.bus.wire.PushInbox``), one list per read from the socket, without nats-py's per-message
objects, header parsing or coroutine calls, which cost more than everything the tick consumers do
with a tick. The consumer awaits only when nothing is waiting. (nats-py's pull ``fetch`` awaits each
message on its own and tops out near 18k msgs/s on the reference machine.) The consumer is re-created
at every start from the position the service's own durable state names (a Delta commit, a
checkpoint), so correctness never rests on the consumer's acknowledgement state: acknowledgements
(``AckPolicy.ALL``, one per batch) only pace delivery and show the lag.
"""

from __future__ import annotations

import contextlib
import time
from collections.abc import AsyncIterator, Sequence

from nats.js.api import AckPolicy, ConsumerConfig, DeliverPolicy
from nats.js.errors import NotFoundError

from trader.bus.read import Delivery as Delivery  # the consumer's message, where it was always found
from trader.bus.read import ack_fields
from trader.bus.read import ack_metadata as ack_metadata
from trader.bus.wire import PushInbox, RawMessage
from trader.runtime.service import Runtime


class StreamConsumer:
    def __init__(
        self,
        rt: Runtime,
        *,
        stream: str,
        name: str,
        subject: str | Sequence[str],
        start_seq: int | None,
        max_rows: int = 10_000,
        max_bytes: int = 16 * 1024 * 1024,
        max_wait_s: float = 1.0,
        eager: bool = False,
        max_ack_pending: int | None = None,
        small_rows: int = 0,
        small_wait_s: float | None = None,
    ) -> None:
        self.rt = rt
        self.stream, self.name, self.subject = stream, name, subject
        self.start_seq = start_seq
        self.max_rows, self.max_bytes, self.max_wait_s = max_rows, max_bytes, max_wait_s
        # Eager: a batch is handed over as soon as anything is delivered (latency first; batches still
        # grow under load, with what arrived while the service worked on the previous one). Otherwise
        # a batch waits to fill up to max_rows, max_bytes or max_wait_s (throughput first: the lake
        # wants big files).
        self.eager = eager
        # A trickle: while the batches stay under ``small_rows`` rows, a batch waits up to
        # ``small_wait_s`` instead of ``max_wait_s`` (a Delta commit per second of a few rows each
        # makes a table whose every commit costs more than the last). The first small batch after a
        # big one still closes at ``max_wait_s``: the tail of a burst is not held back.
        self.small_rows = small_rows
        self.small_wait_s = max(small_wait_s or max_wait_s, max_wait_s)
        self._last_rows = small_rows  # the size of the last batch that had rows
        # Delivery stops this far ahead of the acknowledged batch: it bounds memory, and it must leave
        # room for the batches a service works on while it stores the ones before (a pipeline).
        self.max_ack_pending = max_ack_pending or max_rows * 2
        self._buffer: list[Delivery] = []
        self._bytes = 0
        self._last_seq = (start_seq or 1) - 1
        self._inbox: PushInbox | None = None
        self.pending = 0
        self._last_reply = b""
        self._to_ack: dict[int, bytes] = {}  # batch's last stream sequence -> the reply to acknowledge

    async def start(self) -> None:
        inbox = PushInbox(self.rt.nc)
        with contextlib.suppress(NotFoundError):
            await self.rt.js.delete_consumer(self.stream, self.name)
        subjects = [self.subject] if isinstance(self.subject, str) else list(self.subject)
        config = ConsumerConfig(
            durable_name=self.name,
            filter_subject=subjects[0] if len(subjects) == 1 else None,
            filter_subjects=subjects if len(subjects) > 1 else None,
            ack_policy=AckPolicy.ALL,
            deliver_policy=DeliverPolicy.BY_START_SEQUENCE if self.start_seq else DeliverPolicy.ALL,
            opt_start_seq=self.start_seq or None,
            max_ack_pending=self.max_ack_pending,
            ack_wait=300,
            idle_heartbeat=5,
        )
        self._inbox = inbox
        await inbox.open(self.rt.js, self.stream, config)
        self.rt.log.info("consumer.started", stream=self.stream, consumer=self.name, start_seq=self.start_seq)

    async def batches(self) -> AsyncIterator[list[Delivery]]:
        """Batches until the service stops; then intake stops and what is buffered comes last.

        An empty batch comes every ``max_wait_s`` while the stream is quiet, so that the service can do
        its time-driven work (closing bars on the clock, compaction)."""
        stopping = self.rt.stopping
        try:
            while not stopping.is_set():
                await self._fill()
                batch = self._take()
                self.rt.note_consumer(self.name, self.pending, batch[-1].arrival_ms if batch else None)
                yield batch
            self._drain()  # what was delivered before intake stops still counts
            await self.stop_intake()
            batch = self._take()
            if batch:
                yield batch
        finally:
            await self.stop_intake()

    def _full(self) -> bool:
        return len(self._buffer) >= self.max_rows or self._bytes >= self.max_bytes

    async def _fill(self) -> None:
        """Take what has arrived; wait for more until the batch is full (or, eager, not empty) or
        ``max_wait_s`` has passed (``small_wait_s`` for rows of a trickle: see ``small_rows``). With
        nothing, the batch is empty after ``max_wait_s``."""
        started = time.monotonic()
        deadline = started + self.max_wait_s
        self._drain()
        while not self._full() and not (self.eager and self._buffer) and self._inbox is not None:
            if self._buffer and self._trickling():
                deadline = started + self.small_wait_s
            remaining = deadline - time.monotonic()
            if remaining <= 0 and not self._inbox.messages:
                return
            # In steps of max_wait_s at most: a stopping service is not held for a trickle's wait.
            if not await self._inbox.wait(max(min(remaining, self.max_wait_s), 0)):
                if time.monotonic() >= deadline or self.rt.stopping.is_set():
                    return
                continue
            self._drain()

    def _trickling(self) -> bool:
        return len(self._buffer) < self.small_rows and self._last_rows < self.small_rows

    def _drain(self) -> None:
        """Everything that has arrived, up to a full batch."""
        if self._inbox is not None and self._inbox.messages:
            self._accept(self._inbox.take(self.max_rows - len(self._buffer)))

    def _accept(self, messages: list[RawMessage]) -> None:
        """Deliveries from raw messages, in one tight loop: this runs for every message of the stream."""
        buffer, last_seq, accepted_bytes = self._buffer, self._last_seq, 0
        last_reply, pending = b"", 0
        for subject, reply, headers, data in messages:
            try:
                seq, _consumer_seq, arrival_ms, pending = ack_fields(reply)
            except (IndexError, ValueError):
                continue  # not from JetStream: nothing to take nor to acknowledge
            if seq <= last_seq:
                continue  # a redelivery of what this run already has: acknowledged with its batch
            last_seq, last_reply = seq, reply
            accepted_bytes += len(data)
            buffer.append(Delivery(seq, arrival_ms, subject.decode(), data, headers))
        if last_reply:
            self._last_seq, self._bytes = last_seq, self._bytes + accepted_bytes
            self._last_reply = last_reply  # only a batch's last message is acknowledged
            self.pending = pending

    def _take(self) -> list[Delivery]:
        batch, self._buffer, self._bytes = self._buffer, [], 0
        if batch:
            self._to_ack[batch[-1].seq] = self._last_reply
            self._last_rows = len(batch)
        return batch

    @property
    def caught_up(self) -> bool:
        return self.pending == 0 and not self._buffer and not (self._inbox and self._inbox.messages)

    async def ack(self, batch: list[Delivery]) -> None:
        """Acknowledge a batch and all before it (AckPolicy.ALL)."""
        reply = self._to_ack.pop(batch[-1].seq, None) if batch else None
        for older in [seq for seq in self._to_ack if batch and seq < batch[-1].seq]:
            del self._to_ack[older]  # covered by this acknowledgement (AckPolicy.ALL)
        if reply and self._inbox is not None:
            await self._inbox.ack(reply)  # a lost ack only means a redelivery, skipped above

    async def stop_intake(self) -> None:
        if self._inbox is not None:
            self.rt.forget_consumer(self.name)  # once: a consumer of the same name may follow this one
            await self._inbox.close()
            self._inbox = None


def now_ms() -> int:
    return time.time_ns() // 1_000_000
