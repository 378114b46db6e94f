"""What `trader bars` and `trader features` share: the latest rows of one symbol (on one venue, or all)
from a QuestDB table of a timeframe (``ohlcv_<tf>``, ``features_<tf>``), asked newest first and shown
oldest first; one rule for the names that go into the SQL, and one way of saying what went wrong (no
such table, no QuestDB) in a line, exit 1."""

from __future__ import annotations

import re
from collections.abc import Callable
from datetime import UTC, datetime
from typing import Any

from trader.cli.format import err, fail
from trader.config import Settings
from trader.marketdata.bars import timeframe_ms

NAME = re.compile(r"^[A-Za-z0-9][A-Za-z0-9._-]{0,63}$")  # a symbol or venue: a subject token


def latest_sql(
    select: str, table_of: Callable[[str], str], symbol: str, timeframe: str, venue: str | None, last: int
) -> str:
    """The query of the ``last`` rows, newest first; refuses names that are not a symbol or a venue
    (they go into the SQL), a timeframe that is none, and fewer than one row."""
    timeframe_ms(timeframe)  # raises ValueError
    for what, name in (("symbol", symbol), ("venue", venue)):
        if name is not None and not NAME.match(name):
            raise ValueError(f"{what} {name!r} is not a name of letters, digits, '.', '_' or '-'")
    if last < 1:
        raise ValueError("--last must be at least 1")
    where = f"symbol = '{symbol}'" + (f" AND venue = '{venue}'" if venue else "")
    return f"SELECT {select} FROM {table_of(timeframe)} WHERE {where} ORDER BY ts DESC LIMIT {last}"


def query_latest(sql: Callable[[], str], missing: Callable[[Settings], str]) -> dict[str, Any]:
    """QuestDB's answer to ``sql()`` (which refuses bad input with ValueError, before any query);
    ``missing`` says what makes the table when it does not exist."""
    import httpx

    from trader.stores.questdb import QuestDBClient, QuestDBError

    try:
        query = sql()
    except ValueError as exc:
        raise fail(str(exc)) from None
    settings = Settings()
    try:
        return QuestDBClient(settings).query(query)
    except QuestDBError as exc:
        if "does not exist" in str(exc):
            raise fail(missing(settings)) from None
        raise fail(str(exc)) from None
    except (OSError, httpx.TransportError) as exc:
        raise fail(
            f"cannot reach QuestDB at {settings.questdb_http_url} ({exc}): is the stack up? run `trader up`"
        ) from None


def oldest_first(body: dict[str, Any]) -> tuple[list[str], list[dict[str, Any]]]:
    """The answer's column names, and its rows oldest first, each by column with ``ts`` a UTC time."""
    names = [c["name"] for c in body.get("columns", [])]
    rows = []
    for values in reversed(body.get("dataset", [])):
        row = dict(zip(names, values, strict=True))
        row["ts"] = datetime.fromisoformat(str(row["ts"]).replace("Z", "+00:00")).astimezone(UTC)
        rows.append(row)
    return names, rows


def say_if_none(rows: list[Any], as_json: bool, what: str, symbol: str, venue: str | None) -> None:
    """A person asking for rows there are none of is told so (``--json`` prints an empty list)."""
    if not rows and not as_json:
        err.print(f"no {what} of {symbol}" + (f" on {venue}" if venue else ""))
