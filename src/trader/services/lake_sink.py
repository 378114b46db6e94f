"""What sink-ticks and sink-alt share: a stream into a Delta table, exactly once.

Each batch (rows, bytes or time, whichever first; a trickle's batches wait longer, see
``SinkSettings.small_batch_rows``) is decoded; refused messages go to the dead letters
first; the rest is appended to the table in one Delta commit that also records, as the application
transaction of this service, the highest stream sequence of the batch. At start the service reads that
sequence back and consumes from the next one: a crash or restart at any moment neither loses nor
duplicates a row.
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
from trader.stores.lake import Lake, LakeTable


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
        async for batch in self.consumer.batches():
            if batch:
                await self._write(rt, batch)
                await self.consumer.ack(batch)
            await self._maybe_compact(rt)

    async def _write(self, rt: Runtime, batch: list[Delivery]) -> None:
        started = time.perf_counter()
        rows, refused = [], []
        for d in batch:
            try:
                rows.append((d, self.decode(d.data)))
            except InvalidMessage as exc:
                refused.append(Refused(d.seq, d.subject, d.data, d.headers, exc.field, str(exc)))
        await rt.dead_letter(self.stream, refused)
        last_seq = batch[-1].seq
        if rows:
            data = self.to_arrow(rows)
            await rt.retry(
                "lake.append",
                lambda: asyncio.to_thread(
                    self.lake.append, self.table, data, app_id=self.name, version=last_seq
                ),
            )
        self.committed = last_seq
        rt.metrics.count_in(len(batch))
        rt.metrics.count_out(len(rows))
        rt.metrics.observe_batch(time.perf_counter() - started)

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


def decimals(values: list[Any]) -> pa.Array:
    return pa.array(values, pa.decimal128(38, 18))
