"""The intake: a service declares its inputs as data, and the runtime reads them. The one way in.

A service names each input with ``Input(stream, subjects, type, mode)`` and gives a handler of one
decoded message that returns what the message caused (``Outgoing`` messages); ``Intake`` does the rest,
the same way for every service:

- reads the wire in bulk (``StreamConsumer`` and ``Follower`` on ``trader.bus.wire.PushInbox``; never
  nats-py's per-message ``Msg`` path);
- decodes each message strictly into the declared msgspec type (``decode_message``, or the input's own
  decoder); a message it cannot decode, or that the handler refuses with ``InvalidMessage``, goes to
  the dead letters whole with its reason, ``<field>: <what is wrong>`` (one rule for every service);
- hands the handler batches (what arrived meanwhile, up to ``max_batch``), publishes the outputs with
  acknowledgements, retried until stored, and only then checkpoints and acknowledges the batch;
- runs the service's time-driven work (``Periodic``: ohlcv-agg closing bars on the clock and storing
  them) between two batches, so that a service needs no second loop beside its intake;
- counts every message (``trader_messages_in``, lag, batch latency, and once caught up how long each
  batch's oldest message waited in the stream: ``trader_intake_delay_seconds``) and tells ``/ready``
  when the input has caught up with what its stream held at the start (``ready_checks``).

Modes:

- ``WORK``: every message exactly once from the service's own checkpoint (``intake.<service>.<input>``
  in the TRADER_STATE bucket, written after the batch's outputs are stored: after every batch, or at
  most every ``Input.checkpoint_every_s`` and at a stop; the acknowledgement, after the outputs too,
  only paces delivery, since the consumer is made again from the checkpoint at every start).
  A crash between the outputs and the checkpoint hands the batch over again; its outputs carry a
  ``Nats-Msg-Id`` from their natural identity, so JetStream stores them once, and the handler sees
  ``Received.redelivered`` (it may have handled the message before: the oms routes again an order a
  crash may have left unrouted). A service that replaced a durable consumer of explicit
  acknowledgements (the oms's and risk's before the intake) resumes after that consumer's acknowledged
  messages when it has no checkpoint yet. A handler that cannot take a message yet (an event for an
  order whose decision is a moment behind) raises ``NotYet``: the message is offered again every
  ``retry_every_s`` and after every batch, for ``defer_for_s``, then dead-lettered with the reason; the
  checkpoint stays before it meanwhile. ``lock``: held while a batch is applied and its outputs stored
  (a service whose inputs share one state, the oms).
- ``LATEST``: the latest message of each subject, then every new one (or, ``start_after``, every one
  after a stream sequence); no state survives a restart.
- ``ONCE`` (``read_once``, not an ``Intake``): the messages stored between two points (after a stream
  sequence or from an arrival time, up to a sequence), read once in bulk and decoded strictly, then
  nothing more: a strategy's warm-up bars and features (up to the sequence its live input starts
  after), the fills since exeq's balance baseline. What cannot be decoded comes back refused with its
  reason, for the service to skip or to fail on; it is not sent to the dead letters again (it is
  history: the service reading it live sent it there).
- ``HISTORY``: the service's state from its latest snapshot (``trader.runtime.snapshots``), then every
  message after it, then live. The messages the stream held at the start rebuild the state without
  publishing (they were handled before the restart, or ``on_caught_up`` publishes what the rebuilt
  state shows that the outputs do not); dead letters are not sent again for them either. Snapshots are
  taken, after the batch's outputs are stored, once at the end of that catch-up (when it replayed
  anything), then every N messages or T seconds, and at a graceful stop; during the catch-up only every
  T seconds (not every N messages: the state grows with the history, and so would each snapshot).

One envelope: ``Received`` (the stored message, ``trader.bus.read.Stored``, and its decoded value).

Every service reads its streams through it, its one-shot reads too (``read_once``; those of the CLI
and of the api's routes go through ``trader.bus.read.replay``, which it reads with). It replaced
``replay`` at start, ``work_consumer``/``work_through``/``take_batch``/``LazyAcks``, ``follow_latest``,
``catch_up``, the services' own loops over a ``StreamConsumer`` (the sinks', the normalizer's, the
strategy service's), the strategy service's ordered consumer of its warm-up, the api's plain
subscriptions to market data and the durable consumers of explicit acknowledgements
(``DurableConsumer``/``next_batch``/``ack_each``): all gone.

Tests pause a service at the points where a crash must lose and repeat nothing (``runtime.pauses``).
"""

from __future__ import annotations

import asyncio
import enum
import time
from collections.abc import Awaitable, Callable, Sequence
from dataclasses import dataclass
from typing import Generic, Protocol, TypeVar

import msgspec
from nats.js.api import DeliverPolicy
from nats.js.errors import NotFoundError
from nats.js.kv import KeyValue

from trader.bus.backoff import set_within
from trader.bus.publish import Outgoing
from trader.bus.read import ErrorHook, Follower, Stored, decode_message, refusal, replay_messages
from trader.bus.refusals import InvalidMessage, Refused
from trader.bus.streams import STATE_BUCKET, ensure_state_bucket
from trader.runtime import pauses
from trader.runtime.consumer import Delivery, StreamConsumer
from trader.runtime.service import Runtime
from trader.runtime.snapshots import SnapshotStore, Snapshotting

T = TypeVar("T")


class Mode(enum.Enum):
    WORK = "work"
    LATEST = "latest"
    HISTORY = "history"
    ONCE = "once"  # read with ``read_once``, not an ``Intake``


@dataclass(frozen=True)
class Batching:
    """How a WORK or HISTORY input's batches close. ``eager`` (latency first): a batch goes as soon as
    anything came (it still grows under load with what arrived meanwhile); otherwise (throughput first:
    the lake wants big files) it waits to fill up to ``max_batch`` rows, ``max_bytes`` or ``wait_s``.
    ``small_rows``/``small_wait_s``: a trickle's batches (under ``small_rows`` rows) wait up to
    ``small_wait_s`` instead (a Delta commit a second of a few rows each). ``max_ack_pending``: how far
    delivery runs ahead of the acknowledged batch (two batches by default). An empty batch comes every
    ``wait_s`` of a quiet stream (a service with its own checkpoint does its clock's work then)."""

    eager: bool = True
    wait_s: float = 0.25
    max_bytes: int = 16 * 1024 * 1024
    small_rows: int = 0
    small_wait_s: float | None = None
    max_ack_pending: int | None = None


@dataclass(frozen=True)
class Resume:
    """Where a WORK input with its own checkpoint resumes: after ``after``; the messages up to
    ``seen_to`` (at or past ``after``) were handled before the restart: they rebuild the service's
    state, and neither their refusals are sent again nor is their ``Received.redelivered`` false."""

    after: int
    seen_to: int = 0


class OwnCheckpoint(Protocol):
    """A WORK input's checkpoint kept by the service with what a batch caused, in one write (a Delta
    commit that records the batch's last sequence; the normalizer's bars and bar clock): the intake
    writes none of its own. ``load`` at start; ``save(seq)`` after every batch once its outputs and
    refusals are stored, with the last sequence done (the same again after a quiet, empty batch, every
    ``Batching.wait_s``: the service's clock may have work); it returns the last sequence it has stored
    for good (``seq``, or less for a service that stores at its own pace: the normalizer, every
    flush interval), and the batches up to there are acknowledged."""

    async def load(self) -> Resume: ...

    async def save(self, seq: int) -> int: ...


@dataclass(frozen=True)
class Input(Generic[T]):
    """One input of a service: ``subjects`` (a filter, wildcards allowed, or several) of ``stream``,
    decoded into ``type``. ``name`` tells a service's inputs apart (its consumer and checkpoint are
    named after it; the service's name when empty). ``decode``: a decoder of one's own (a lenient tick
    decoder) that raises ``InvalidMessage``. ``defer_for_s``, ``retry_every_s``: how long, and how
    often, a message the handler is ``NotYet`` able to take is offered again (WORK).
    ``checkpoint_every_s`` (WORK): 0 writes the checkpoint after every batch; more writes it at most
    that often (and at a stop), for a service on the hot path whose handler takes a repeat as a repeat:
    a crash then hands over again up to that long of batches, never loses one."""

    stream: str
    subjects: str | tuple[str, ...]
    type: type[T]
    mode: Mode
    name: str = ""
    decode: Callable[[bytes], T] | None = None
    max_batch: int = 1_000
    defer_for_s: float = 5.0
    retry_every_s: float = 0.5
    checkpoint_every_s: float = 0.0
    batching: Batching = Batching()


class NotYet(InvalidMessage):
    """A message its handler cannot take yet (what it refers to is a moment behind): offered again,
    and dead-lettered with this reason once ``Input.defer_for_s`` has passed (WORK; elsewhere it is
    refused at once). ``error``: the kind counted when it is given up."""

    def __init__(self, field: str, reason: str, error: str = "not_yet") -> None:
        super().__init__(field, reason)
        self.error = error


@dataclass
class Deferred:
    stored: Stored
    first_s: float  # monotonic: when it was first deferred
    next_s: float  # when to offer it again at the earliest
    error: str
    field: str
    reason: str


class Received(Generic[T]):
    """A message as the stream holds it, with its decoded value. ``redelivered``: it may have been
    handled before (a crash came between its outputs and the checkpoint, or it is offered again)."""

    __slots__ = ("redelivered", "stored", "value")

    def __init__(self, stored: Stored, value: T, redelivered: bool = False) -> None:
        self.stored, self.value, self.redelivered = stored, value, redelivered

    @property
    def seq(self) -> int:
        return self.stored.seq

    @property
    def subject(self) -> str:
        return self.stored.subject

    @property
    def data(self) -> bytes:
        return self.stored.data

    @property
    def arrival_ms(self) -> int:
        return self.stored.arrival_ms

    @property
    def headers(self) -> dict[str, str] | None:
        return self.stored.headers


Handle = Callable[[Received[T]], Sequence[Outgoing]]
HandleLive = Callable[[list[Received[T]]], Awaitable[Sequence[Outgoing]]]
CaughtUp = Callable[[], Awaitable[Sequence[Outgoing]]]
# What a service writes elsewhere of a batch (a database): awaited after the batch's outputs are stored
# and before its checkpoint, so a crash hands the batch over again; the writes must be idempotent.
# In HISTORY mode it is awaited after each replayed batch too: what the rebuilt state shows that was not
# stored before the restart (feature-eng publishes and writes it there, a batch at a time).
Store = Callable[[], Awaitable[None]]


@dataclass(frozen=True)
class Periodic:
    """A service's time-driven work (bars closed by the wall clock, what changed stored), run by the
    intake between two batches, one after the other, so that it needs no loop nor lock of its own: at
    most every ``every_s`` while the input is read (a quiet stream hands over an empty batch every
    0.25 s, so it runs then too), under the intake's lock, before a snapshot is considered (a snapshot
    never sees its work half done), and once more at the stop, before the last snapshot."""

    every_s: float
    run: Callable[[], Awaitable[None]]


def handler_errors(rt: Runtime, stream: str) -> ErrorHook:
    """The error hook of a LATEST input's follower: counted (``<stream>.handler``) and logged with the
    trace (its messages are taken by the intake's own loop, so this is for what fails around them)."""

    def on_error(stored: Stored, exc: Exception) -> None:
        rt.metrics.count_error(f"{stream.lower()}.handler")
        rt.log.exception("follower.handler_failed", subject=stored.subject, error=repr(exc))

    return on_error


def checkpoint_key(service: str, input_name: str) -> str:
    return f"intake.{service}.{input_name}"


def strict_decoder(kind: type[T]) -> Callable[[bytes], T]:
    decoder = msgspec.json.Decoder(kind)
    return lambda data: decode_message(decoder, data)


def latest_per_subject(outputs: Sequence[Outgoing]) -> list[Outgoing]:
    """The last output of each subject, in order (a subject whose latest message is the state)."""
    return list({item.subject: item for item in outputs}.values())


class Intake(Generic[T]):
    """One declared input of a running service: ``start`` (in the service's ``start``), ``run`` (in
    its ``run``, until the runtime stops), ``stop`` (in its ``stop``: the last snapshot)."""

    def __init__(
        self,
        rt: Runtime,
        source: Input[T],
        handle: Handle[T],
        *,
        latest_only: bool = False,
        on_caught_up: CaughtUp | None = None,
        snapshots: Snapshotting | None = None,
        store: Store | None = None,
        live: HandleLive[T] | None = None,
        lock: asyncio.Lock | None = None,
        periodic: Periodic | None = None,
        checkpoint: OwnCheckpoint | None = None,
        start_after: int | None = None,
    ) -> None:
        """``live``: for a service whose engine awaits (exeq's venues), or that takes a batch at once
        (the normalizer, the lake sinks), the live messages of each batch, decoded, go to it together
        instead of to ``handle`` one by one (``handle`` still takes the messages that rebuild a HISTORY
        input's state); what it cannot take it dead-letters itself. ``checkpoint``: a WORK input's
        checkpoint kept by the service with its outputs (``OwnCheckpoint``), instead of the intake's.
        ``start_after``: a LATEST input reads every message after this stream sequence instead of the
        latest of each subject (the strategy service's bars after those its warm-up read); a HISTORY
        input whose state the service restored itself (a snapshot covering several inputs: the
        strategy service's) replays only what came after it."""
        if source.mode is Mode.ONCE:
            raise ValueError("an input of mode ONCE is read with read_once")
        if snapshots is not None and source.mode is not Mode.HISTORY:
            raise ValueError("snapshots are for inputs of mode HISTORY")
        if checkpoint is not None and (source.mode is not Mode.WORK or source.checkpoint_every_s):
            raise ValueError("an own checkpoint is for inputs of mode WORK, saved after every batch")
        self.rt, self.input, self.handle = rt, source, handle
        self.name = source.name or rt.name
        self.latest_only, self.on_caught_up, self.snapshots = latest_only, on_caught_up, snapshots
        self.store = store
        self.live = live
        self.lock = lock or asyncio.Lock()
        self.periodic = periodic
        self._periodic_at = time.monotonic()  # when the periodic work last ran
        if start_after is not None and source.mode is Mode.WORK:
            raise ValueError("start_after is for inputs of mode LATEST or HISTORY")
        if start_after is not None and snapshots is not None:
            raise ValueError("a HISTORY input starts after its snapshot or after start_after, not both")
        self.own_checkpoint = checkpoint
        self.start_after = start_after
        self._seen_to = 0  # WORK with its own checkpoint: handled before the restart up to here
        self._stored_to = 0  # ... and stored for good up to here (what its ``save`` says)
        self._unacknowledged: list[list[Delivery]] = []  # ... batches handled, not stored for good yet
        self._decode = source.decode or strict_decoder(source.type)
        self.caught_up = False
        self.started = False
        self.start_seq = 1  # where the consumer began: after the checkpoint or the snapshot
        self.replay_to = 0  # HISTORY: messages up to here rebuild the state, without publishing
        self.snapshot_problem: str | None = None  # why no snapshot was used (None: one was)
        self._end_seq = 0  # the stream's last sequence at the start: caught up once there
        self._reached = asyncio.Event()  # caught up
        self._deferred: list[Deferred] = []  # WORK: messages the handler could not take yet, in order
        self._done_to = 0  # WORK: the last sequence whose batch's outputs are stored
        self._checkpointed = 0  # WORK: what the checkpoint says
        self._checkpointed_at = float("-inf")  # monotonic: when it was written
        self._covered = 0  # the last sequence applied
        self._consumer: StreamConsumer | None = None
        self._follower: Follower | None = None
        self._arrived: list[Stored] = []
        self._wake = asyncio.Event()
        self._store: SnapshotStore | None = None
        self._kv: KeyValue | None = None  # WORK: where the checkpoint is
        self._snapshot_covered = 0
        self._since_snapshot = 0
        self._snapshot_clock = time.monotonic()
        self._snapshot_at_catch_up = False  # the history replayed: a snapshot is due once caught up

    # Starting ------------------------------------------------------------------------------------

    async def start(self) -> None:
        self._end_seq = (await self.rt.js.stream_info(self.input.stream)).state.last_seq
        if self.input.mode is Mode.LATEST:
            await self._start_follower()
        else:
            self.start_seq = await self._resume_seq()
            self._done_to = self._checkpointed = self.start_seq - 1
            self._covered = self._snapshot_covered = self.start_seq - 1
            if self.input.mode is Mode.HISTORY:
                self.replay_to = self._end_seq
            await self._start_consumer()
        self.started = True
        self.rt.log.info(
            "intake.started",
            input=self.name,
            mode=self.input.mode.value,
            stream=self.input.stream,
            start_seq=self.start_seq,
            stream_last_seq=self._end_seq,
            snapshot_problem=self.snapshot_problem,
        )

    async def _resume_seq(self) -> int:
        if self.own_checkpoint is not None:
            resume = await self.own_checkpoint.load()
            self._seen_to = max(resume.seen_to, resume.after)
            return resume.after + 1
        if self.input.mode is Mode.WORK:
            return await self._read_checkpoint() + 1
        if self.snapshots is None:
            return 1 if self.start_after is None else self.start_after + 1
        covered = await self._restore_snapshot(self.snapshots)
        return covered + 1

    async def _restore_snapshot(self, snapshots: Snapshotting) -> int:
        """The sequence the restored snapshot covers; 0 (and nothing restored) for a full replay."""
        self._store = SnapshotStore(self.rt.js, snapshots.key, inline_limit=snapshots.inline_limit)
        loaded = await self._store.load(snapshots.state_type, snapshots.version)
        if loaded is None:
            self.snapshot_problem = self._store.problem
            return 0
        covered = loaded.covers.get(self.input.stream)
        if covered is None:
            self.snapshot_problem = f"snapshot does not cover stream {self.input.stream}"
        elif covered > self._end_seq:
            self.snapshot_problem = f"snapshot covers {covered}, past the stream's last {self._end_seq}"
        if self.snapshot_problem is not None or covered is None:
            self.rt.log.warning("snapshot.unusable", input=self.name, problem=self.snapshot_problem)
            return 0
        snapshots.restore(loaded.state)
        return covered

    async def _read_checkpoint(self) -> int:
        await ensure_state_bucket(self.rt.js)
        self._kv = kv = await self.rt.js.key_value(STATE_BUCKET)
        try:
            entry = await kv.get(checkpoint_key(self.rt.name, self.name))
        except NotFoundError:
            return await self._acknowledged_by_durable()
        return int(entry.value or b"0")

    async def _acknowledged_by_durable(self) -> int:
        """Without a checkpoint: the last of the messages a durable consumer of this input's name
        acknowledged all up to (one of explicit acknowledgements, which the service used before the
        intake), so an upgrade does not do its work again from the stream's start; else 0."""
        try:
            info = await self.rt.js.consumer_info(self.input.stream, self.name)
        except NotFoundError:
            return 0
        if not info.config.durable_name or info.ack_floor is None:
            return 0
        acknowledged = info.ack_floor.stream_seq or 0
        if not info.num_ack_pending and info.delivered is not None:
            # All it was handed is acknowledged; past the floor it only skipped other subjects.
            acknowledged = max(acknowledged, info.delivered.stream_seq or 0)
        self.rt.log.info("intake.resumed_from_durable", input=self.name, acknowledged=acknowledged)
        return acknowledged

    async def _write_checkpoint(self, seq: int) -> None:
        kv = self._kv
        assert kv is not None, "a work input reads its checkpoint at start"

        async def put() -> None:
            await kv.put(checkpoint_key(self.rt.name, self.name), str(seq).encode())

        await self.rt.retry("checkpoint", put)

    async def _start_consumer(self) -> None:
        batching = self.input.batching
        self._consumer = StreamConsumer(
            self.rt,
            stream=self.input.stream,
            name=self.name,
            subject=self.input.subjects,
            start_seq=self.start_seq,
            max_rows=self.input.max_batch,
            max_bytes=batching.max_bytes,
            max_wait_s=batching.wait_s,  # eager: only paces the empty batches of a quiet stream
            eager=batching.eager,
            max_ack_pending=batching.max_ack_pending,
            small_rows=batching.small_rows,
            small_wait_s=batching.small_wait_s,
        )
        await self._consumer.start()
        info = await self.rt.js.consumer_info(self.input.stream, self.name)
        delivered = info.delivered.consumer_seq if info.delivered is not None else 0
        if self.start_seq > self._end_seq or (not info.num_pending and not delivered):
            await self._catch_up()  # nothing to read up to the stream's end

    async def _start_follower(self) -> None:
        async def keep(stored: Stored) -> None:
            self._arrived.append(stored)
            self._wake.set()

        self._follower = Follower(
            self.rt.js,
            stream=self.input.stream,
            subjects=self.input.subjects,
            handler=keep,
            deliver_policy=DeliverPolicy.LAST_PER_SUBJECT,
            start_seq=None if self.start_after is None else self.start_after + 1,
            on_error=handler_errors(self.rt, self.input.stream),
        )
        await self._follower.start()

    # Running -------------------------------------------------------------------------------------

    async def run(self) -> None:
        """Until the service stops: every batch taken, its outputs stored, then acknowledged."""
        if self._follower is not None:
            await self._run_latest(self._follower)
        elif self._consumer is not None:
            await self._run_consumer(self._consumer)

    async def _run_consumer(self, consumer: StreamConsumer) -> None:
        async for batch in consumer.batches():
            if batch:
                await self._take(batch, consumer)
                await self._acknowledge(consumer, batch)
            elif self._deferred and self._deferred[0].next_s <= time.monotonic():
                await self._retry_alone()
            elif self._kv is not None or self.own_checkpoint is not None:
                await self._checkpoint()  # quiet: what is done, checkpointed once it is due
                await self._acknowledge(consumer, [])
            await self._run_periodic()
            await self._maybe_snapshot()

    async def _acknowledge(self, consumer: StreamConsumer, batch: list[Delivery]) -> None:
        """The batch acknowledged; with an own checkpoint, the batches the service has stored for good
        (its ``save`` says up to where), so the acknowledgement floor shows what is durable."""
        if self.own_checkpoint is None:
            await consumer.ack(batch)
            return
        if batch:
            self._unacknowledged.append(batch)
        stored = [b for b in self._unacknowledged if b[-1].seq <= self._stored_to]
        if stored:
            self._unacknowledged = self._unacknowledged[len(stored) :]
            await consumer.ack(stored[-1])  # and all before it

    async def _take(self, batch: list[Delivery], consumer: StreamConsumer) -> None:
        started = time.perf_counter()
        if self.caught_up:
            self._observe_delay(batch[0].arrival_ms)
        reached = batch[-1].seq >= self._end_seq or consumer.caught_up
        live = batch
        async with self.lock:
            if self.input.mode is Mode.HISTORY and not self.caught_up:
                split = next((i for i, d in enumerate(batch) if d.seq > self.replay_to), len(batch))
                replayed, live = batch[:split], batch[split:]
                self._apply([Stored.of(d) for d in replayed])  # handled before: outputs and refusals sent
                if replayed and self.store is not None:
                    await self.store()  # HISTORY: what the replay shows is not stored yet (feature-eng)
                if replayed:
                    await pauses.pause(pauses.IN_REPLAY)
                if reached:
                    await self._catch_up()  # before the live messages: their outputs follow its own
            if live:
                outputs, refused = await self._apply_live([Stored.of(d) for d in live])
                if self._deferred:
                    self._retry(outputs, refused, time.monotonic())  # what came may be what they wait for
                await self._publish(outputs, refused)
                if self.store is not None:
                    await self.store()
        if self.input.mode is Mode.WORK:
            self._done_to = batch[-1].seq
            await self._checkpoint()
        if reached:
            await self._catch_up()
        self._done(batch[-1].seq, len(batch), started)  # (the consumer reports its own lag)

    @property
    def covered_seq(self) -> int:
        """The last sequence applied: what a snapshot taken now covers."""
        return self._covered

    @property
    def at_end(self) -> bool:
        """Nothing waits to be read now: no backlog (a clock of the service may then go by the wall)."""
        return self._consumer is not None and self._consumer.caught_up

    async def _checkpoint(self, *, now: bool = False) -> None:
        """The checkpoint moved to what is done (not past a deferred message), when it is due."""
        seq = self._checkpoint_seq(self._done_to)
        if self.own_checkpoint is not None:
            if seq > self._checkpointed:
                await pauses.pause(pauses.BEFORE_CHECKPOINT)
            # Also when quiet: the service's clock may have work.
            self._stored_to = await self.own_checkpoint.save(seq)
            self._checkpointed = seq
            return
        due = now or time.monotonic() - self._checkpointed_at >= self.input.checkpoint_every_s
        if seq <= self._checkpointed or not due:
            return
        await pauses.pause(pauses.BEFORE_CHECKPOINT)
        await self._write_checkpoint(seq)
        self._checkpointed, self._checkpointed_at = seq, time.monotonic()

    def _checkpoint_seq(self, last_seq: int) -> int:
        """What the checkpoint may say: all done up to here (not past a message still deferred)."""
        if self._deferred:
            return min(last_seq, self._deferred[0].stored.seq - 1)
        return last_seq

    async def _run_periodic(self, *, now: bool = False) -> None:
        periodic = self.periodic
        if periodic is None or not (now or time.monotonic() - self._periodic_at >= periodic.every_s):
            return
        async with self.lock:
            await periodic.run()
        self._periodic_at = time.monotonic()

    async def _retry_alone(self) -> None:
        """The deferred messages offered again on the clock (nothing new came): their outputs stored,
        then the checkpoint moved past those taken."""
        outputs: list[Outgoing] = []
        refused: list[Refused] = []
        async with self.lock:
            self._retry(outputs, refused, time.monotonic())
            await self._publish(outputs, refused)
            if self.store is not None:
                await self.store()
        await self._checkpoint()

    def _retry(self, outputs: list[Outgoing], refused: list[Refused], now: float) -> None:
        """Each deferred message offered again, in order: taken (its outputs added), deferred once more,
        or past its time and refused."""
        waiting, self._deferred = self._deferred, []
        for item in waiting:
            try:
                outputs += self.handle(Received(item.stored, self._decode(item.stored.data), True))
            except NotYet as exc:
                if now - item.first_s < self.input.defer_for_s:
                    item.next_s = now + self.input.retry_every_s
                    item.field, item.reason, item.error = exc.field, exc.reason, exc.error
                    self._deferred.append(item)
                    continue
                self.rt.metrics.count_error(exc.error)
                self.rt.log.warning(
                    "intake.gave_up", input=self.name, subject=item.stored.subject, reason=str(exc)
                )
                refused.append(refusal(item.stored, exc.field, exc.reason))
            except InvalidMessage as exc:
                refused.append(refusal(item.stored, exc.field, exc.reason))

    def _observe_delay(self, arrival_ms: int) -> None:
        """A live batch's wait in the stream (``trader_intake_delay_seconds``); a replay's is not one."""
        self.rt.metrics.observe_delay(self.name, time.time() - arrival_ms / 1000)

    def _done(self, last_seq: int, count: int, started: float) -> None:
        self._covered = max(self._covered, last_seq)
        self._since_snapshot += count
        self.rt.metrics.count_in(count)
        self.rt.metrics.observe_batch(time.perf_counter() - started)

    def _apply(self, messages: list[Stored]) -> tuple[list[Outgoing], list[Refused]]:
        """Each message decoded and handled, in order: what they caused, and what was refused (WORK:
        what the handler cannot take yet is deferred)."""
        outputs: list[Outgoing] = []
        refused: list[Refused] = []
        decode, handle = self._decode, self.handle
        work = self.input.mode is Mode.WORK
        seen_to = self._end_seq if work else 0  # what the stream held at the start may have been handled
        for stored in messages:
            try:
                outputs += handle(Received(stored, decode(stored.data), stored.seq <= seen_to))
            except NotYet as exc:
                if not work:
                    refused.append(refusal(stored, exc.field, exc.reason))
                    continue
                now = time.monotonic()
                retry_at = now + self.input.retry_every_s
                self._deferred.append(Deferred(stored, now, retry_at, exc.error, exc.field, exc.reason))
            except InvalidMessage as exc:
                refused.append(refusal(stored, exc.field, exc.reason))
        return outputs, refused

    async def _apply_live(self, messages: list[Stored]) -> tuple[list[Outgoing], list[Refused]]:
        if self.live is None:
            return self._apply(messages)
        received: list[Received[T]] = []
        refused: list[Refused] = []
        decode, seen_to = self._decode, self._seen_to
        for stored in messages:
            try:
                received.append(Received(stored, decode(stored.data), stored.seq <= seen_to))
            except InvalidMessage as exc:
                refused.append(refusal(stored, exc.field, exc.reason))
        return list(await self.live(received)) if received else [], refused

    async def _publish(self, outputs: list[Outgoing], refused: list[Refused]) -> None:
        if self._seen_to and refused:
            refused = [item for item in refused if (item.seq or 0) > self._seen_to]  # sent before
        await self.rt.dead_letter(self.input.stream, refused)
        if self.latest_only:
            outputs = latest_per_subject(outputs)
        if outputs:
            await self.rt.publish_reliably(outputs)

    async def _catch_up(self) -> None:
        if self.caught_up:
            return
        self.caught_up = True
        self._reached.set()
        self._snapshot_at_catch_up = self.input.mode is Mode.HISTORY and self.replay_to >= self.start_seq
        outputs = list(await self.on_caught_up()) if self.on_caught_up is not None else []
        await self._publish(outputs, [])
        self.rt.log.info("intake.caught_up", input=self.name, republished=len(outputs))

    async def _run_latest(self, follower: Follower) -> None:
        stopping = self.rt.stopping
        while not stopping.is_set():
            await self._run_periodic()
            if not self._arrived:
                if follower.caught_up.is_set():
                    await self._catch_up()
                self._wake.clear()
                await set_within(self._wake, 0.25)
                continue
            limit = self.input.max_batch
            batch, self._arrived = self._arrived[:limit], self._arrived[limit:]
            started = time.perf_counter()
            if self.caught_up:
                self._observe_delay(batch[0].arrival_ms)
            async with self.lock:
                await self._publish(*await self._apply_live(batch))
            self._done(batch[-1].seq, len(batch), started)

    # Snapshots and stopping ----------------------------------------------------------------------

    async def _maybe_snapshot(self, *, final: bool = False) -> None:
        snapshots = self.snapshots
        if snapshots is None or self._store is None or self._covered <= self._snapshot_covered:
            return
        # While the history is replayed, the state grows with it: a snapshot every N messages would cost
        # the replay's square (each one the whole state so far). Then only by the clock, and once at the
        # end of the catch-up (the restart after it reads from there); after it, every N messages too.
        due = (
            final
            or self._snapshot_at_catch_up
            or (self.caught_up and self._since_snapshot >= snapshots.every_messages)
            or time.monotonic() - self._snapshot_clock >= snapshots.every_s
        )
        if not due or (snapshots.settled is not None and not snapshots.settled()):
            return
        covered = self._covered
        try:
            state = snapshots.take()
            await pauses.pause(pauses.IN_SNAPSHOT_WRITE)
            size = await self._store.save(state, {self.input.stream: covered}, snapshots.version)
        except Exception as exc:  # a snapshot only shortens the next start: the service goes on
            self.rt.metrics.count_error("snapshot")
            self.rt.log.warning("snapshot.failed", input=self.name, error=repr(exc))
            return
        self._snapshot_covered, self._since_snapshot = covered, 0
        self._snapshot_clock = time.monotonic()
        self._snapshot_at_catch_up = False
        self.rt.log.info(
            "snapshot.saved", input=self.name, covers=covered, bytes=size, stored_in=self._store.stored_in
        )

    async def stop(self) -> None:
        """After ``run`` has returned: the last checkpoint or snapshot, and the reading stopped."""
        if self._consumer is not None:
            await self._consumer.stop_intake()
        if self.started:
            await self._run_periodic(now=True)  # what the last batches changed, before the last snapshot
        if (self._kv is not None or self.own_checkpoint is not None) and self.started:
            await self._checkpoint(now=True)
        if self._follower is not None:
            await self._follower.stop()
        await self._maybe_snapshot(final=True)

    async def wait_caught_up(self) -> None:
        await self._reached.wait()

    def ready_checks(self) -> dict[str, bool]:
        """Ready once started, and for LATEST and HISTORY once caught up (the state is whole)."""
        if self.input.mode is Mode.WORK:
            return {self.name: self.started}
        return {self.name: self.started and self.caught_up}

    def health_details(self) -> dict[str, object]:
        return {
            "mode": self.input.mode.value,
            "caught_up": self.caught_up,
            "start_seq": self.start_seq,
            "covered_seq": self._covered,
            "snapshot_seq": self._snapshot_covered,
            "snapshot_problem": self.snapshot_problem,
            "deferred": len(self._deferred),
        }


# Reading once -------------------------------------------------------------------------------------


@dataclass(frozen=True)
class ReadOnce(Generic[T]):
    """What ``read_once`` found: the messages decoded, in stream order, and those that could not be,
    each with its reason (``<field>: <what is wrong>``) and its bytes."""

    received: list[Received[T]]
    refused: list[Refused]


def decode_once(source: Input[T], messages: Sequence[Stored]) -> ReadOnce[T]:
    """``messages`` decoded with the input's decoder (strict into its type, or its own)."""
    decode = source.decode or strict_decoder(source.type)
    received: list[Received[T]] = []
    refused: list[Refused] = []
    for stored in messages:
        try:
            received.append(Received(stored, decode(stored.data)))
        except InvalidMessage as exc:
            refused.append(refusal(stored, exc.field, exc.reason))
    return ReadOnce(received, refused)


async def read_once(
    rt: Runtime,
    source: Input[T],
    *,
    after: int = 0,
    since_ms: int | None = None,
    upto: int | None = None,
    timeout_s: float = 60.0,
) -> ReadOnce[T]:
    """An input of mode ONCE: its messages stored after stream sequence ``after`` (or, ``since_ms``,
    from that arrival time, epoch ms), up to sequence ``upto`` included (the stream's last now when
    None), read once in bulk and decoded; nothing after ``upto`` is read, so a LATEST input started
    after it (``start_after``) takes the rest, none lost, none twice. Counted in
    ``trader_messages_in``; no dead letters (``Mode.ONCE``). ``TimeoutError`` when the stream hands
    nothing over for ``timeout_s``."""
    if source.mode is not Mode.ONCE:
        raise ValueError(f"read_once reads an input of mode ONCE, not {source.mode.value}")
    subjects = [source.subjects] if isinstance(source.subjects, str) else list(source.subjects)
    stored = await replay_messages(
        rt.js, source.stream, subjects, after=after, since_ms=since_ms, upto=upto, timeout=timeout_s
    )
    found = decode_once(source, stored)
    rt.metrics.count_in(len(stored))
    if found.refused:
        rt.log.info(
            "intake.once_refused",
            input=source.name or rt.name,
            refused=len(found.refused),
            first=found.refused[0].reason,
        )
    return found


async def _all_caught_up(intakes: Sequence[Intake[object]]) -> None:
    for intake in intakes:
        await intake.wait_caught_up()


async def run_until_caught_up(intakes: Sequence[Intake[object]], what: str) -> list[asyncio.Task[None]]:
    """Each started intake run in a task of its own until all have caught up with what their streams
    held at the start (the state they feed is whole); the tasks, which go on reading live. One that
    ends first ends the wait with its error; all then stop."""
    tasks = [asyncio.create_task(intake.run()) for intake in intakes]
    reached = asyncio.create_task(_all_caught_up(intakes))
    try:
        await asyncio.wait([*tasks, reached], return_when=asyncio.FIRST_COMPLETED)
        if not reached.done():
            for task in tasks:
                if task.done():
                    task.result()  # its error, if it failed
            raise RuntimeError(f"{what}: an input stopped before it caught up")
    except BaseException:
        reached.cancel()
        for task in tasks:
            task.cancel()
        await asyncio.gather(reached, *tasks, return_exceptions=True)
        for intake in intakes:
            await intake.stop()
        raise
    return tasks
