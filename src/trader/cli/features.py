"""``trader features SYMBOL [--tf 1m] [--venue V] [--last N] [--json]``: the latest features of a symbol
from QuestDB (``features_<tf>``, written by feature-eng), oldest first: a row per closed bar, a column
per feature (empty while it warms up). The table shows six significant digits; ``--json`` every digit
of the float64 values (features are analytics, not money)."""

from __future__ import annotations

from collections.abc import Callable
from typing import Annotated, Any

import typer

from trader.cli.format import JsonOpt, print_rows
from trader.cli.latest import latest_sql, oldest_first, query_latest, say_if_none
from trader.config import Settings

KEYS = ["ts", "venue", "symbol", "bars"]


def features_sql(symbol: str, timeframe: str, venue: str | None, last: int) -> str:
    """The query of the ``last`` rows, newest first (bad names and timeframes refused: ValueError)."""
    from trader.stores.questdb_features import features_table  # the QuestDB client (numpy): not at start

    return latest_sql("*", features_table, symbol, timeframe, venue, last)


def _rows(body: dict[str, Any], as_json: bool) -> tuple[list[str], list[list[Any]]]:
    names, rows = oldest_first(body)
    columns = KEYS + [n for n in names if n not in KEYS]
    if not as_json:
        rows = [row | {n: _short(row[n]) for n in columns if n not in KEYS} for row in rows]
    return columns, [[row.get(c) for c in columns] for row in rows]


def _short(value: Any) -> str:
    return "" if value is None else f"{value:.6g}"


def _no_table(timeframe: str) -> Callable[[Settings], str]:
    def say(settings: Settings) -> str:
        from trader.stores.questdb_features import features_table

        made = ", ".join(settings.feature_eng.timeframes)
        return f"no {features_table(timeframe)} table in QuestDB: feature-eng computes {made}"

    return say


def features(
    symbol: Annotated[str, typer.Argument(help="The unified symbol, e.g. BTCUSDT.")],
    tf: Annotated[str, typer.Option("--tf", help="Timeframe of the bars: 1s, 1m, ...")] = "1m",
    venue: Annotated[str | None, typer.Option("--venue", help="Only this venue's.")] = None,
    last: Annotated[int, typer.Option("--last", help="How many bars, the latest.")] = 10,
    as_json: JsonOpt = False,
) -> None:
    """The latest features of a symbol (QuestDB, from feature-eng), oldest first."""
    symbol = symbol.upper()
    body = query_latest(lambda: features_sql(symbol, tf, venue, last), _no_table(tf))
    columns, rows = _rows(body, as_json)
    say_if_none(rows, as_json, f"{tf} features", symbol, venue)
    print_rows(columns, rows, as_json)
