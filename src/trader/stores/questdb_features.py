"""QuestDB tables of feature-eng: ``features_<timeframe>``, one row per closed bar of a (venue, symbol),
a DOUBLE column per feature (``sma_20``, ``rsi_14``, ...; null while it warms up), keyed by
``DEDUP UPSERT KEYS(ts, venue, symbol)``: a row written again (a replay after a restart) replaces
itself. ``ts`` is the bar's start; the features are as of its close. A feature added to the settings
later adds its column (``ADD COLUMN IF NOT EXISTS``); a feature removed keeps its old column, null
from then on."""

from __future__ import annotations

import re
from typing import Any

from questdb import TimestampNanos

from trader.messages import Features
from trader.stores.questdb import QuestDBClient

_COLUMN = re.compile(r"^[a-z][a-z0-9_]*$")


def features_table(timeframe: str) -> str:
    return f"features_{timeframe}"


def features_table_ddl(timeframe: str) -> str:
    return (
        f"CREATE TABLE IF NOT EXISTS {features_table(timeframe)} (ts TIMESTAMP, venue SYMBOL, symbol SYMBOL, "
        "bars LONG) TIMESTAMP(ts) PARTITION BY DAY WAL DEDUP UPSERT KEYS(ts, venue, symbol)"
    )


def ensure_feature_tables(qdb: QuestDBClient, timeframes: list[str], columns: list[str]) -> None:
    """Each timeframe's table, with a column for every feature."""
    for timeframe in timeframes:
        qdb.query(features_table_ddl(timeframe))
        for column in columns:
            if not _COLUMN.match(column):
                raise ValueError(f"feature column {column!r} is not a plain lower-case name")
            qdb.query(f"ALTER TABLE {features_table(timeframe)} ADD COLUMN IF NOT EXISTS {column} DOUBLE")


def write_features(qdb: QuestDBClient, rows: list[Features]) -> None:
    """Write and flush; on failure the connection is dropped, so the retry starts afresh."""
    if not rows:
        return
    try:
        sender = qdb._connect()
        for f in rows:
            columns: dict[str, Any] = {k: v for k, v in f.values.items() if v is not None}
            columns["bars"] = f.bars
            sender.row(
                features_table(f.timeframe),
                symbols={"venue": f.venue, "symbol": f.symbol},
                columns=columns,
                at=TimestampNanos(f.start * 1_000_000),
            )
        sender.flush()
    except Exception:
        qdb.close()
        raise
