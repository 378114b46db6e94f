"""What sink-ticks, sink-alt and sink-features share: a stream into a Delta table, exactly once.

Inputs: the sink's subjects in mode WORK (``trader.runtime.intake``), batched for the lake (rows, bytes
or time, whichever first; a trickle's batches wait longer, see ``SinkSettings.small_batch_rows``), each
message decoded by the sink (``decode``), what cannot be decoded on the dead letters with its reason.
State: none in memory; the checkpoint is the table's (``OwnCheckpoint``): each batch is appended in one
Delta commit that also records, as the application transaction of this service, the batch's last stream
sequence. The intake sends the batch's refusals first, then the commit is made; at start the sink
reads that sequence back and the intake resumes after it: a crash or restart at any moment neither loses
nor duplicates a row (a crash before the commit hands the batch over again; its dead letters carry a
msg id of their message, stored once).

A value with more decimal places than its lake column keeps (see ``trader.stores.lake``) is refused
too, never rounded. A table written with older column types is rewritten with the current ones before
the first batch (``Lake.migrate``); if a value would change, the table keeps its types and the sink
appends to it as it is. The table is compacted every ``compact_interval_s``, between batches.
"""

from __future__ import annotations

import asyncio
import time
from abc import abstractmethod
from collections.abc import Sequence
from typing import Any, ClassVar, Protocol

import pyarrow as pa

from trader.bus.publish import Outgoing
from trader.config import SinkSettings
from trader.runtime.intake import Batching, Input, Intake, Mode, Received, Resume
from trader.runtime.service import Refused, Runtime, Service
from trader.stores.lake import Lake, LakeMigrationError, LakeTable, unfit_decimal


class Message(Protocol):
    """What a row is made with besides its value: a ``Received`` (or a consumer's ``Delivery``)."""

    @property
    def seq(self) -> int: ...

    @property
    def arrival_ms(self) -> int: ...


Row = tuple[Message, Any]


def _not_one_by_one(received: Received[Any]) -> list[Outgoing]:
    raise AssertionError("a sink takes its batches whole (live)")


class LakeSink(Service):
    table: ClassVar[LakeTable]
    stream: ClassVar[str]
    subject: ClassVar[str]
    message: ClassVar[type]  # what ``decode`` makes
    intake: Intake[Any] | None = None

    @property
    def sink_settings(self) -> SinkSettings:
        return getattr(self.settings, self.name.replace("-", "_"))

    @abstractmethod
    def decode(self, data: bytes) -> Any:
        """The message, or ``InvalidMessage``."""

    @abstractmethod
    def to_arrow(self, rows: list[Row]) -> pa.Table:
        """The batch as a table of ``self.table.schema``."""

    def lake_input(self) -> Input[Any]:
        """The sink's input: its subjects, every message once, in batches made for the lake."""
        cfg = self.sink_settings
        batching = Batching(
            eager=False,
            wait_s=cfg.batch_seconds,
            max_bytes=cfg.batch_bytes,
            small_rows=cfg.small_batch_rows,
            small_wait_s=cfg.small_batch_seconds,
        )
        return Input(
            self.stream,
            self.subject,
            self.message,
            Mode.WORK,
            decode=self.decode,
            max_batch=cfg.batch_rows,
            batching=batching,
        )

    async def start(self, rt: Runtime) -> None:
        self.rt = rt
        self.lake = Lake(self.settings)
        self.committed = 0
        self._rows: list[Row] = []  # the batch in hand, committed by ``save``
        self._last_compaction = time.monotonic()
        intake = Intake(rt, self.lake_input(), _not_one_by_one, live=self._take, checkpoint=self)
        await intake.start()
        rt.log.info("sink.resumed", table=self.lake.uri(self.table), committed_seq=self.committed)
        self.intake = intake

    async def run(self, rt: Runtime) -> None:
        await self._migrate(rt)
        if self.intake is not None:
            await self.intake.run()

    async def stop(self, rt: Runtime) -> None:
        if self.intake is not None:
            await self.intake.stop()

    # The checkpoint: the table's commits (``OwnCheckpoint``) ------------------------------------------

    async def load(self) -> Resume:
        """After the last sequence committed with the table's rows (0: none yet)."""
        committed = await asyncio.to_thread(self.lake.committed_version, self.table, self.name)
        self.committed = committed or 0
        return Resume(self.committed)

    async def _take(self, received: list[Received[Any]]) -> Sequence[Outgoing]:
        self._rows += [(message, message.value) for message in received]
        return ()

    async def save(self, seq: int) -> int:
        """The batch in hand appended with ``seq`` in the same commit (refused whole: nothing to
        append, the sequence moves on in memory); the table compacted when due."""
        rows, self._rows = self._rows, []
        if rows:
            await self._write(rows, seq)
        self.committed = max(self.committed, seq)
        await self._maybe_compact(self.rt)
        return seq

    async def _migrate(self, rt: Runtime) -> None:
        """The table in the current column types, before anything is appended (the sink is its only
        writer, so nothing is written meanwhile)."""
        stale = await asyncio.to_thread(self.lake.stale_columns, self.table)
        if not stale:
            return
        old = {name: str(kind) for name, kind in stale.items()}
        rt.log.info("lake.migrating", table=self.table.name, columns=old)
        try:
            await asyncio.to_thread(self.lake.migrate, self.table)
        except LakeMigrationError as exc:
            rt.log.warning("lake.migration_refused", table=self.table.name, reason=str(exc), columns=old)
        else:
            rt.log.info("lake.migrated", table=self.table.name, columns=old)

    async def _write(self, rows: list[Row], last_seq: int) -> None:
        """Refused first (once committed past, not sent again), then the one commit."""
        rt = self.rt
        data, unfit = self._fitting(rows)
        await rt.dead_letter(self.stream, unfit)
        if data is not None:
            await rt.retry(
                "lake.append",
                lambda: asyncio.to_thread(
                    self.lake.append, self.table, data, app_id=self.name, version=last_seq
                ),
            )
        rt.metrics.count_out(len(rows) - len(unfit))

    def _fitting(self, rows: list[Row]) -> tuple[pa.Table | None, list[Refused]]:
        """The rows the table can keep exactly, as Arrow, and the refusals of the others (a value
        with more decimal places than its column keeps). Checked row by row only when the batch
        does not convert: nearly every batch does."""
        try:
            return self.to_arrow(rows), []
        except pa.ArrowInvalid:
            fitting, unfit = [], []
            for d, message in rows:
                misfit = unfit_decimal(self.table, message)
                if misfit is None:
                    fitting.append((d, message))
                else:
                    field, reason = misfit
                    unfit.append(_refused(d, field, reason))
            if not unfit:
                raise
        return (self.to_arrow(fitting) if fitting else None), unfit

    async def _maybe_compact(self, rt: Runtime) -> None:
        if time.monotonic() - self._last_compaction < self.sink_settings.compact_interval_s:
            return
        self._last_compaction = time.monotonic()
        try:
            result = await asyncio.to_thread(self.lake.compact, self.table)
        except Exception as exc:  # upkeep: a failure is logged and tried again next interval
            rt.metrics.count_error("lake.compact")
            rt.log.warning("lake.compact_failed", error=repr(exc))
        else:
            rt.log.info("lake.compacted", **result)

    def ready_checks(self) -> dict[str, bool]:
        if self.intake is None:
            return {"intake": False}
        return self.intake.ready_checks()

    def health_details(self) -> dict[str, Any]:
        if self.intake is None:
            return {}
        return {"committed_seq": self.committed, "intake": self.intake.health_details()}


def _refused(message: Any, field: str, reason: str) -> Refused:
    """A row the table cannot keep, on its way to the dead letters whole."""
    return Refused(message.seq, message.subject, message.data, message.headers, field, f"{field}: {reason}")


def decimals(values: list[Any], kind: pa.DataType) -> pa.Array:
    """Exact: a value with more decimal places than ``kind`` keeps raises ``pa.ArrowInvalid``."""
    return pa.array(values, kind)
