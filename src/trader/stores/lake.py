"""The Delta Lake: tables at ``<lake_root>/<table>/`` (``s3://trader2025/lake/...`` by default, or a local
path), written with delta-rs.

Exactly once: every append commits, in the same Delta transaction, an application transaction
``(app_id, version)`` whose version is the highest stream sequence in the batch. A writer that
restarts reads that version back and resumes after it, so a crash at any moment neither loses nor
repeats a row.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pyarrow as pa
import pyarrow.compute as pc
from deltalake import CommitProperties, DeltaTable, Transaction, WriterProperties, write_deltalake
from deltalake.exceptions import TableNotFoundError

from trader.config import Settings

DECIMAL = pa.decimal128(38, 18)
TIMESTAMP = pa.timestamp("ms", tz="UTC")


@dataclass(frozen=True)
class LakeTable:
    name: str
    schema: pa.Schema
    partition_by: tuple[str, ...]


def _field(name: str, kind: pa.DataType, nullable: bool = False) -> pa.Field:
    return pa.field(name, kind, nullable=nullable)


MARKET_TICKS = LakeTable(
    "market_ticks",
    pa.schema(
        [
            _field("ts", TIMESTAMP),
            _field("ingest_ts", TIMESTAMP),
            _field("exchange", pa.string()),
            _field("venue", pa.string()),
            _field("symbol", pa.string()),
            _field("price", DECIMAL),
            _field("size", DECIMAL),
            _field("volume", DECIMAL),
            _field("bid", DECIMAL, True),
            _field("ask", DECIMAL, True),
            _field("side", pa.string(), True),
            _field("trade_id", pa.string(), True),
            _field("source_seq", pa.int64(), True),
            _field("stream_seq", pa.int64()),
            _field("dt", pa.string()),
        ]
    ),
    ("symbol", "dt"),
)

ALT_DATA = LakeTable(
    "alt_data",
    pa.schema(
        [
            _field("ts", TIMESTAMP),
            _field("ingest_ts", TIMESTAMP),
            _field("kind", pa.string()),
            _field("source", pa.string()),
            _field("symbol", pa.string(), True),
            _field("value", DECIMAL),
            _field("unit", pa.string(), True),
            _field("stream_seq", pa.int64()),
            _field("dt", pa.string()),
        ]
    ),
    ("kind", "dt"),
)

TABLES = {t.name: t for t in (MARKET_TICKS, ALT_DATA)}


def utc_dates(millis: pa.Array) -> pa.Array:
    """'YYYY-MM-DD' of each epoch-millisecond value, in UTC: the ``dt`` partition."""
    # Floor division, in Arrow: the integer ``divide`` truncates toward zero, wrong before 1970.
    days = pc.subtract(millis, pc.if_else(pc.less(millis, 0), 86_399_999, 0))
    return pc.divide(days, 86_400_000).cast(pa.int32()).cast(pa.date32()).cast(pa.string())


class Lake:
    def __init__(self, settings: Settings) -> None:
        self.settings = settings
        self.root = settings.lake_root.rstrip("/")
        self.remote = "://" in self.root
        self.storage_options = settings.delta_storage_options() if self.root.startswith("s3://") else None

    def uri(self, table: LakeTable) -> str:
        return f"{self.root}/{table.name}"

    def open(self, table: LakeTable) -> DeltaTable | None:
        try:
            return DeltaTable(self.uri(table), storage_options=self.storage_options)
        except TableNotFoundError:
            return None

    def committed_version(self, table: LakeTable, app_id: str) -> int | None:
        """The highest stream sequence ``app_id`` has committed to ``table``, if any."""
        delta = self.open(table)
        return None if delta is None else delta.transaction_version(app_id)

    def append(self, table: LakeTable, data: pa.Table, *, app_id: str, version: int) -> None:
        if not self.remote:
            Path(self.root).mkdir(parents=True, exist_ok=True)
        write_deltalake(
            self.uri(table),
            data,
            mode="append",
            partition_by=list(table.partition_by),
            storage_options=self.storage_options,
            writer_properties=WriterProperties(compression="ZSTD"),
            commit_properties=CommitProperties(app_transactions=[Transaction(app_id, version)]),
        )

    def compact(self, table: LakeTable) -> dict[str, Any]:
        """Merge small files (delta-rs optimize) and write a checkpoint."""
        delta = self.open(table)
        if delta is None:
            return {"table": table.name, "skipped": "no table yet"}
        metrics = delta.optimize.compact()
        delta.create_checkpoint()
        return {"table": table.name, **{k: metrics.get(k) for k in ("numFilesAdded", "numFilesRemoved")}}

    def vacuum(self, table: LakeTable, retention_hours: int, *, dry_run: bool) -> list[str]:
        delta = self.open(table)
        if delta is None:
            return []
        return delta.vacuum(
            retention_hours=retention_hours, dry_run=dry_run, enforce_retention_duration=False
        )

    def info(self, table: LakeTable) -> dict[str, Any]:
        delta = self.open(table)
        if delta is None:
            return {
                "table": table.name,
                "uri": self.uri(table),
                "version": None,
                "files": 0,
                "rows": 0,
                "bytes": 0,
            }
        actions = pa.table(delta.get_add_actions(flatten=True))
        return {
            "table": table.name,
            "uri": self.uri(table),
            "version": delta.version(),
            "files": actions.num_rows,
            "rows": int(pc.sum(actions.column("num_records")).as_py() or 0),
            "bytes": int(pc.sum(actions.column("size_bytes")).as_py() or 0),
        }
