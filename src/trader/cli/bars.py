"""``trader bars SYMBOL [--tf 1h] [--venue V] [--last N] [--json]``: the latest OHLCV bars of a symbol
from QuestDB (``ohlcv_<tf>``: 1s and 1m from the normalizer, 5m to 1d from ohlcv-agg), oldest first.

The bar in progress is shown too, with ``closed`` false. Prices and volumes are exact (QuestDB
``DECIMAL``); ``--json`` prints them as strings, every place kept."""

from __future__ import annotations

import re
from datetime import UTC, datetime
from typing import Annotated, Any

import typer

from trader.cli.format import JsonOpt, err, fail, print_rows
from trader.config import Settings
from trader.marketdata.bars import timeframe_ms
from trader.stores.questdb import bar_table

COLUMNS = ["ts", "venue", "symbol", "open", "high", "low", "close", "volume", "vwap", "trades", "closed"]
_NAME = re.compile(r"^[A-Za-z0-9][A-Za-z0-9._-]{0,63}$")  # a symbol or venue: a subject token


def bars_sql(symbol: str, timeframe: str, venue: str | None, last: int) -> str:
    """The query of the ``last`` bars, newest first; refuses names that are not a symbol or a venue
    (they go into the SQL) and a timeframe that is none."""
    timeframe_ms(timeframe)  # raises ValueError
    for what, name in (("symbol", symbol), ("venue", venue)):
        if name is not None and not _NAME.match(name):
            raise ValueError(f"{what} {name!r} is not a name of letters, digits, '.', '_' or '-'")
    if last < 1:
        raise ValueError("--last must be at least 1")
    where = f"symbol = '{symbol}'" + (f" AND venue = '{venue}'" if venue else "")
    return (
        f"SELECT {', '.join(COLUMNS)} FROM {bar_table(timeframe)} WHERE {where} ORDER BY ts DESC LIMIT {last}"
    )


def _row(columns: list[str], values: list[Any]) -> list[Any]:
    from trader.cli.data import _to_decimal

    row = dict(zip(columns, values, strict=True))
    ts = datetime.fromisoformat(str(row["ts"]).replace("Z", "+00:00")).astimezone(UTC)
    decimals = {"open", "high", "low", "close", "volume", "vwap"}
    return [ts if c == "ts" else _to_decimal(row[c]) if c in decimals else row[c] for c in COLUMNS]


def bars(
    symbol: Annotated[str, typer.Argument(help="The unified symbol, e.g. BTCUSDT.")],
    tf: Annotated[str, typer.Option("--tf", help="Timeframe: 1s, 1m, 5m, 15m, 1h, 4h, 1d.")] = "1h",
    venue: Annotated[str | None, typer.Option("--venue", help="Only this venue's bars.")] = None,
    last: Annotated[int, typer.Option("--last", help="How many bars, the latest.")] = 20,
    as_json: JsonOpt = False,
) -> None:
    """The latest OHLCV bars of a symbol (QuestDB), oldest first; the bar in progress has closed false."""
    import httpx

    from trader.stores.questdb import QuestDBClient, QuestDBError

    try:
        sql = bars_sql(symbol.upper(), tf, venue, last)
    except ValueError as exc:
        raise fail(str(exc)) from None
    settings = Settings()
    try:
        body = QuestDBClient(settings).query(sql)
    except QuestDBError as exc:
        if "does not exist" in str(exc):
            made = f"the normalizer writes {settings.normalizer.timeframes}"
            made += f", ohlcv-agg {settings.ohlcv_agg.timeframes}"
            raise fail(f"no {bar_table(tf)} table in QuestDB: {made}") from None
        raise fail(str(exc)) from None
    except (OSError, httpx.TransportError) as exc:
        raise fail(
            f"cannot reach QuestDB at {settings.questdb_http_url} ({exc}): is the stack up? run `trader up`"
        ) from None
    names = [c["name"] for c in body.get("columns", [])]
    rows = [_row(names, values) for values in reversed(body.get("dataset", []))]
    if not rows and not as_json:
        err.print(f"no {tf} bars of {symbol.upper()}" + (f" on {venue}" if venue else ""))
    print_rows(COLUMNS, rows, as_json)
