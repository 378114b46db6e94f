"""The data commands: `trader query`, `trader lake ...`, `trader dlq ...`."""

from __future__ import annotations

import socket
from decimal import Decimal, InvalidOperation
from typing import TYPE_CHECKING, Annotated, Any
from urllib.parse import urlsplit

import typer

from trader.cli.connect import run_on_nats
from trader.cli.format import JsonOpt, err, fail, print_rows
from trader.config import Settings

if TYPE_CHECKING:
    from trader.stores.lake import Lake

lake_app = typer.Typer(no_args_is_help=True, help="The Delta Lake: SQL, upkeep and sizes.")
dlq_app = typer.Typer(no_args_is_help=True, help="Dead letters: refused messages and why.")

# QuestDB ----------------------------------------------------------------------------------------


def query(sql: Annotated[str, typer.Argument(help="SQL for QuestDB.")], as_json: JsonOpt = False) -> None:
    """Run SQL on QuestDB (bars, positions, PnL)."""
    import httpx

    from trader.stores.questdb import QuestDBClient, QuestDBError

    settings = Settings()
    try:
        body = QuestDBClient(settings).query(sql)
    except QuestDBError as exc:
        raise fail(str(exc)) from None
    except (OSError, httpx.TransportError) as exc:
        raise fail(
            f"cannot reach QuestDB at {settings.questdb_http_url} ({exc}): is the stack up? run `trader up`"
        ) from None
    columns = body.get("columns", [])
    rows = [_exact_decimals(columns, row) for row in body.get("dataset", [])]
    print_rows([c["name"] for c in columns], rows, as_json)


def _exact_decimals(columns: list[dict[str, str]], row: list[Any]) -> list[Any]:
    """QuestDB sends a DECIMAL as a string with every place of its scale: a Decimal, for the table to
    show as a number and --json to keep exact."""
    return [
        _to_decimal(value) if column.get("type", "").upper().startswith("DECIMAL") else value
        for column, value in zip(columns, row, strict=True)
    ]


def _to_decimal(value: Any) -> Any:
    if not isinstance(value, str):
        return value
    try:
        return Decimal(value)
    except InvalidOperation:
        return value


# Lake -------------------------------------------------------------------------------------------


def _reachable_lake() -> Lake:
    """The lake, once its S3 endpoint answers: delta-rs would retry ten times, then print ten lines."""
    from trader.stores.lake import Lake

    settings = Settings()
    if not settings.lake_root.startswith("s3://"):
        return Lake(settings)  # a lake on a local path: no server to reach
    endpoint = urlsplit(settings.effective_s3_endpoint)
    try:
        socket.create_connection((endpoint.hostname, endpoint.port or 80), timeout=2).close()
    except OSError:
        where = settings.effective_s3_endpoint
        raise fail(f"cannot reach the lake's S3 at {where}: is the stack up? run `trader up`") from None
    return Lake(settings)


@lake_app.command("sql")
def lake_sql(
    sql: Annotated[str, typer.Argument(help="SQL over the lake's tables.")], as_json: JsonOpt = False
) -> None:
    """Run SQL over the Delta tables (Polars): market_ticks, alt_data. Decimals stay exact: prices keep
    12 places, sizes 8, so price*size and its sums fit."""
    import polars as pl

    from trader.stores.lake import TABLES

    lake = _reachable_lake()
    context = pl.SQLContext()
    for table in TABLES.values():
        if lake.open(table) is not None:
            context.register(table.name, pl.scan_delta(lake.uri(table), storage_options=lake.storage_options))
    try:
        frame = context.execute(sql).collect()
    except Exception as exc:  # a SQL error: say it plainly
        hint = _overflow_hint(lake) if "overflow" in str(exc) else ""
        raise fail(str(exc).strip() + hint) from None
    print_rows(frame.columns, frame.rows(), as_json)


def _overflow_hint(lake: Any) -> str:
    """Why a decimal product overflowed: a table still in the old types, or a product of two columns
    with many places each (a product keeps the places of both within 38 digits)."""
    from trader.stores.lake import TABLES

    old = []
    for table in TABLES.values():
        if stale := lake.stale_columns(table):
            old.append(f"{table.name} ({', '.join(f'{c} {k}' for c, k in stale.items())})")
    if old:
        return (
            f"\n{'; '.join(old)} still in the old decimal types: its sink rewrites the table when it"
            " starts (`trader logs sink-ticks` or `sink-alt` says why it did not)"
        )
    return (
        "\na product keeps the decimal places of both sides within 38 digits:"
        " cast one side to fewer, as in cast(value as decimal(38, 8))"
    )


@lake_app.command("info")
def lake_info(as_json: JsonOpt = False) -> None:
    """Versions, files, rows and size of each table."""
    from trader.stores.lake import TABLES

    lake = _reachable_lake()
    infos = [lake.info(t) for t in TABLES.values()]
    columns = ["table", "version", "files", "rows", "bytes", "uri"]
    print_rows(columns, [[i[c] for c in columns] for i in infos], as_json)


@lake_app.command("compact")
def lake_compact(as_json: JsonOpt = False) -> None:
    """Merge small files and write a checkpoint, for every table."""
    from trader.stores.lake import TABLES

    lake = _reachable_lake()
    results = [lake.compact(t) for t in TABLES.values()]
    columns = ["table", "numFilesAdded", "numFilesRemoved"]
    print_rows(columns, [[r.get(c) for c in columns] for r in results], as_json)


@lake_app.command("vacuum")
def lake_vacuum(
    retention_hours: Annotated[int, typer.Option(help="Keep files removed less than this long ago.")] = 168,
    dry_run: Annotated[bool, typer.Option("--dry-run/--apply", help="List only, or delete.")] = True,
    as_json: JsonOpt = False,
) -> None:
    """Delete files no version within the retention still uses (listed only, unless --apply)."""
    from trader.stores.lake import TABLES

    lake = _reachable_lake()
    rows = [[t.name, f] for t in TABLES.values() for f in lake.vacuum(t, retention_hours, dry_run=dry_run)]
    print_rows(["table", "dry_run" if dry_run else "deleted"], rows, as_json)


# Dead letters -----------------------------------------------------------------------------------


@dlq_app.command("list")
def dlq_list(
    service: Annotated[str | None, typer.Option(help="Only what this service refused.")] = None,
    limit: Annotated[int, typer.Option(help="At most this many, newest first.")] = 50,
    as_json: JsonOpt = False,
) -> None:
    """Show dead letters, newest first: who refused what, and why."""
    from trader.bus.dlq import read_dead_letters

    letters = run_on_nats(lambda nc: read_dead_letters(nc.jetstream(), service, limit))
    columns = ["dlq_seq", "refused_at", "service", "subject", "stream_seq", "reason", "payload"]
    rows = [[*(x[c] for c in columns[:-1]), _preview(x["data"], as_json)] for x in letters]
    print_rows(columns, rows, as_json)


def _preview(data: bytes, whole: bool) -> str:
    text = data.decode("utf-8", errors="backslashreplace")
    return text if whole or len(text) <= 80 else text[:77] + "..."


@dlq_app.command("replay")
def dlq_replay(
    service: Annotated[str | None, typer.Option(help="Only what this service refused.")] = None,
    reason: Annotated[str | None, typer.Option(help="Only reasons containing this text.")] = None,
    include_late: Annotated[
        bool,
        typer.Option(
            help="Also late ticks: the sinks stored them already, so the lake would hold them twice."
        ),
    ] = False,
    dry_run: Annotated[bool, typer.Option(help="Show what would be replayed.")] = False,
    limit: Annotated[int, typer.Option(help="Look at this many dead letters at most.")] = 10_000,
) -> None:
    """Publish refused messages again, once fixed (a new decoder, a corrected producer), and remove them
    from the dead letters. A message refused by several services is published once."""
    from trader.bus.dlq import read_dead_letters, replay_dead_letters, replay_groups

    settings = Settings()
    letters = run_on_nats(lambda nc: read_dead_letters(nc.jetstream(), service, limit), settings)
    originals = replay_groups(letters, reason, include_late)
    if dry_run or not originals:
        print_rows(
            ["stream", "stream_seq", "subject", "services", "reason"],
            [
                [k[0], k[1], g[0]["subject"], ",".join(sorted({x["service"] for x in g})), g[0]["reason"]]
                for k, g in originals.items()
            ],
            as_json=False,
        )
        err.print(f"{len(originals)} message(s) {'would be' if dry_run else 'to be'} replayed")
        return
    count = run_on_nats(lambda nc: replay_dead_letters(nc.jetstream(), originals), settings)
    err.print(f"replayed {count} message(s) to their original subjects and removed them from the DLQ")
