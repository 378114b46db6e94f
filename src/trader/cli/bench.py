"""`trader bench ...`: benchmarks that drive the running stack and print figures (docs/benchmarks.md)."""

from __future__ import annotations

import asyncio
from typing import Annotated

import typer

from trader.cli.data import JsonOpt, fail, print_rows
from trader.config import Settings

bench_app = typer.Typer(no_args_is_help=True, help="Benchmarks on the running stack.")


@bench_app.command("ingest")
def ingest(
    ticks: Annotated[int, typer.Option(help="Ticks published at full speed in the live phase.")] = 200_000,
    backlog: Annotated[int, typer.Option(help="Ticks published before the consumers start.")] = 500_000,
    symbols: Annotated[int, typer.Option(help="Over how many symbols.")] = 10,
    batch: Annotated[int, typer.Option(help="Ticks per pipelined publish batch.")] = 5_000,
    only: Annotated[
        str | None, typer.Option(help="One consumer alone (normalizer or sink-ticks); default both at once.")
    ] = None,
    as_json: JsonOpt = False,
) -> None:
    """Drive normalizer and sink-ticks (started by the benchmark itself, on the servers of `trader up
    --detach --services ''`): their rate through a backlog, then lag and bar visibility at full speed,
    and peak RSS."""
    from trader.bench.ingest import CONSUMERS, run_ingest_bench, to_json

    try:
        report = asyncio.run(
            run_ingest_bench(
                Settings(),
                ticks=ticks,
                backlog=backlog,
                symbols=symbols,
                batch=batch,
                consumers=(only,) if only else CONSUMERS,
            )
        )
    except RuntimeError as exc:
        raise fail(str(exc)) from None
    if as_json:
        typer.echo(to_json(report).decode())
        return
    typer.echo(f"backlog of {report['backlog']} ticks, then {report['ticks']} live ticks")
    typer.echo(f"live publisher: {report['publisher_ticks_per_s']} ticks/s acknowledged")
    rows = [
        [
            name,
            report["drain"][name]["ticks_per_s"],
            live["ticks_per_s"],
            live["lag_p50_s"],
            live["lag_p99_s"],
            live["lag_max_s"],
            report["peak_rss_mib"][name],
        ]
        for name, live in report["live"].items()
    ]
    columns = [
        "consumer",
        "drain ticks/s",
        "live ticks/s",
        "lag p50 s",
        "lag p99 s",
        "lag max s",
        "peak RSS MiB",
    ]
    print_rows(columns, rows, False)
    v = report["bar_visibility"]
    typer.echo(f"closed 1s bars queryable in QuestDB after their end: p50 {v['p50_s']} s, p99 {v['p99_s']} s")
    others = [[name, rss] for name, rss in report["peak_rss_mib"].items() if name not in report["live"]]
    print_rows(["component", "peak RSS MiB"], others, False)
