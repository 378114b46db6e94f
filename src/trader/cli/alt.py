"""``trader funding [SYMBOL]`` and ``trader oi [SYMBOL]``: the venues' latest funding rates (with mark and
index prices) and open interest, per venue and perpetual, from QuestDB (written by sink-alt from what
live-gateway streams; ``live_gateway.alt`` in the settings chooses venues, instruments and kinds)."""

from __future__ import annotations

from decimal import Decimal, InvalidOperation
from typing import Annotated, Any

import typer

from trader.cli.format import JsonOpt, fail, print_rows, to_json
from trader.config import Settings

SymbolArg = Annotated[
    str | None, typer.Argument(help="One instrument: BTCUSDT, BTCUSDT-PERP or a venue's BTC-USDT-SWAP.")
]


def funding(symbol: SymbolArg = None, as_json: JsonOpt = False) -> None:
    """The latest funding rate of each venue's perpetual, the next funding time, mark and index prices."""
    from trader.stores.questdb_alt import FUNDING, MARK_INDEX

    wanted = _unified(symbol)
    rates = _latest(FUNDING, wanted)
    prices = {
        (r["venue"], r["symbol"], r["kind"]): r["price"] for r in _latest(MARK_INDEX, wanted, by_kind=True)
    }
    columns = ["venue", "symbol", "rate", "predicted", "next_funding", "mark", "index", "ts"]
    rows = [
        [
            r["venue"],
            r["symbol"],
            r["rate"],
            r.get("predicted"),
            r.get("next_funding"),
            prices.get((r["venue"], r["symbol"], "mark")),
            prices.get((r["venue"], r["symbol"], "index")),
            r["ts"],
        ]
        for r in rates
    ]
    print_rows(columns, rows, as_json)


def oi(symbol: SymbolArg = None, as_json: JsonOpt = False) -> None:
    """The latest open interest of each venue's perpetual, in base units."""
    from trader.stores.questdb_alt import OPEN_INTEREST

    rows = [
        [r["venue"], r["symbol"], r["open_interest"], r.get("unit"), r["ts"]]
        for r in _latest(OPEN_INTEREST, _unified(symbol))
    ]
    print_rows(["venue", "symbol", "open_interest", "unit", "ts"], rows, as_json)


def _unified(symbol: str | None) -> str | None:
    if symbol is None:
        return None
    from trader.marketdata.feeds.symbols import SymbolError, parse_perpetual

    try:
        return parse_perpetual(symbol).unified
    except SymbolError as exc:
        raise fail(str(exc), 2) from None


def _latest(table: str, symbol: str | None, by_kind: bool = False) -> list[dict[str, Any]]:
    """The latest row of each venue and instrument (and kind), by instrument and venue; [] before any."""
    import httpx

    from trader.stores.questdb import QuestDBClient, QuestDBError
    from trader.stores.questdb_alt import latest_sql

    settings = Settings()
    sql = latest_sql(table, symbol, ("venue", "symbol", "kind") if by_kind else ("venue", "symbol"))
    try:
        body = QuestDBClient(settings).query(f"SELECT * FROM ({sql}) ORDER BY symbol, venue")
    except QuestDBError as exc:
        if "does not exist" in str(exc):
            return []  # nothing written yet: no venue's alternative data was configured or came
        raise fail(str(exc)) from None
    except (OSError, httpx.TransportError) as exc:
        raise fail(
            f"cannot reach QuestDB at {settings.questdb_http_url} ({exc}): is the stack up? run `trader up`"
        ) from None
    columns = body.get("columns", [])
    return [
        {c["name"]: _value(c, v) for c, v in zip(columns, row, strict=True)}
        for row in body.get("dataset", [])
    ]


def _value(column: dict[str, str], value: Any) -> Any:
    if isinstance(value, str) and column.get("type", "").upper().startswith("DECIMAL"):
        try:
            return Decimal(value)
        except InvalidOperation:
            return value
    return value


def bench_alt(
    frames: Annotated[int, typer.Option(help="Frames per venue through each parser and the feed.")] = 50_000,
    e2e: Annotated[int, typer.Option(help="Frames sent end to end through sink-alt (0: skip).")] = 20,
    interval: Annotated[float, typer.Option(help="Seconds between the end-to-end frames.")] = 1.0,
    as_json: JsonOpt = False,
) -> None:
    """Frames/s each venue's alternative-data parser and feed handle, in process; then, on the running
    stack's sink-alt, the delay from a frame to its Delta commit and to QuestDB."""
    import asyncio
    import logging

    import structlog

    from trader.bench.alt import end_to_end, parser_rates

    structlog.configure(wrapper_class=structlog.make_filtering_bound_logger(logging.ERROR))
    report: dict[str, Any] = {"parsers": parser_rates(frames)}
    if e2e:
        try:
            report["end_to_end"] = asyncio.run(end_to_end(Settings(), e2e, interval))
        except RuntimeError as exc:
            raise fail(str(exc)) from None
    if as_json:
        typer.echo(to_json(report))
        return
    columns = ["venue", "frames", "observations", "parse frames/s", "parse µs", "feed frames/s", "feed µs"]
    rows = [
        [name, r["frames"], r["observations"], r["parse_frames_per_s"], r["parse_us_per_frame"],
         r["feed_frames_per_s"], r["feed_us_per_frame"]]
        for name, r in report["parsers"].items()
    ]  # fmt: skip
    print_rows(columns, rows, False)
    if "end_to_end" in report:
        e = report["end_to_end"]
        for name in ("to_lake_s", "to_questdb_s"):
            typer.echo(f"frame -> {name[3:-2]}: {e[name]}")
        typer.echo(
            f"(sink_alt batch_seconds {e['sink_alt_batch_seconds']}, small_batch_rows "
            f"{e['sink_alt_small_batch_rows']}, small_batch_seconds {e['sink_alt_small_batch_seconds']})"
        )
