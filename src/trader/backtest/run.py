"""One backtest from the lake to its run directory, and parameter sweeps over worker processes.

A run directory holds (docs/backtest.md):

- ``config.yaml``: the configuration it ran, as a ``TRADER_CONFIG`` file (its strategies with the
  parameters in force, and the risk, venue, routing and bar settings), so ``trader backtest
  <dir>/config.yaml --from ... --to ...`` runs it again;
- ``run.json``: the data range, the symbols, the table and its Delta version, the ticks read;
- ``summary.json``: the figures (``trader.backtest.report``) per strategy and per strategy and symbol;
- ``orders.parquet`` (every order state), ``fills.parquet``, ``equity.parquet``;
- ``report.html``: the equity and drawdown charts and the figures, one self-contained page.

Nothing half-written: the directory is filled under a hidden name beside it and renamed once complete;
a run that fails leaves nothing (and says why).
"""

from __future__ import annotations

import hashlib
import itertools
import json
import shutil
import time
from collections.abc import Iterator, Sequence
from concurrent.futures import ProcessPoolExecutor
from dataclasses import dataclass, field
from datetime import UTC, datetime
from decimal import Decimal
from multiprocessing import get_context
from pathlib import Path
from typing import Any

import msgspec
import pyarrow as pa
import pyarrow.parquet as pq
import yaml

from trader.backtest.alt import AltRange, LakeAlt, alt_symbols
from trader.backtest.data import WINDOW_ROWS, DataRange, LakeTicks, _iso
from trader.backtest.engine import BacktestConfigError, BacktestEngine, Records, feed
from trader.backtest.report import chart_html, curve, jsonable, summarize
from trader.config import Settings, StrategyConfig
from trader.messages import AltDatum

DEFAULT_CAPITAL = Decimal(100_000)


@dataclass(frozen=True)
class BacktestRequest:
    start_ms: int
    end_ms: int
    symbols: tuple[str, ...] = ()  # restricts the strategies' symbols; empty: theirs
    params: dict[str, dict[str, str]] = field(default_factory=dict)  # per strategy: parameters set
    capital: Decimal = DEFAULT_CAPITAL
    equity_interval_ms: int = 60_000
    window_rows: int = WINDOW_ROWS


@dataclass
class BacktestResult:
    out_dir: Path
    summary: dict[str, Any]
    ticks: int
    seconds: float  # the whole run
    loop_seconds: float  # from the warm-up's first tick to the strategies' stop: reading and running
    warnings: list[str] = field(default_factory=list)  # in run.json and the report too


def strategies_for(settings: Settings, request: BacktestRequest) -> list[StrategyConfig]:
    """The enabled strategies of the configuration, with the request's parameters and symbols."""
    chosen = []
    unknown = set(request.params) - {s.name for s in settings.strategy.strategies if s.enabled}
    if unknown:
        names = ", ".join(s.name for s in settings.strategy.strategies if s.enabled) or "none"
        raise BacktestConfigError(
            f"no enabled strategy named {', '.join(sorted(unknown))} (there are: {names})"
        )
    for config in settings.strategy.strategies:
        if not config.enabled:
            continue
        params = {**config.params, **request.params.get(config.name, {})}
        symbols = [s for s in config.symbols if not request.symbols or s in request.symbols]
        if symbols:
            chosen.append(config.model_copy(update={"params": params, "symbols": symbols}, deep=True))
    if not chosen:
        raise BacktestConfigError(
            f"no enabled strategy trades {', '.join(request.symbols)}"
            if request.symbols
            else "no enabled strategy"
        )
    return chosen


def run_backtest(settings: Settings, request: BacktestRequest, out_dir: Path) -> BacktestResult:
    """Run, then write ``out_dir`` whole, or raise and write nothing."""
    if request.end_ms <= request.start_ms:
        raise BacktestConfigError(
            f"--to ({_iso(request.end_ms)}) is not after --from ({_iso(request.start_ms)})"
        )
    if out_dir.exists():
        raise BacktestConfigError(f"{out_dir} exists already: a run never overwrites another")
    began = time.perf_counter()
    strategies = strategies_for(settings, request)
    engine = BacktestEngine(
        settings, strategies, request.start_ms, equity_interval_ms=request.equity_interval_ms
    )
    source = LakeTicks(settings, window_rows=request.window_rows)
    data = DataRange(request.start_ms, request.end_ms, tuple(engine.symbols))
    source.check_has_data(data, sorted({venue for venue, _ in engine.by_instrument}))
    before = DataRange(request.start_ms - engine.warmup_ms(), request.start_ms, data.symbols)
    alt_info, alt_data = _alt_source(settings, engine, request)
    loop_began = time.perf_counter()
    engine.start(source.ticks(before))
    if engine.bars_only:  # no strategy hears ticks or data: a window at a time, quiet stretches at once
        for window in source.windows(data):
            engine.on_window(window)
    else:
        feed(engine, source.ticks(data), alt_data)
    records = engine.finish()
    loop_seconds = time.perf_counter() - loop_began
    warnings = [
        f"strategy {name} takes features (on_features), which a backtest does not compute (feature-eng "
        "runs live only): it ran without them"
        for name, runner in engine.runners.items()
        if runner.wants_features()
    ]
    if alt_info is not None:
        alt_info["data"] = records.alt
        alt_info["first"] = None if records.first_alt_ms is None else _iso(records.first_alt_ms)
        alt_info["last"] = None if records.last_alt_ms is None else _iso(records.last_alt_ms)
        if not records.alt:
            warnings.append(_no_alt_warning(alt_info, request))
    summary = summaries(records, strategies, request)
    seconds = time.perf_counter() - began
    run_info = {
        "from": _iso(request.start_ms),
        "to": _iso(request.end_ms),
        "from_ms": request.start_ms,
        "to_ms": request.end_ms,
        "symbols": list(data.symbols),
        "table": source.uri.split("://")[-1] if "://" in source.uri else source.uri,
        "delta_version": source.version,
        "ticks": records.ticks,
        "first_tick": None if records.first_ms is None else _iso(records.first_ms),
        "last_tick": None if records.last_ms is None else _iso(records.last_ms),
        "bars": records.bars,
        "capital": str(request.capital),
        "equity_interval_ms": request.equity_interval_ms,
        "anomalies": records.anomalies,
        "trading_state": records.trading,
        "alt_data": alt_info,
        "warnings": warnings,
    }
    write_run(out_dir, settings, strategies, run_info, summary, records, request.capital)
    return BacktestResult(out_dir, summary, records.ticks, seconds, loop_seconds, warnings)


def _alt_source(
    settings: Settings, engine: BacktestEngine, request: BacktestRequest
) -> tuple[dict[str, Any] | None, Iterator[AltDatum]]:
    """The lake's alternative data for the strategies that override ``on_alt`` (what ``run.json``
    says of it, and the data, read as the run goes); nothing read, and None, when none does."""
    wanted = engine.alt_wanted()
    if wanted is None:
        return None, iter(())
    symbols, kinds = wanted
    alt = LakeAlt(settings, window_rows=request.window_rows)
    scope = AltRange(request.start_ms, request.end_ms, alt_symbols(symbols), kinds)
    info: dict[str, Any] = {
        "strategies": [r.name for r in engine.alt_runners],
        "symbols": list(scope.symbols),
        "kinds": list(kinds) or "all",
        "table": alt.uri.split("://")[-1] if "://" in alt.uri else alt.uri,
        "delta_version": alt.version,
    }
    return info, alt.data(scope)


def _no_alt_warning(info: dict[str, Any], request: BacktestRequest) -> str:
    strategies = ", ".join(info["strategies"])
    one = len(info["strategies"]) == 1
    take, it_ran = ("takes", "it ran") if one else ("take", "they ran")
    kinds = "" if info["kinds"] == "all" else f" of kind {', '.join(info['kinds'])}"
    if info["delta_version"] is None:
        where = f"there is no Delta table at {info['table']} (sink-alt writes it while the stack runs)"
    else:
        where = f"{info['table']} (version {info['delta_version']}) has none"
    return (
        f"no alternative data: {strategies} {take} it (on_alt), but of {', '.join(info['symbols'])}{kinds} "
        f"from {_iso(request.start_ms)} to {_iso(request.end_ms)} {where}; {it_ran} without it"
    )


def summaries(
    records: Records, strategies: Sequence[StrategyConfig], request: BacktestRequest
) -> dict[str, Any]:
    out: dict[str, Any] = {}
    for config in strategies:
        mine = [f for f in records.fills if f["strategy"] == config.name]
        whole = summarize(
            curve(records.equity, config.name, ""),
            mine,
            capital=request.capital,
            start_ms=request.start_ms,
            end_ms=request.end_ms,
        )
        per_symbol = {
            symbol: summarize(
                curve(records.equity, config.name, symbol),
                [f for f in mine if f["symbol"] == symbol],
                capital=request.capital,
                start_ms=request.start_ms,
                end_ms=request.end_ms,
            )
            for symbol in config.symbols
        }
        out[config.name] = {"total": whole, "symbols": per_symbol}
    return out


# Writing ----------------------------------------------------------------------------------------


def write_run(
    out_dir: Path,
    settings: Settings,
    strategies: Sequence[StrategyConfig],
    run_info: dict[str, Any],
    summary: dict[str, Any],
    records: Records,
    capital: Decimal,
) -> None:
    partial = out_dir.parent / f".{out_dir.name}.partial"
    shutil.rmtree(partial, ignore_errors=True)
    partial.mkdir(parents=True)
    try:
        (partial / "config.yaml").write_text(config_yaml(settings, strategies))
        (partial / "run.json").write_text(json.dumps(run_info, indent=2, sort_keys=True) + "\n")
        shown = {
            name: {
                "total": jsonable(s["total"]),
                "symbols": {k: jsonable(v) for k, v in s["symbols"].items()},
            }
            for name, s in summary.items()
        }
        (partial / "summary.json").write_text(json.dumps(shown, indent=2, sort_keys=True) + "\n")
        _parquet(
            partial / "orders.parquet", [msgspec.structs.asdict(o) for o in records.orders], ORDER_COLUMNS
        )
        _parquet(partial / "fills.parquet", records.fills, FILL_COLUMNS)
        _parquet(partial / "equity.parquet", records.equity, EQUITY_COLUMNS)
        curves = {name: curve(records.equity, name, "") for name in summary}
        title = f"backtest {run_info['from']} to {run_info['to']}"
        tables = {name: s["total"] for name, s in summary.items()}
        notes = run_info.get("warnings", [])
        by_symbol = {name: s["symbols"] for name, s in summary.items()}
        (partial / "report.html").write_text(chart_html(title, curves, capital, tables, notes, by_symbol))
        out_dir.parent.mkdir(parents=True, exist_ok=True)
        partial.rename(out_dir)
    except BaseException:
        shutil.rmtree(partial, ignore_errors=True)
        raise


def config_yaml(settings: Settings, strategies: Sequence[StrategyConfig]) -> str:
    """The configuration a run ran, as a TRADER_CONFIG file: the sections a backtest reads (the pnl
    snapshot interval paces the post-trade checks; the market-data venues, mock and live, are what a
    strategy's data venue is checked against), without addresses or keys."""
    dumped = settings.model_dump(
        mode="json", include={"risk", "exeq", "routing", "normalizer", "gateway", "pnl"}
    )
    dumped["exeq"].pop("venues", None)
    dumped["exeq"]["venues"] = {name: {"kind": venue.kind} for name, venue in settings.exeq.venues.items()}
    dumped["gateway"] = {"venue": settings.gateway.venue, "venues": dumped["gateway"]["venues"]}
    live = settings.live_gateway.venues
    if live:
        dumped["live_gateway"] = {"venues": {name: {"symbols": v.symbols} for name, v in live.items()}}
    dumped["strategy"] = {
        "strategies": [s.model_dump(mode="json", exclude_defaults=False) for s in strategies]
    }
    for strategy in dumped["strategy"]["strategies"]:
        strategy["params"] = dict(strategy["params"])
    return yaml.safe_dump(dumped, sort_keys=True)


ORDER_COLUMNS = (
    "client_order_id", "strategy", "account", "symbol", "side", "type", "quantity", "status", "price",
    "stop_price", "tif", "post_only", "reduce_only", "venue", "algo", "filled_quantity", "average_price",
    "fees", "venue_order_id", "reason", "version", "created", "updated", "replace_quantity", "replace_price",
)  # fmt: skip
FILL_COLUMNS = (
    "timestamp", "exec_id", "client_order_id", "strategy", "account", "venue", "symbol", "side", "quantity",
    "price", "fee", "liquidity", "position", "realized_pnl",
)  # fmt: skip
EQUITY_COLUMNS = (
    "timestamp", "strategy", "symbol", "position", "realized", "unrealized", "fees", "equity",
    "gross_exposure",
)  # fmt: skip


def _parquet(path: Path, rows: list[dict[str, Any]], columns: Sequence[str]) -> None:
    arrays = {name: _column([row.get(name) for row in rows]) for name in columns}
    pq.write_table(pa.table(arrays), path, compression="zstd")


def _column(values: list[Any]) -> pa.Array:
    """Decimals exactly: a decimal128 of the places the values need, else (too many digits) text."""
    decimals = [v for v in values if isinstance(v, Decimal)]
    if not decimals:
        return pa.array(values)
    scale = max(max(-v.as_tuple().exponent, 0) for v in decimals)  # type: ignore[operator]
    integer = max(max(v.adjusted() + 1, 1) for v in decimals)
    if scale + integer <= 38:
        return pa.array(values, pa.decimal128(38, scale))
    return pa.array([None if v is None else str(v) for v in values], pa.string())


# Sweeps -----------------------------------------------------------------------------------------


def parse_grid(
    items: Sequence[str], strategies: Sequence[StrategyConfig]
) -> dict[tuple[str, str], list[str]]:
    """``name=v1,v2`` items: ``name`` is ``<strategy>.<param>``, or ``<param>`` when one strategy runs."""
    grid: dict[tuple[str, str], list[str]] = {}
    names = [s.name for s in strategies]
    for item in items:
        key, sep, values = item.partition("=")
        options = [v.strip() for v in values.split(",") if v.strip()]
        if not sep or not key or not options:
            raise BacktestConfigError(f"--grid {item!r}: write it as name=v1,v2 (name: <strategy>.<param>)")
        strategy, dot, param = key.rpartition(".")
        if not dot:
            if len(names) != 1:
                raise BacktestConfigError(
                    f"--grid {item!r}: {len(names)} strategies run ({', '.join(names)}); "
                    f"name it <strategy>.{key}"
                )
            strategy, param = names[0], key
        if strategy not in names:
            raise BacktestConfigError(
                f"--grid {item!r}: no strategy {strategy!r} runs (there are: {', '.join(names)})"
            )
        grid[(strategy, param)] = options
    return grid


def combinations(grid: dict[tuple[str, str], list[str]]) -> list[dict[str, dict[str, str]]]:
    keys = list(grid)
    out = []
    for values in itertools.product(*(grid[k] for k in keys)):
        params: dict[str, dict[str, str]] = {}
        for (strategy, param), value in zip(keys, values, strict=True):
            params.setdefault(strategy, {})[param] = value
        out.append(params)
    return out


def _grid_worker(args: tuple[dict[str, Any], BacktestRequest, str]) -> dict[str, Any]:
    dumped, request, out_dir = args
    try:
        result = run_backtest(Settings(**dumped), request, Path(out_dir))
    except Exception as exc:
        return {"params": request.params, "out_dir": out_dir, "error": f"{type(exc).__name__}: {exc}"}
    return {
        "params": request.params,
        "out_dir": out_dir,
        "summary": result.summary,
        "ticks": result.ticks,
        "warnings": result.warnings,
    }


def run_grid(
    settings: Settings,
    base: BacktestRequest,
    grid: dict[tuple[str, str], list[str]],
    out_dir: Path,
    workers: int,
) -> list[dict[str, Any]]:
    """Every combination of the grid, each a run of its own under ``out_dir``, in ``workers`` processes
    (spawned, given the settings in force: each reads the lake and builds its strategies afresh). In the
    order of the grid; a run that fails is a result with its ``error``, the others go on."""
    dumped = settings.model_dump()
    jobs = []
    for i, params in enumerate(combinations(grid)):
        merged = {name: {**base.params.get(name, {}), **p} for name, p in params.items()}
        label = "_".join(f"{k}={v}" for p in params.values() for k, v in p.items())
        request = BacktestRequest(**{**base.__dict__, "params": merged})
        jobs.append((dumped, request, str(out_dir / f"{i:03d}_{_safe(label)}")))
    if workers <= 1:
        return [_grid_worker(job) for job in jobs]
    with ProcessPoolExecutor(max_workers=workers, mp_context=get_context("spawn")) as pool:
        return list(pool.map(_grid_worker, jobs))


def _safe(label: str) -> str:
    return "".join(c if c.isalnum() or c in "=._-" else "-" for c in label)[:80]


def default_out_dir(settings: Settings, strategies_label: str, request: BacktestRequest) -> Path:
    """``<data_dir>/backtests/<UTC time>-<hash of what runs>``."""
    stamp = datetime.now(UTC).strftime("%Y%m%dT%H%M%SZ")
    digest = hashlib.sha256(
        json.dumps(
            [strategies_label, request.start_ms, request.end_ms, request.symbols], default=str
        ).encode()
    ).hexdigest()[:8]
    return settings.data_dir / "backtests" / f"{stamp}-{digest}"
