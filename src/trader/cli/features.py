"""``trader features SYMBOL [--tf 1m] [--venue V] [--last N] [--json]``: the latest features of a symbol
from QuestDB (``features_<tf>``, written by feature-eng), oldest first: a row per closed bar, a column
per feature (empty while it warms up). The table shows six significant digits; ``--json`` every digit
of the float64 values (features are analytics, not money)."""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Annotated, Any

import typer

from trader.cli.bars import _NAME
from trader.cli.format import JsonOpt, err, fail, print_rows
from trader.config import Settings
from trader.marketdata.bars import timeframe_ms
from trader.stores.questdb_features import features_table

KEYS = ["ts", "venue", "symbol", "bars"]


def features_sql(symbol: str, timeframe: str, venue: str | None, last: int) -> str:
    """The query of the ``last`` rows, newest first; refuses names that are not a symbol or a venue
    (they go into the SQL) and a timeframe that is none."""
    timeframe_ms(timeframe)  # raises ValueError
    for what, name in (("symbol", symbol), ("venue", venue)):
        if name is not None and not _NAME.match(name):
            raise ValueError(f"{what} {name!r} is not a name of letters, digits, '.', '_' or '-'")
    if last < 1:
        raise ValueError("--last must be at least 1")
    where = f"symbol = '{symbol}'" + (f" AND venue = '{venue}'" if venue else "")
    return f"SELECT * FROM {features_table(timeframe)} WHERE {where} ORDER BY ts DESC LIMIT {last}"


def _rows(body: dict[str, Any], as_json: bool) -> tuple[list[str], list[list[Any]]]:
    names = [c["name"] for c in body.get("columns", [])]
    columns = KEYS + [n for n in names if n not in KEYS]
    rows = []
    for values in reversed(body.get("dataset", [])):
        row = dict(zip(names, values, strict=True))
        row["ts"] = datetime.fromisoformat(str(row["ts"]).replace("Z", "+00:00")).astimezone(UTC)
        if not as_json:
            row |= {n: _short(row[n]) for n in columns if n not in KEYS}
        rows.append([row.get(c) for c in columns])
    return columns, rows


def _short(value: Any) -> str:
    return "" if value is None else f"{value:.6g}"


def features(
    symbol: Annotated[str, typer.Argument(help="The unified symbol, e.g. BTCUSDT.")],
    tf: Annotated[str, typer.Option("--tf", help="Timeframe of the bars: 1s, 1m, ...")] = "1m",
    venue: Annotated[str | None, typer.Option("--venue", help="Only this venue's.")] = None,
    last: Annotated[int, typer.Option("--last", help="How many bars, the latest.")] = 10,
    as_json: JsonOpt = False,
) -> None:
    """The latest features of a symbol (QuestDB, from feature-eng), oldest first."""
    import httpx

    from trader.stores.questdb import QuestDBClient, QuestDBError

    try:
        sql = features_sql(symbol.upper(), tf, venue, last)
    except ValueError as exc:
        raise fail(str(exc)) from None
    settings = Settings()
    try:
        body = QuestDBClient(settings).query(sql)
    except QuestDBError as exc:
        if "does not exist" in str(exc):
            made = ", ".join(settings.feature_eng.timeframes)
            raise fail(f"no {features_table(tf)} table in QuestDB: feature-eng computes {made}") from None
        raise fail(str(exc)) from None
    except (OSError, httpx.TransportError) as exc:
        raise fail(
            f"cannot reach QuestDB at {settings.questdb_http_url} ({exc}): is the stack up? run `trader up`"
        ) from None
    columns, rows = _rows(body, as_json)
    if not rows and not as_json:
        err.print(f"no {tf} features of {symbol.upper()}" + (f" on {venue}" if venue else ""))
    print_rows(columns, rows, as_json)
