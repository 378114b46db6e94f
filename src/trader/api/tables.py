"""The api's reads of QuestDB: bars, PnL over time, spreads and features. SQL is built here from
checked values only (names matched against a pattern, times as integers), never from raw input; rows
come back as dicts, timestamps as epoch milliseconds and DECIMAL columns as the exact strings QuestDB
sends."""

from __future__ import annotations

import re
from datetime import UTC, datetime, timedelta
from typing import Any

from trader.stores.questdb import QuestDBClient, QuestDBError

NAME = re.compile(r"^[A-Za-z0-9_.-]{1,64}$")
TIMEFRAME = re.compile(r"^[0-9]{1,4}[smhd]$")
MISSING_TABLE = ("does not exist", "table not found")


def literal(value: str) -> str:
    """A checked name as a SQL string literal; ValueError for anything else."""
    if not NAME.match(value):
        raise ValueError(f"{value!r} is not a name (letters, digits, _ . -)")
    return f"'{value}'"


def _time_bounds(since_ms: int | None, until_ms: int | None) -> list[str]:
    where = []
    if since_ms is not None:
        where.append(f"ts >= cast({int(since_ms) * 1000} as timestamp)")
    if until_ms is not None:
        where.append(f"ts < cast({int(until_ms) * 1000} as timestamp)")
    return where


def _where(conditions: list[str]) -> str:
    return f" where {' and '.join(conditions)}" if conditions else ""


def bars_sql(
    symbol: str, venue: str, timeframe: str, since_ms: int | None, until_ms: int | None, limit: int
) -> str:
    if not TIMEFRAME.match(timeframe):
        raise ValueError(f"timeframe {timeframe!r} is not one like 1s, 1m, 1h")
    where = [f"symbol = {literal(symbol)}", f"venue = {literal(venue)}", *_time_bounds(since_ms, until_ms)]
    return (
        "select ts, venue, symbol, open, high, low, close, volume, vwap, trades, closed "
        f"from ohlcv_{timeframe}{_where(where)} order by ts desc limit {int(limit)}"
    )


def pnl_sql(scope: str, since_ms: int | None, until_ms: int | None, limit: int) -> str:
    where = [f"scope = {literal(scope)}", *_time_bounds(since_ms, until_ms)]
    return (
        "select ts, scope, realized, unrealized, fees, total, gross_exposure "
        f"from pnl{_where(where)} order by ts desc limit {int(limit)}"
    )


def latest_rows_sql(table: str, symbol: str | None, limit: int) -> str:
    """The last ``limit`` rows of a table whose columns the api does not know (spreads, features)."""
    where = [f"symbol = {literal(symbol)}"] if symbol else []
    return f"select * from {table}{_where(where)} limit -{int(limit)}"


def features_table(timeframe: str) -> str:
    if not TIMEFRAME.match(timeframe):
        raise ValueError(f"timeframe {timeframe!r} is not one like 1s, 1m, 1h")
    return f"features_{timeframe}"


_EPOCH = datetime(1970, 1, 1, tzinfo=UTC)


def _ms(value: Any) -> Any:
    if isinstance(value, str):  # 2026-12-03T03:00:00.000000Z, whole milliseconds exactly
        return (datetime.fromisoformat(value.replace("Z", "+00:00")) - _EPOCH) // timedelta(milliseconds=1)
    return value


def rows(body: dict[str, Any]) -> list[dict[str, Any]]:
    """QuestDB's answer as dicts; TIMESTAMP columns in epoch ms."""
    columns = body.get("columns", [])
    stamps = {i for i, c in enumerate(columns) if c.get("type", "").upper().startswith("TIMESTAMP")}
    names = [c["name"] for c in columns]
    return [
        {name: (_ms(v) if i in stamps else v) for i, (name, v) in enumerate(zip(names, row, strict=True))}
        for row in body.get("dataset", [])
    ]


def table_missing(exc: QuestDBError) -> bool:
    text = str(exc).lower()
    return any(m in text for m in MISSING_TABLE)


def query_rows(qdb: QuestDBClient, sql: str, *, newest_first: bool = False) -> list[dict[str, Any]]:
    """The rows (oldest first when the SQL took the newest first); [] when the table does not exist."""
    try:
        found = rows(qdb.query(sql, timeout=10))
    except QuestDBError as exc:
        if table_missing(exc):
            return []
        raise
    return list(reversed(found)) if newest_first else found
