"""`trader backtest`: the configured strategies over ticks from the lake (docs/backtest.md)."""

from __future__ import annotations

import os
from datetime import UTC, datetime
from decimal import Decimal, InvalidOperation
from pathlib import Path
from typing import Annotated, Any

import typer

from trader.cli.format import JsonOpt, fail, print_rows
from trader.config import Settings


def parse_time(text: str, option: str) -> int:
    """Epoch milliseconds of an ISO 8601 time (UTC unless it says otherwise: 2026-12-01, 2026-12-01T10:00,
    2026-12-01T10:00:00+01:00) or of a number of epoch milliseconds."""
    if text.isdigit():
        return int(text)
    try:
        moment = datetime.fromisoformat(text.replace("Z", "+00:00"))
    except ValueError:
        raise fail(
            f"{option} {text!r}: not a time like 2026-12-01T10:00 (UTC) or epoch milliseconds"
        ) from None
    if moment.tzinfo is None:
        moment = moment.replace(tzinfo=UTC)
    return int(moment.timestamp() * 1000)


def backtest(
    config: Annotated[
        Path | None,
        typer.Argument(
            help="A settings YAML file (as TRADER_CONFIG); default: the settings `trader up` uses."
        ),
    ] = None,
    start: Annotated[str, typer.Option("--from", help="Start, inclusive: ISO 8601 (UTC) or epoch ms.")] = "",
    end: Annotated[str, typer.Option("--to", help="End, exclusive: ISO 8601 (UTC) or epoch ms.")] = "",
    symbols: Annotated[
        str | None, typer.Option("--symbols", help="Comma-separated: only these of the strategies' symbols.")
    ] = None,
    grid: Annotated[
        list[str] | None,
        typer.Option("--grid", help="A sweep: <strategy>.<param>=v1,v2 (or <param>=... for one strategy)."),
    ] = None,
    out: Annotated[
        Path | None,
        typer.Option("--out", help="The run directory (default <data_dir>/backtests/<time>-<hash>)."),
    ] = None,
    capital: Annotated[str, typer.Option(help="Capital per strategy, for returns and drawdowns.")] = "100000",
    equity_interval: Annotated[
        float, typer.Option(help="Seconds of event time between equity samples.")
    ] = 60.0,
    workers: Annotated[int, typer.Option(help="Worker processes of a sweep.")] = max(os.cpu_count() or 1, 1),
    rank_by: Annotated[
        str,
        typer.Option(help="The figure a sweep is ranked by: higher first (drawdowns, fees, losses: lower)."),
    ] = "sharpe",
    as_json: JsonOpt = False,
) -> None:
    """Backtest the strategies of a configuration over ticks from the lake, through the same risk checks,
    order state machine, paper venue and PnL as paper trading; or sweep their parameters (--grid)."""
    from trader.backtest.data import BacktestDataError
    from trader.backtest.engine import BacktestConfigError, StrategyFailed
    from trader.backtest.run import (
        BacktestRequest,
        default_out_dir,
        parse_grid,
        run_backtest,
        run_grid,
        strategies_for,
    )

    if not start or not end:
        raise fail("--from and --to are required: the range of ticks to read from the lake")
    if config is not None:
        if not config.is_file():
            raise fail(f"{config}: no such settings file")
        os.environ["TRADER_CONFIG"] = str(config.resolve())
    try:
        settings = Settings()
        amount = Decimal(capital)
    except InvalidOperation:
        raise fail(f"--capital {capital!r} is not a decimal") from None
    except Exception as exc:
        raise fail(f"invalid settings: {exc}", code=2) from None
    if not amount.is_finite() or amount <= 0:
        raise fail(f"--capital {capital!r} must be positive")
    request = BacktestRequest(
        start_ms=parse_time(start, "--from"),
        end_ms=parse_time(end, "--to"),
        symbols=tuple(s.strip() for s in (symbols or "").split(",") if s.strip()),
        capital=amount,
        equity_interval_ms=max(int(equity_interval * 1000), 1),
    )
    if grid:
        from trader.backtest.report import summarize

        figures = summarize([], [], capital=Decimal(1), start_ms=0, end_ms=1)
        if rank_by not in figures:
            raise fail(f"--rank-by {rank_by!r} is not a figure of the summary: one of {', '.join(figures)}")
    _check_lake_reachable(settings)
    try:
        strategies = strategies_for(settings, request)
        target = out or default_out_dir(settings, ",".join(s.name for s in strategies), request)
        if grid:
            combos = parse_grid(grid, strategies)
            results = run_grid(settings, request, combos, target, workers)
            _print_grid(results, rank_by, target, as_json)
            return
        result = run_backtest(settings, request, target)
    except (BacktestDataError, BacktestConfigError, StrategyFailed) as exc:
        raise fail(str(exc)) from None
    _print_run(result.summary, result.out_dir, result.ticks, result.seconds, as_json, result.warnings)


def _check_lake_reachable(settings: Settings) -> None:
    """A lake on S3 whose server is down would have the reader retry for minutes: say so at once."""
    if settings.lake_root.startswith("s3://"):
        from trader.cli.data import _reachable_lake

        _reachable_lake()


COLUMNS = [
    "strategy",
    "symbol",
    "trades",
    "win rate",
    "return",
    "annualised",
    "sharpe",
    "sortino",
    "calmar",
    "max dd",
    "pf",
    "expectancy",
    "exposure",
    "fees",
]
KEYS = [
    "trades",
    "win_rate",
    "total_return",
    "annualised_return",
    "sharpe",
    "sortino",
    "calmar",
    "max_drawdown",
    "profit_factor",
    "expectancy",
    "exposure",
    "fees",
]


def _rows(summary: dict[str, Any]) -> list[list[Any]]:
    rows = []
    for name, figures in summary.items():
        rows.append([name, "all", *(_shown(figures["total"][k]) for k in KEYS)])
        for symbol, of_symbol in figures["symbols"].items():
            rows.append([name, symbol, *(_shown(of_symbol[k]) for k in KEYS)])
    return rows


def _shown(value: Any) -> Any:
    if isinstance(value, Decimal):
        return f"{value:.4f}"
    return "-" if value is None else value


def _print_run(
    summary: dict[str, Any],
    out_dir: Path,
    ticks: int,
    seconds: float,
    as_json: bool,
    warnings: list[str] | None = None,
) -> None:
    for warning in warnings or []:
        typer.echo(f"warning: {warning}", err=True)
    if as_json:
        import json

        from trader.backtest.report import jsonable

        shown = {
            name: {
                "total": jsonable(s["total"]),
                "symbols": {k: jsonable(v) for k, v in s["symbols"].items()},
            }
            for name, s in summary.items()
        }
        out = {"out_dir": str(out_dir), "ticks": ticks, "summary": shown, "warnings": warnings or []}
        typer.echo(json.dumps(out, sort_keys=True))
        return
    print_rows(COLUMNS, _rows(summary), False)
    rate = ticks / seconds if seconds > 0 else 0
    typer.echo(f"{ticks} ticks in {seconds:.1f} s ({rate:,.0f} ticks/s); report: {out_dir}/report.html")


# Figures a sweep ranks lowest first: what a run loses or pays.
LOWER_IS_BETTER = frozenset({"max_drawdown", "max_drawdown_amount", "fees", "losses"})


def _print_grid(results: list[dict[str, Any]], rank_by: str, out_dir: Path, as_json: bool) -> None:
    for warning in dict.fromkeys(w for r in results for w in r.get("warnings", [])):
        typer.echo(f"warning: {warning}", err=True)

    def score(result: dict[str, Any]) -> tuple[int, Decimal]:
        """The rank figure summed over the strategies; runs without it (failed, or a figure empty for
        every strategy) last."""
        if "error" in result:
            return (0, Decimal(0))
        total = [v["total"].get(rank_by) for v in result["summary"].values()]
        known = [Decimal(v) for v in total if isinstance(v, Decimal | int) and not isinstance(v, bool)]
        return (1, sum(known, Decimal(0))) if known else (0, Decimal(0))

    shown = (lambda value: value) if as_json else _shown  # JSON: every value exact
    sign = -1 if rank_by in LOWER_IS_BETTER else 1
    ranked = sorted(results, key=lambda r: (score(r)[0], sign * score(r)[1]), reverse=True)
    rows = []
    for rank, result in enumerate(ranked, 1):
        params = " ".join(f"{s}.{k}={v}" for s, p in result["params"].items() for k, v in p.items())
        if "error" in result:
            rows.append([rank, params, None, None, None, None, None, result["error"]])
            continue
        totals = [s["total"] for s in result["summary"].values()]
        first = totals[0]
        has, value = score(result)
        rows.append(
            [
                rank,
                params,
                shown(value if has else None),
                shown(sum((t["total_return"] for t in totals), Decimal(0))),
                shown(first["max_drawdown"]),
                sum(t["trades"] for t in totals),
                shown(sum((t["fees"] for t in totals), Decimal(0))),
                Path(result["out_dir"]).name,
            ]
        )
    if not as_json:
        rows = [[_shown(v) if v is None else v for v in row] for row in rows]  # "-"
    columns = ["rank", "parameters", rank_by, "return", "max dd", "trades", "fees", "run"]
    print_rows(columns, rows, as_json)
    if not as_json:
        typer.echo(f"{len(results)} runs under {out_dir}")
