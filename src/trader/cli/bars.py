"""``trader bars SYMBOL [--tf 1h] [--venue V] [--last N] [--json]``: the latest OHLCV bars of a symbol
from QuestDB (``ohlcv_<tf>``: 1s and 1m from the normalizer, 5m to 1d from ohlcv-agg), oldest first.

The bar in progress is shown too, with ``closed`` false. Prices and volumes are exact (QuestDB
``DECIMAL``); ``--json`` prints them as strings, every place kept."""

from __future__ import annotations

from collections.abc import Callable
from typing import Annotated, Any

import typer

from trader.cli.format import JsonOpt, print_rows
from trader.cli.latest import latest_sql, oldest_first, query_latest, say_if_none
from trader.config import Settings

COLUMNS = ["ts", "venue", "symbol", "open", "high", "low", "close", "volume", "vwap", "trades", "closed"]
DECIMALS = {"open", "high", "low", "close", "volume", "vwap"}


def bars_sql(symbol: str, timeframe: str, venue: str | None, last: int) -> str:
    """The query of the ``last`` bars, newest first (bad names and timeframes refused: ValueError)."""
    from trader.stores.questdb import bar_table  # the QuestDB client (numpy): not on every `trader` start

    return latest_sql(", ".join(COLUMNS), bar_table, symbol, timeframe, venue, last)


def _row(row: dict[str, Any]) -> list[Any]:
    from trader.cli.data import _to_decimal

    return [_to_decimal(row[c]) if c in DECIMALS else row[c] for c in COLUMNS]


def _no_table(timeframe: str) -> Callable[[Settings], str]:
    def say(settings: Settings) -> str:
        from trader.stores.questdb import bar_table

        made = f"the normalizer writes {settings.normalizer.timeframes}"
        return (
            f"no {bar_table(timeframe)} table in QuestDB: {made}, ohlcv-agg {settings.ohlcv_agg.timeframes}"
        )

    return say


def bars(
    symbol: Annotated[str, typer.Argument(help="The unified symbol, e.g. BTCUSDT.")],
    tf: Annotated[str, typer.Option("--tf", help="Timeframe: 1s, 1m, 5m, 15m, 1h, 4h, 1d.")] = "1h",
    venue: Annotated[str | None, typer.Option("--venue", help="Only this venue's bars.")] = None,
    last: Annotated[int, typer.Option("--last", help="How many bars, the latest.")] = 20,
    as_json: JsonOpt = False,
) -> None:
    """The latest OHLCV bars of a symbol (QuestDB), oldest first; the bar in progress has closed false."""
    symbol = symbol.upper()
    body = query_latest(lambda: bars_sql(symbol, tf, venue, last), _no_table(tf))
    rows = [_row(row) for row in oldest_first(body)[1]]
    say_if_none(rows, as_json, f"{tf} bars", symbol, venue)
    print_rows(COLUMNS, rows, as_json)
