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
    ticks: Annotated[int, typer.Option(help="How many ticks to publish.")] = 300_000,
    symbols: Annotated[int, typer.Option(help="Over how many symbols.")] = 10,
    batch: Annotated[int, typer.Option(help="Ticks per pipelined publish batch.")] = 5_000,
    as_json: JsonOpt = False,
) -> None:
    """Publish ticks at full speed; print what normalizer and sink-ticks sustain, lag and peak RSS."""
    from trader.bench.ingest import run_ingest_bench, to_json

    try:
        report = asyncio.run(run_ingest_bench(Settings(), ticks=ticks, symbols=symbols, batch=batch))
    except RuntimeError as exc:
        raise fail(str(exc)) from None
    if as_json:
        typer.echo(to_json(report).decode())
        return
    typer.echo(f"published {report['ticks']} ticks at {report['publisher_ticks_per_s']} ticks/s")
    rows = [
        [name, c["ticks_per_s"], c["lag_p50_s"], c["lag_p99_s"], c["lag_max_s"], report["peak_rss_mib"][name]]
        for name, c in report["consumers"].items()
    ]
    print_rows(["consumer", "ticks/s", "lag p50 s", "lag p99 s", "lag max s", "peak RSS MiB"], rows, False)
    v = report["bar_visibility"]
    typer.echo(f"closed 1s bars queryable in QuestDB after their end: p50 {v['p50_s']} s, p99 {v['p99_s']} s")
    others = [[name, rss] for name, rss in report["peak_rss_mib"].items() if name not in report["consumers"]]
    print_rows(["component", "peak RSS MiB"], others, False)
