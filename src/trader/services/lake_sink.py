"""What sink-ticks and sink-alt share: a stream into a Delta table, exactly once.

Each batch (rows, bytes or time, whichever first; a trickle's batches wait longer, see
``SinkSettings.small_batch_rows``) is decoded; refused messages go to the dead letters
first; the rest is appended to the table in one Delta commit that also records, as the application
transaction of this service, the highest stream sequence of the batch. At start the service reads that
sequence back and consumes from the next one: a crash or restart at any moment neither loses nor
duplicates a row.

A value with more decimal places than its lake column keeps (see ``trader.stores.lake``) is refused
too, never rounded. A table written with older column types is rewritten with the current ones before
the first batch (``Lake.migrate``); if a value would change, the table keeps its types and the sink
appends to it as it is.
"""

from __future__ import annotations

import asyncio
import time
from abc import abstractmethod
from typing import Any, ClassVar

import pyarrow as pa

from trader.config import SinkSettings
from trader.marketdata.decode import InvalidMessage
from trader.runtime.consumer import Delivery, StreamConsumer
from trader.runtime.service import Refused, Runtime, Service
from trader.stores.lake import Lake, LakeMigrationError, LakeTable, unfit_decimal


class LakeSink(Service):
    table: ClassVar[LakeTable]
    stream: ClassVar[str]
    subject: ClassVar[str]

    @property
    def sink_settings(self) -> SinkSettings:
        return getattr(self.settings, self.name.replace("-", "_"))

    @abstractmethod
    def decode(self, data: bytes) -> Any:
        """The message, or ``InvalidMessage``."""

    @abstractmethod
    def to_arrow(self, rows: list[tuple[Delivery, Any]]) -> pa.Table:
        """The batch as a table of ``self.table.schema``."""

    async def start(self, rt: Runtime) -> None:
        self.lake = Lake(self.settings)
        committed = await asyncio.to_thread(self.lake.committed_version, self.table, self.name)
        self.committed = committed or 0
        cfg = self.sink_settings
        self.consumer = StreamConsumer(
            rt,
            stream=self.stream,
            name=self.name,
            subject=self.subject,
            start_seq=self.committed + 1,
            max_rows=cfg.batch_rows,
            max_bytes=cfg.batch_bytes,
            max_wait_s=cfg.batch_seconds,
            small_rows=cfg.small_batch_rows,
            small_wait_s=cfg.small_batch_seconds,
        )
        await self.consumer.start()
        self._last_compaction = time.monotonic()
        rt.log.info("sink.resumed", table=self.lake.uri(self.table), committed_seq=self.committed)

    async def run(self, rt: Runtime) -> None:
        await self._migrate(rt)
        async for batch in self.consumer.batches():
            if batch:
                await self._write(rt, batch)
                await self.consumer.ack(batch)
            await self._maybe_compact(rt)

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

    async def _write(self, rt: Runtime, batch: list[Delivery]) -> None:
        started = time.perf_counter()
        rows, refused = [], []
        for d in batch:
            try:
                rows.append((d, self.decode(d.data)))
            except InvalidMessage as exc:
                refused.append(Refused(d.seq, d.subject, d.data, d.headers, exc.field, str(exc)))
        data, unfit = self._fitting(rows) if rows else (None, [])
        await rt.dead_letter(self.stream, refused + unfit)
        last_seq = batch[-1].seq
        if data is not None:
            await rt.retry(
                "lake.append",
                lambda: asyncio.to_thread(
                    self.lake.append, self.table, data, app_id=self.name, version=last_seq
                ),
            )
        self.committed = last_seq
        rt.metrics.count_in(len(batch))
        rt.metrics.count_out(len(rows) - len(unfit))
        rt.metrics.observe_batch(time.perf_counter() - started)

    def _fitting(self, rows: list[tuple[Delivery, Any]]) -> tuple[pa.Table | None, list[Refused]]:
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
                    unfit.append(Refused(d.seq, d.subject, d.data, d.headers, field, f"{field}: {reason}"))
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
        return {"consumer": hasattr(self, "consumer")}

    def health_details(self) -> dict[str, Any]:
        return {"committed_seq": getattr(self, "committed", None)}


def decimals(values: list[Any], kind: pa.DataType) -> pa.Array:
    """Exact: a value with more decimal places than ``kind`` keeps raises ``pa.ArrowInvalid``."""
    return pa.array(values, kind)
