"""`trader bench backtest`: ticks/s and peak RSS of a backtest over ticks written to a lake.

The benchmark writes ``ticks`` ticks (a seeded random walk per symbol, the symbols interleaved one
millisecond apart, partitioned by symbol and date as sink-ticks writes them) into a Delta table of its
own (``<data_dir>/bench/backtest-lake``, kept for the next run when it holds the same ticks), then
runs, each in a process of its own so that its peak RSS is its own:

- ``read``: the tick source alone over the whole table (the lake to ``MarketTick`` objects, in time
  order): the ceiling of any backtest, and its memory whatever the range;
- ``market_maker``: the market maker quoting every symbol, on every tick;
- ``ma_cross``: the moving-average crossover on 1m bars of every symbol;
- ``alt_read``: the alternative-data source alone over a table of its own beside the ticks
  (``alt_data``: a datum every ``ALT_EVERY_MS`` of the ticks' span, four kinds round the perpetuals of
  the symbols), the lake to ``AltDatum`` objects in time order;
- ``ma_cross_alt``: the MA crossover again, with ``on_alt`` counting what it hears (``AltCounter``):
  the cost of reading the data and merging them with the ticks;

each over every tick, but the market maker over the first ``run_ticks`` when given (it trades on nearly
every tick, and takes long on a busy machine). A figure is the ticks read over the
seconds from the first tick read to the end of the last (the setup and the writing of the run
directory apart, both printed).
"""

from __future__ import annotations

import json
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

import numpy as np
import pyarrow as pa

from trader.config import StrategyConfig
from trader.messages import AltDatum
from trader.strategies.base import StrategyContext
from trader.strategies.ma_cross import MaCross

SYMBOLS = ["BTCUSDT", "ETHUSDT", "SOLUSDT", "XRPUSDT"]
START_PRICES = [60_000, 3_000, 150, 2]
T0 = 1_764_547_200_000  # 2025-12-01T00:00:00Z
CHUNK = 1_000_000
PRICE_SCALE = 12
QUANTITY_SCALE = 8
SCENARIOS = ("read", "market_maker", "ma_cross", "alt_read", "ma_cross_alt")
ALT_EVERY_MS = 10  # a datum a tenth as often as a tick
ALT_KINDS = ("funding", "mark_price", "open_interest", "liquidation")


def _decimals(units: np.ndarray, places: int, scale: int) -> pa.Array:
    """decimal128(38, scale) from integers counting 10^-places: the unscaled values, built in numpy."""
    unscaled = units.astype(np.int64) * (10 ** (scale - places))
    words = np.empty((len(unscaled), 2), dtype=np.int64)
    words[:, 0] = unscaled
    words[:, 1] = np.where(unscaled < 0, -1, 0)
    return pa.Array.from_buffers(
        pa.decimal128(38, scale), len(unscaled), [None, pa.py_buffer(words.tobytes())]
    )


def bench_table(first: int, count: int, walks: np.ndarray) -> pa.Table:
    """Rows ``first`` to ``first + count`` of the benchmark's ticks; ``walks``: cents per symbol, the
    price path of every tick of that symbol (tick i is of symbol i % len(SYMBOLS))."""
    from trader.stores.lake import MARKET_TICKS, utc_dates

    index = np.arange(first, first + count, dtype=np.int64)
    symbol_of = index % len(SYMBOLS)
    price_cents = walks[symbol_of, index // len(SYMBOLS)]
    rng = np.random.default_rng(first)
    size = rng.integers(1, 500, count)  # 0.01 to 5 in hundredths
    ts = pa.array(T0 + index)
    stamp = ts.cast(pa.timestamp("ms", tz="UTC"))
    return pa.table(
        {
            "ts": stamp,
            "ingest_ts": stamp,
            "exchange": pa.array(["mock"] * count),
            "venue": pa.array(["mock"] * count),
            "symbol": pa.array(np.array(SYMBOLS)[symbol_of]),
            "price": _decimals(price_cents, 2, PRICE_SCALE),
            "size": _decimals(size, 2, QUANTITY_SCALE),
            "volume": _decimals(size, 2, QUANTITY_SCALE),
            "bid": _decimals(price_cents - 1, 2, PRICE_SCALE),
            "ask": _decimals(price_cents + 1, 2, PRICE_SCALE),
            "side": pa.nulls(count, pa.string()),
            "trade_id": pa.nulls(count, pa.string()),
            "source_seq": pa.nulls(count, pa.int64()),
            "stream_seq": pa.array(index + 1),
            "dt": utc_dates(ts),
        },
        schema=MARKET_TICKS.schema,
    )


def write_lake(root: Path, ticks: int, seed: int = 7) -> dict[str, Any]:
    """The benchmark's table at ``root`` with ``ticks`` ticks, written unless it is there already."""
    from trader.config import Settings
    from trader.stores.lake import MARKET_TICKS, Lake

    marker = root / "bench.json"
    wanted = {"ticks": ticks, "seed": seed, "symbols": SYMBOLS}
    if marker.exists() and json.loads(marker.read_text()) == wanted:
        return {"written": False, "seconds": 0.0}
    import shutil

    shutil.rmtree(root, ignore_errors=True)
    lake = Lake(Settings(lake_root=str(root)))
    per_symbol = -(-ticks // len(SYMBOLS))
    rng = np.random.default_rng(seed)
    steps = rng.integers(-3, 4, (len(SYMBOLS), per_symbol))
    starts = np.array(START_PRICES, dtype=np.int64)[:, None] * 100
    walks = np.maximum(starts + np.cumsum(steps, axis=1), 10)  # a floor of 0.10: prices stay positive
    began = time.perf_counter()
    for version, first in enumerate(range(0, ticks, CHUNK), 1):
        table = bench_table(first, min(CHUNK, ticks - first), walks)
        lake.append(MARKET_TICKS, table, app_id="bench", version=version)
    marker.write_text(json.dumps(wanted))
    return {"written": True, "seconds": round(time.perf_counter() - began, 1)}


def write_alt_lake(root: Path, ticks: int) -> dict[str, Any]:
    """``alt_data`` beside the benchmark's ticks, over their span (unless there already): a datum every
    ``ALT_EVERY_MS``, of the perpetual of each symbol in turn and each kind in turn, as sink-alt stores
    them (18 places)."""
    from trader.config import Settings
    from trader.stores.lake import ALT_DATA, TIMESTAMP, VALUE, Lake, utc_dates

    marker = root / "bench-alt.json"
    wanted = {"ticks": ticks, "every_ms": ALT_EVERY_MS, "kinds": list(ALT_KINDS)}
    if marker.exists() and json.loads(marker.read_text()) == wanted:
        return {"written": False, "seconds": 0.0}
    lake = Lake(Settings(lake_root=str(root)))
    began = time.perf_counter()
    rows = -(-ticks // ALT_EVERY_MS)
    for version, first in enumerate(range(0, rows, CHUNK), 1):
        count = min(CHUNK, rows - first)
        index = np.arange(first, first + count, dtype=np.int64)
        ts = pa.array(T0 + index * ALT_EVERY_MS)
        value = np.random.default_rng(first).integers(-50_000, 50_000, count)  # 8 places
        table = pa.table(
            {
                "ts": ts.cast(TIMESTAMP),
                "ingest_ts": ts.cast(TIMESTAMP),
                "kind": pa.array(np.array(ALT_KINDS)[index % len(ALT_KINDS)]),
                "source": pa.array(["binance"] * count),
                "symbol": pa.array(np.array([s + "-PERP" for s in SYMBOLS])[index % len(SYMBOLS)]),
                "value": _decimals(value, 8, VALUE.scale),
                "unit": pa.array(["rate"] * count),
                "stream_seq": pa.array(index + 1),
                "dt": utc_dates(ts),
            }
        )
        schema = ALT_DATA.schema
        table = pa.table(
            [table[f.name] if f.name in table.column_names else pa.nulls(count, f.type) for f in schema],
            schema=schema,
        )
        lake.append(ALT_DATA, table, app_id="bench", version=version)
    marker.write_text(json.dumps(wanted))
    return {"written": True, "seconds": round(time.perf_counter() - began, 1)}


class AltCounter(MaCross):
    """The MA crossover that also takes alternative data, and only counts it."""

    def __init__(self, config: StrategyConfig, ctx: StrategyContext) -> None:
        super().__init__(config, ctx)
        self.alt = 0

    def on_alt(self, datum: AltDatum) -> None:
        self.alt += 1


STRATEGIES = {
    "market_maker": {
        "name": "mm",
        "kind": "market_maker",
        "symbols": SYMBOLS,
        "params": {"spread_bps": "10", "quantity": "0.01", "max_position": "1", "tick_size": "0.01"},
    },
    "ma_cross": {
        "name": "ma",
        "kind": "ma_cross",
        "symbols": SYMBOLS,
        "params": {"fast": "5", "slow": "20", "timeframe": "1m", "quantity": "0.01"},
    },
    "ma_cross_alt": {
        "name": "ma",
        "kind": "trader.bench.backtest:AltCounter",
        "symbols": SYMBOLS,
        "params": {"fast": "5", "slow": "20", "timeframe": "1m", "quantity": "0.01"},
    },
}


def run_scenario(root: str, scenario: str, run_ticks: int, out_dir: str) -> dict[str, Any]:
    """One scenario in this process (the child's side)."""
    from trader.backtest.data import DataRange, LakeTicks
    from trader.backtest.run import BacktestRequest, run_backtest
    from trader.config import Settings

    end_ms = T0 + run_ticks  # one tick a millisecond
    if scenario == "read":
        settings = Settings(lake_root=root)
        source = LakeTicks(settings)
        began = time.perf_counter()
        count = sum(1 for _ in source.ticks(DataRange(T0, end_ms, tuple(SYMBOLS))))
        return {"ticks": count, "seconds": time.perf_counter() - began, "peak_rss_mib": _peak_rss_mib()}
    if scenario == "alt_read":
        from trader.backtest.alt import AltRange, LakeAlt, alt_symbols

        alt = LakeAlt(Settings(lake_root=root))
        began = time.perf_counter()
        count = sum(1 for _ in alt.data(AltRange(T0, end_ms, alt_symbols(SYMBOLS))))
        return {"ticks": count, "seconds": time.perf_counter() - began, "peak_rss_mib": _peak_rss_mib()}
    settings = Settings(
        lake_root=root,
        strategy={"strategies": [STRATEGIES[scenario]]},
        risk={"max_orders_per_second": 1_000_000, "max_position_per_symbol": "1000"},
    )
    request = BacktestRequest(start_ms=T0, end_ms=end_ms, equity_interval_ms=60_000)
    result = run_backtest(settings, request, Path(out_dir))
    run_info = json.loads((Path(out_dir) / "run.json").read_text())
    return {
        "ticks": result.ticks,
        "seconds": result.loop_seconds,
        "total_seconds": result.seconds,
        "fills": sum(s["total"]["fills"] for s in result.summary.values()),
        "alt": (run_info["alt_data"] or {}).get("data"),
        "peak_rss_mib": _peak_rss_mib(),
    }


def _peak_rss_mib() -> float:
    for line in Path("/proc/self/status").read_text().splitlines():
        if line.startswith("VmHWM:"):
            return round(int(line.split()[1]) / 1024, 1)
    return float("nan")


def run_backtest_bench(
    data_dir: Path, *, ticks: int, run_ticks: int | None, scenarios: tuple[str, ...]
) -> dict[str, Any]:
    root = data_dir / "bench" / "backtest-lake"
    written = write_lake(root, ticks)
    if any(s.startswith("alt") or s.endswith("_alt") for s in scenarios):
        written["alt"] = write_alt_lake(root, ticks)
    results: dict[str, Any] = {}
    for scenario in scenarios:
        out = data_dir / "bench" / f"backtest-run-{scenario}-{time.time_ns()}"
        span = ticks if scenario != "market_maker" or run_ticks is None else min(run_ticks, ticks)
        child = subprocess.run(
            [sys.executable, "-m", "trader.bench.backtest", str(root), scenario, str(span), str(out)],
            capture_output=True,
            text=True,
            check=False,
        )
        if child.returncode != 0:
            raise RuntimeError(f"the {scenario} run failed: {child.stderr.strip()[-2000:]}")
        result = json.loads(child.stdout.strip().splitlines()[-1])
        result["ticks_per_s"] = round(result["ticks"] / result["seconds"]) if result["seconds"] else None
        results[scenario] = result
        import shutil

        shutil.rmtree(out, ignore_errors=True)
    return {"ticks_in_lake": ticks, "lake": str(root), "write": written, "scenarios": results}


if __name__ == "__main__":
    root_arg, scenario_arg, ticks_arg, out_arg = sys.argv[1:5]
    from trader.runtime.logging import configure_logging

    configure_logging("WARNING", "console", stream=sys.stderr)
    print(json.dumps(run_scenario(root_arg, scenario_arg, int(ticks_arg), out_arg)))
