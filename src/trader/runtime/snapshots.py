"""Snapshots of a service's state: what bounds its restart to the messages after the latest one.

A snapshot is the state, encoded with msgspec (MessagePack), together with the stream sequence(s) it
covers (every message up to them applied, none after) and the version of the state's schema. It is
kept in the TRADER_STATE key-value bucket under ``snapshot.<key>``, compressed (zlib: the states are
lists of like records, a tenth of their size or less, so a book of 100,000 orders still fits a NATS
message and a larger one reads back in a fraction of the time); a snapshot larger than a NATS message
may be goes to the TRADER_SNAPSHOTS object store, and the key then holds a pointer to it (name, size,
SHA-256 of what is stored), written after the object: a crash between the two leaves the previous
snapshot in place. A snapshot written before compression (``compressed`` false) is read as it is.

``SnapshotStore.load`` gives the latest snapshot, or None with the reason (``problem``) when there is
none, it cannot be read or decoded (corrupt, digest mismatch), or it is of another schema version: the
service then replays its whole history. A wrong state is never loaded: at worst the restart is slower.
``Snapshotting`` is what a stateful service tells the intake (``trader.runtime.intake``): how to take and
restore its state, its schema version, and how often (every N messages or T seconds, and at a graceful
stop).
"""

from __future__ import annotations

import contextlib
import hashlib
import time
import zlib
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any, Generic, TypeVar

import msgspec
import structlog
from nats.js import JetStreamContext
from nats.js.api import ObjectStoreConfig, StorageType
from nats.js.errors import BucketNotFoundError, NotFoundError
from nats.js.kv import KeyValue
from nats.js.object_store import ObjectStore

from trader.bus.streams import STATE_BUCKET, ensure_state_bucket
from trader.bus.wire import connection_of

S = TypeVar("S")

OBJECT_BUCKET = "TRADER_SNAPSHOTS"
KEY_PREFIX = "snapshot."
# Why load() found nothing: never written (a first start) or deleted. The history is replayed whole.
NO_SNAPSHOT = "no snapshot"
# Room left in a NATS message for the key-value's own headers and subject.
_MESSAGE_MARGIN = 16 * 1024
# zlib's fastest level: nearly all of the gain on these records, at a few ms a MB.
_COMPRESSION_LEVEL = 1

_log = structlog.get_logger("trader.runtime.snapshots")


class Record(msgspec.Struct, frozen=True):
    """A snapshot as stored: the state stays encoded until its schema version has been checked."""

    version: int
    covers: dict[str, int]  # stream -> the last sequence the state includes
    taken_ms: int
    state: msgspec.Raw


class Inline(msgspec.Struct, frozen=True, tag="inline"):
    record: bytes
    compressed: bool = False  # False: written before snapshots were compressed


class InObjectStore(msgspec.Struct, frozen=True, tag="object"):
    name: str
    size: int  # of what is stored (compressed when ``compressed``)
    sha256: str
    compressed: bool = False


Entry = Inline | InObjectStore
_entry = msgspec.msgpack.Decoder(Entry)
_record = msgspec.msgpack.Decoder(Record)


@dataclass(frozen=True)
class Loaded(Generic[S]):
    state: S
    covers: dict[str, int]
    taken_ms: int


def encode_record(state: Any, covers: dict[str, int], version: int, taken_ms: int) -> bytes:
    raw = msgspec.Raw(msgspec.msgpack.encode(state))
    return msgspec.msgpack.encode(Record(version, dict(covers), taken_ms, raw))


def compress(record: bytes) -> bytes:
    return zlib.compress(record, _COMPRESSION_LEVEL)


def decompress(stored: bytes) -> bytes:
    """The record of a compressed snapshot; ``ValueError`` when it is not one."""
    try:
        return zlib.decompress(stored)
    except zlib.error as exc:
        raise ValueError(f"corrupt snapshot: {exc}") from None


def decode_record(data: bytes, state_type: type[S], version: int) -> Loaded[S]:
    """The snapshot in ``data``; ``ValueError`` saying why it cannot be used."""
    try:
        record = _record.decode(data)
    except (msgspec.DecodeError, msgspec.ValidationError) as exc:
        raise ValueError(f"corrupt snapshot: {exc}") from None
    if record.version != version:
        raise ValueError(f"snapshot of schema version {record.version}, this code reads {version}")
    try:
        state = msgspec.msgpack.decode(record.state, type=state_type)
    except (msgspec.DecodeError, msgspec.ValidationError) as exc:
        raise ValueError(f"corrupt snapshot state: {exc}") from None
    return Loaded(state, dict(record.covers), record.taken_ms)


class SnapshotStore:
    """The latest snapshot of one service (``key``), in JetStream."""

    def __init__(self, js: JetStreamContext, key: str, *, inline_limit: int | None = None) -> None:
        self.js, self.key = js, key
        self._inline_limit = inline_limit
        self._kv: KeyValue | None = None
        self._objects: ObjectStore | None = None
        self.problem: str | None = None  # why the last ``load`` found nothing usable
        self.stored_in = ""  # where the last ``save`` put the snapshot: "inline" or "object"

    @property
    def kv_key(self) -> str:
        return KEY_PREFIX + self.key

    def inline_limit(self) -> int:
        if self._inline_limit is not None:
            return self._inline_limit
        return connection_of(self.js).max_payload - _MESSAGE_MARGIN

    async def _bucket(self) -> KeyValue:
        if self._kv is None:
            await ensure_state_bucket(self.js)
            self._kv = await self.js.key_value(STATE_BUCKET)
        return self._kv

    async def _object_store(self) -> ObjectStore:
        if self._objects is None:
            try:
                self._objects = await self.js.object_store(OBJECT_BUCKET)
            except BucketNotFoundError:
                config = ObjectStoreConfig(
                    bucket=OBJECT_BUCKET,
                    description="Service snapshots too large for a key-value entry",
                    storage=StorageType.FILE,
                )
                self._objects = await self.js.create_object_store(OBJECT_BUCKET, config=config)
        return self._objects

    async def load(self, state_type: type[S], version: int) -> Loaded[S] | None:
        """The latest snapshot, or None (``problem`` says why): then the history is replayed whole."""
        self.problem = None
        try:
            data = await self._read()
            return decode_record(data, state_type, version)
        except ValueError as exc:
            self.problem = str(exc)
        if self.problem == NO_SNAPSHOT:  # a first start: nothing is wrong
            _log.info("snapshot.none", key=self.key)
        else:
            _log.warning("snapshot.unusable", key=self.key, problem=self.problem)
        return None

    async def _read(self) -> bytes:
        try:
            entry = await (await self._bucket()).get(self.kv_key)
        except NotFoundError:  # never written, or deleted
            raise ValueError(NO_SNAPSHOT) from None
        try:
            where = _entry.decode(entry.value or b"")
        except (msgspec.DecodeError, msgspec.ValidationError) as exc:
            raise ValueError(f"corrupt snapshot entry: {exc}") from None
        if isinstance(where, Inline):
            return decompress(where.record) if where.compressed else where.record
        try:
            data = (await (await self._object_store()).get(where.name)).data or b""
        except NotFoundError:
            raise ValueError(f"snapshot object {where.name} is missing") from None
        except Exception as exc:  # a digest mismatch, a chunk missing: nothing to trust
            raise ValueError(f"snapshot object {where.name} unreadable: {exc!r}") from None
        if len(data) != where.size or hashlib.sha256(data).hexdigest() != where.sha256:
            raise ValueError(f"snapshot object {where.name} does not match its digest")
        return decompress(data) if where.compressed else data

    async def save(self, state: Any, covers: dict[str, int], version: int) -> int:
        """Store ``state`` as covering ``covers``; the size of the snapshot as stored, in bytes."""
        taken_ms = time.time_ns() // 1_000_000
        data = compress(encode_record(state, covers, version, taken_ms))
        kv = await self._bucket()
        if len(data) <= self.inline_limit():
            await kv.put(self.kv_key, msgspec.msgpack.encode(Inline(data, compressed=True)))
            self.stored_in = "inline"
            return len(data)
        name = f"{self.key}.{taken_ms}.{sum(covers.values())}"
        objects = await self._object_store()
        await objects.put(name, data)
        pointer = InObjectStore(name, len(data), hashlib.sha256(data).hexdigest(), compressed=True)
        await kv.put(self.kv_key, msgspec.msgpack.encode(pointer))
        self.stored_in = "object"
        await self._forget_objects_but(objects, name)
        return len(data)

    async def _forget_objects_but(self, objects: ObjectStore, keep: str) -> None:
        """Delete this key's older objects (a crash may have left one without a pointer to it)."""
        try:
            infos = await objects.list()
        except NotFoundError:
            return
        for info in infos:
            if info.name != keep and info.name.startswith(self.key + ".") and not info.deleted:
                with contextlib.suppress(NotFoundError):
                    await objects.delete(info.name)


@dataclass
class Snapshotting(Generic[S]):
    """How the intake snapshots a service's state: ``take`` gives the state as a msgspec-encodable
    value of ``state_type`` (called between batches, so it covers exactly the messages applied),
    ``restore`` puts a loaded one in place. ``version`` changes with the state's schema: a snapshot of
    another version is not read. Taken every ``every_messages`` messages or ``every_s`` seconds,
    whichever first, and at a graceful stop. ``settled``, when given, says whether the state holds only
    what is stored now (a service whose state also changes by work of its own in flight, the oms):
    a snapshot waits for it, so it never holds a change whose outputs a crash could lose."""

    key: str
    state_type: type[S]
    version: int
    take: Callable[[], S]
    restore: Callable[[S], None]
    every_messages: int = 10_000
    every_s: float = 60.0
    inline_limit: int | None = None  # tests: force the object store
    settled: Callable[[], bool] | None = None
