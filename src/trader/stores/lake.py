"""The Delta Lake: tables at ``<lake_root>/<table>/`` (``s3://trader2025/lake/...`` by default, or a local
path), written with delta-rs.

Decimal places per column: prices (``price``, ``bid``, ``ask``) keep 12, quantities (``size``,
``volume``) 8, alternative data's ``value`` 18. The query engines (Polars, DataFusion) give a product of
two decimals the sum of their scales within 38 digits and do not widen: with 18 places on both sides,
``price * size`` kept 2 integer digits and overflowed at 100. With 12 + 8 a notional keeps 18 integer
digits, and so does a sum of notionals. Crypto venues quote to 8 places or fewer (prices of the
smallest coins to 10 or 11); a value with more places than its column keeps is refused, never rounded.
Tables written before (every decimal at 18 places) are still appended to (delta-rs casts to the table's
types); ``migrate`` rewrites them with the current types, refusing if that would change a value (the
sinks call it before their first batch).

Exactly once: every append commits, in the same Delta transaction, an application transaction
``(app_id, version)`` whose version is the highest stream sequence in the batch. A writer that
restarts reads that version back and resumes after it, so a crash at any moment neither loses nor
repeats a row.
"""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass
from decimal import Decimal
from pathlib import Path
from typing import Any

import pyarrow as pa
import pyarrow.compute as pc
from deltalake import CommitProperties, DeltaTable, Transaction, WriterProperties, write_deltalake
from deltalake.exceptions import TableNotFoundError

from trader.config import Settings
from trader.marketdata.decode import PRICE_PLACES, QUANTITY_PLACES, decimal_places

PRICE = pa.decimal128(38, PRICE_PLACES)  # what the tick decoder takes: one rule for every store
QUANTITY = pa.decimal128(38, QUANTITY_PLACES)
VALUE = pa.decimal128(38, 18)
TIMESTAMP = pa.timestamp("ms", tz="UTC")


@dataclass(frozen=True)
class LakeTable:
    name: str
    schema: pa.Schema
    partition_by: tuple[str, ...]
    # Columns added since the table was first written (nullable): an append adds them to the table.
    added_columns: tuple[str, ...] = ()


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
            _field("price", PRICE),
            _field("size", QUANTITY),
            _field("volume", QUANTITY),
            _field("bid", PRICE, True),
            _field("ask", PRICE, True),
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
            _field("value", VALUE),
            _field("unit", pa.string(), True),
            _field("stream_seq", pa.int64()),
            _field("dt", pa.string()),
            # The venues' funding and liquidations (trader.marketdata.feeds.alt), issue 18:
            _field("venue_symbol", pa.string(), True),
            _field("predicted", VALUE, True),
            _field("next_ts", TIMESTAMP, True),
            _field("price", VALUE, True),
            _field("side", pa.string(), True),
        ]
    ),
    ("kind", "dt"),
    added_columns=("venue_symbol", "predicted", "next_ts", "price", "side"),
)

# feature-eng's features, for training models offline: one row per (bar, feature), so the table keeps its
# schema whatever the feature set (pivot on ``feature``); features are float64 analytics, not money.
# Rows only for values there are (none while a feature warms up). Written by sink-features.
FEATURES = LakeTable(
    "features",
    pa.schema(
        [
            _field("ts", TIMESTAMP),  # the bar's start: the features are as of its close
            _field("ingest_ts", TIMESTAMP),
            _field("venue", pa.string()),
            _field("symbol", pa.string()),
            _field("timeframe", pa.string()),
            _field("feature", pa.string()),
            _field("value", pa.float64()),
            _field("bars", pa.int64()),
            _field("stream_seq", pa.int64()),
            _field("dt", pa.string()),
        ]
    ),
    ("symbol", "dt"),
)

TABLES = {t.name: t for t in (MARKET_TICKS, ALT_DATA, FEATURES)}


class LakeMigrationError(RuntimeError):
    """A table that cannot take the current column types without changing a value."""


def decimal_columns(table: LakeTable) -> dict[str, pa.Decimal128Type]:
    return {f.name: f.type for f in table.schema if pa.types.is_decimal(f.type)}


def unfit_decimal(table: LakeTable, row: object) -> tuple[str, str] | None:
    """The first decimal column of ``table`` whose value in ``row`` (an object with an attribute per
    column) the column cannot keep exactly, and why; None when every one fits."""
    for name, kind in decimal_columns(table).items():
        value = getattr(row, name, None)
        if not isinstance(value, Decimal) or not value.is_finite():
            continue
        if decimal_places(value) > kind.scale:
            return name, f"{value} has more than {kind.scale} decimal places, the most the lake keeps"
        if value and value.adjusted() >= kind.precision - kind.scale:
            return name, f"{value} has more than {kind.precision - kind.scale} integer digits"
    return None


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
            schema_mode="merge" if table.added_columns else None,
        )

    def stale_columns(self, table: LakeTable) -> dict[str, pa.DataType]:
        """The decimal columns ``table`` stores with other types than the current ones, and those
        types: a table written before per-column types."""
        delta = self.open(table)
        if delta is None:
            return {}
        stored = pa.schema(delta.schema().to_arrow())
        return {
            name: stored.field(name).type
            for name, kind in decimal_columns(table).items()
            if name in stored.names and stored.field(name).type != kind
        }

    def migrate(self, table: LakeTable) -> dict[str, pa.DataType]:
        """Rewrite ``table`` with the current decimal types where its stored ones differ, in one commit
        that keeps every row and the writers' application transactions; the columns rewritten, with
        their old types. Raises ``LakeMigrationError``, leaving the table as it is, when a value would
        change. Only while nothing else writes the table: the sinks call it before their first batch."""
        stale = self.stale_columns(table)
        delta = self.open(table)
        if not stale or delta is None:
            return {}
        dataset = delta.to_pyarrow_dataset()
        wanted = table.schema
        target = pa.schema(
            [wanted.field(f.name) if f.name in stale else f for f in dataset.schema],
            metadata=dataset.schema.metadata,
        )
        cast = _Rescale(target, stale)
        try:
            write_deltalake(
                self.uri(table),
                pa.RecordBatchReader.from_batches(target, cast.batches(dataset.to_batches())),
                mode="overwrite",
                schema_mode="overwrite",
                partition_by=list(table.partition_by),
                storage_options=self.storage_options,
                writer_properties=WriterProperties(compression="ZSTD"),
            )
        except Exception:
            if cast.refused is None:
                raise
            # The writer wraps what the batches raised; nothing was committed.
            raise LakeMigrationError(f"{table.name}: {cast.refused}; the table keeps its types") from None
        return stale

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


class _Rescale:
    """The batches of a table with its stale decimal columns in their current types, exactly; what
    refused, if a value would have changed."""

    def __init__(self, target: pa.Schema, stale: dict[str, pa.DataType]) -> None:
        self.target = target
        self.stale = stale
        self.refused: str | None = None

    def batches(self, batches: Iterator[pa.RecordBatch]) -> Iterator[pa.RecordBatch]:
        for batch in batches:
            columns = [self._column(batch, f) for f in self.target]
            yield pa.RecordBatch.from_arrays(columns, schema=self.target)

    def _column(self, batch: pa.RecordBatch, field: pa.Field) -> pa.Array:
        column = batch.column(field.name)
        if field.name not in self.stale:
            return column
        try:
            return column.cast(field.type)  # safe: refuses to drop a digit
        except pa.ArrowInvalid:
            self.refused = f"{field.name} holds a value with more than {field.type.scale} decimal places"
            raise
