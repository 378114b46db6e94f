"""A backtest from a lake on disk to its run directory: deterministic to the byte, the figures and files
it promises, and bad input refused with a clear error and nothing written."""

from __future__ import annotations

import json
import random
from decimal import Decimal
from pathlib import Path
from typing import Any

import pyarrow.parquet as pq
import pytest

from trader.backtest.data import BacktestDataError, DataRange, LakeTicks, lake_table
from trader.backtest.engine import StrategyFailed
from trader.backtest.run import (
    BacktestRequest,
    combinations,
    parse_grid,
    run_backtest,
    run_grid,
    strategies_for,
)
from trader.config import Settings
from trader.messages import MarketTick
from trader.stores.lake import MARKET_TICKS, Lake

T0 = 1_764_547_200_000  # 2025-12-01T00:00:00Z
MINUTES = 6
STRATEGIES = [
    {
        "name": "mm-eth",
        "kind": "market_maker",
        "symbols": ["ETHUSDT"],
        "params": {"spread_bps": "10", "quantity": "0.1", "max_position": "1", "tick_size": "0.01"},
    },
    {
        "name": "ma-btc",
        "kind": "ma_cross",
        "symbols": ["BTCUSDT"],
        "params": {"fast": "2", "slow": "5", "timeframe": "1s", "quantity": "0.01"},
    },
]


def walk(symbol: str, start: str, seed: int, step_ms: int) -> list[MarketTick]:
    rng = random.Random(seed)
    price, ticks = Decimal(start), []
    for i in range(MINUTES * 60_000 // step_ms):
        price += Decimal(rng.randint(-4, 4)) / 4
        ticks.append(
            MarketTick(
                timestamp=T0 - 60_000 + i * step_ms,  # a minute before the start: the warm-up's
                exchange="mock",
                venue="mock",
                symbol=symbol,
                price=price,
                size=Decimal(rng.randint(1, 20)) / 10,
                volume=Decimal(1),
                bid=price - Decimal("0.25"),
                ask=price + Decimal("0.25"),
            )
        )
    return ticks


@pytest.fixture(scope="module")
def lake_root(tmp_path_factory: pytest.TempPathFactory) -> str:
    root = str(tmp_path_factory.mktemp("lake"))
    lake = Lake(Settings(lake_root=root))
    ticks = sorted(
        walk("ETHUSDT", "3000", 1, 200) + walk("BTCUSDT", "60000", 2, 250), key=lambda t: t.timestamp
    )
    half = len(ticks) // 2  # two commits, as a sink would make
    lake.append(MARKET_TICKS, lake_table(ticks[:half]), app_id="test", version=1)
    lake.append(MARKET_TICKS, lake_table(ticks[half:], first_seq=half + 1), app_id="test", version=2)
    return root


def config(lake_root: str, strategies: list[dict] = STRATEGIES) -> Settings:
    return Settings(lake_root=lake_root, strategy={"strategies": strategies})


REQUEST = BacktestRequest(start_ms=T0, end_ms=T0 + 4 * 60_000, equity_interval_ms=10_000, window_rows=500)
FILES = [
    "config.yaml",
    "equity.parquet",
    "fills.parquet",
    "orders.parquet",
    "report.html",
    "run.json",
    "summary.json",
]


def test_two_runs_write_the_same_bytes(lake_root: str, tmp_path: Path) -> None:
    first = run_backtest(config(lake_root), REQUEST, tmp_path / "a")
    second = run_backtest(config(lake_root), REQUEST, tmp_path / "b")
    assert sorted(p.name for p in first.out_dir.iterdir()) == FILES
    for name in FILES:
        assert (first.out_dir / name).read_bytes() == (second.out_dir / name).read_bytes(), name
    fills = pq.read_table(first.out_dir / "fills.parquet").to_pylist()
    assert fills, "the market maker trades on this walk"
    assert {f["strategy"] for f in fills} <= {"mm-eth", "ma-btc"}


def test_the_run_directory_says_what_ran_on_what(lake_root: str, tmp_path: Path) -> None:
    result = run_backtest(config(lake_root), REQUEST, tmp_path / "run")
    info = json.loads((result.out_dir / "run.json").read_text())
    assert (info["from"], info["to"]) == ("2025-12-01T00:00:00Z", "2025-12-01T00:04:00Z")
    assert info["symbols"] == ["BTCUSDT", "ETHUSDT"]
    # 4 minutes of ETHUSDT every 200 ms and BTCUSDT every 250 ms.
    assert info["ticks"] == 4 * 60 * 5 + 4 * 60 * 4
    assert info["first_tick"] == "2025-12-01T00:00:00Z"
    summary = json.loads((result.out_dir / "summary.json").read_text())
    mm = summary["mm-eth"]["total"]
    figures = ["trades", "win_rate", "total_return", "annualised_return", "sharpe", "sortino", "calmar"]
    figures += [
        "max_drawdown",
        "drawdown_start",
        "drawdown_end",
        "profit_factor",
        "expectancy",
        "exposure",
        "fees",
    ]
    for key in figures:
        assert key in mm
    fills = pq.read_table(result.out_dir / "fills.parquet").to_pylist()
    mm_fills = [f for f in fills if f["strategy"] == "mm-eth"]
    assert Decimal(mm["fees"]) == sum(f["fee"] for f in mm_fills)
    equity = pq.read_table(result.out_dir / "equity.parquet").to_pylist()
    last = [e for e in equity if e["strategy"] == "mm-eth" and e["symbol"] == ""][-1]
    assert Decimal(mm["total_pnl"]) == last["equity"]
    # The configuration it ran is a settings file that runs it again.
    again = yaml_settings(result.out_dir / "config.yaml", lake_root)
    assert [s.params for s in again.strategy.strategies] == [s["params"] for s in STRATEGIES]
    assert "<svg" in (result.out_dir / "report.html").read_text()


def yaml_settings(path: Path, lake_root: str) -> Settings:
    import yaml

    return Settings(lake_root=lake_root, **yaml.safe_load(path.read_text()))


def test_ticks_come_in_time_order_across_symbols_and_files(lake_root: str) -> None:
    source = LakeTicks(config(lake_root), window_rows=300)
    ticks = list(source.ticks(DataRange(T0, T0 + 3 * 60_000, ("BTCUSDT", "ETHUSDT"))))
    stamps = [t.timestamp for t in ticks]
    assert stamps == sorted(stamps)
    assert {t.symbol for t in ticks} == {"BTCUSDT", "ETHUSDT"}
    assert ticks[0].price == ticks[0].price.normalize() or "." not in str(ticks[0].price)


def test_a_range_with_no_data_says_what_the_table_holds_and_writes_nothing(
    lake_root: str, tmp_path: Path
) -> None:
    empty = BacktestRequest(start_ms=T0 + 86_400_000, end_ms=T0 + 2 * 86_400_000)
    with pytest.raises(
        BacktestDataError, match=r"no ticks of BTCUSDT, ETHUSDT from 2025-12-02.*holds BTCUSDT, ETHUSDT"
    ):
        run_backtest(config(lake_root), empty, tmp_path / "run")
    assert list(tmp_path.iterdir()) == []


def test_a_missing_table_is_named_and_nothing_is_written(tmp_path: Path) -> None:
    with pytest.raises(BacktestDataError, match=r"no Delta table at .*market_ticks"):
        run_backtest(config(str(tmp_path / "nolake")), REQUEST, tmp_path / "run")
    assert not (tmp_path / "run").exists()


def test_a_strategy_that_raises_leaves_nothing_half_written(lake_root: str, tmp_path: Path) -> None:
    bad = [
        {
            "name": "bad",
            "kind": "tests.unit.backtest.scripted:Raising",
            "symbols": ["BTCUSDT"],
            "params": {"at": "50"},
        }
    ]
    with pytest.raises(StrategyFailed, match="strategy bad"):
        run_backtest(config(lake_root, bad), REQUEST, tmp_path / "run")
    assert list(tmp_path.iterdir()) == []


def test_a_grid_runs_every_combination_each_in_its_own_directory(lake_root: str, tmp_path: Path) -> None:
    settings = config(lake_root)
    grid = parse_grid(["mm-eth.spread_bps=10,20", "ma-btc.fast=2,3"], strategies_for(settings, REQUEST))
    assert len(combinations(grid)) == 4
    results = run_grid(settings, REQUEST, grid, tmp_path / "sweep", workers=2)
    assert [r.get("error") for r in results] == [None] * 4
    assert len({r["out_dir"] for r in results}) == 4
    ran = json.loads((Path(results[3]["out_dir"]) / "summary.json").read_text())
    assert set(ran) == {"mm-eth", "ma-btc"}


def test_holding_ticks_back_from_the_idle_venues_changes_nothing(lake_root: str) -> None:
    """While no order works, the engine shows the venues only the ticks that make their books, before the
    next order: the same records as showing them every tick."""
    from trader.backtest.engine import BacktestEngine

    def records(every_tick: bool) -> tuple[list, list, list]:
        settings = config(lake_root, [STRATEGIES[1]])  # the MA crossover: idle between its orders
        engine = BacktestEngine(settings, strategies_for(settings, REQUEST), T0, equity_interval_ms=10_000)
        if every_tick:
            engine._hold_for_desk = engine._show_desk  # type: ignore[method-assign]
            engine._quiet = lambda tick: False  # type: ignore[method-assign]  # it holds ticks too
        source = LakeTicks(settings)
        engine.start(source.ticks(DataRange(T0 - 60_000, T0, tuple(engine.symbols))))
        for tick in source.ticks(DataRange(T0, REQUEST.end_ms, tuple(engine.symbols))):
            engine.on_tick(tick)
        done = engine.finish()
        return done.orders, done.fills, done.equity

    held, shown = records(False), records(True)
    assert held[1], "no fill: nothing compared"
    assert held == shown


@pytest.mark.parametrize("strategies", [STRATEGIES, [STRATEGIES[1]]], ids=["both", "bars-only"])
def test_the_quiet_ticks_fast_path_changes_nothing(lake_root: str, strategies: list[dict]) -> None:
    """A tick that can make nothing happen is taken inline (``BacktestEngine._quiet``): the same orders,
    fills, equity, bars and counts as every tick through the whole path."""
    from trader.backtest.engine import BacktestEngine

    def records(fast: bool) -> tuple[Any, ...]:
        settings = config(lake_root, strategies)
        engine = BacktestEngine(settings, strategies_for(settings, REQUEST), T0, equity_interval_ms=10_000)
        taken = []
        if not fast:
            engine._quiet = lambda tick: False  # type: ignore[method-assign]
        else:
            quiet = engine._quiet
            engine._quiet = lambda tick: taken.append(quiet(tick)) or taken[-1]  # type: ignore[method-assign]
        source = LakeTicks(settings)
        engine.start(source.ticks(DataRange(T0 - 60_000, T0, tuple(engine.symbols))))
        for tick in source.ticks(DataRange(T0, REQUEST.end_ms, tuple(engine.symbols))):
            engine.on_tick(tick)
        done = engine.finish()
        if fast and strategies == [STRATEGIES[1]]:  # the market maker always has an order working
            assert sum(taken) > len(taken) // 2, "the fast path took few ticks: nothing compared"
        return done.orders, done.fills, done.equity, done.bars, done.ticks, done.first_ms, done.last_ms

    fast, slow = records(True), records(False)
    assert fast[1], "no fill: nothing compared"
    assert fast == slow


def test_config_yaml_runs_again_a_strategy_on_a_live_venues_quotes_with_its_pnl_interval() -> None:
    """A paper venue on a live feed's quotes (data venue ``binance``): the file names that market-data
    venue, or the strategy would be refused when run again; and the pnl interval that paces the
    post-trade checks."""
    import yaml

    from trader.backtest.engine import BacktestEngine
    from trader.backtest.run import config_yaml

    ma = {**STRATEGIES[1], "data_venue": "binance"}
    settings = Settings(
        live_gateway={"venues": {"binance": {"symbols": ["BTCUSDT"], "ws_url": "wss://example.invalid"}}},
        gateway={"venues": {"mock2": {}}},
        exeq={"paper": {"quote_venue": "binance"}},
        pnl={"snapshot_interval_s": 5},
        strategy={"strategies": [ma]},
    )
    text = config_yaml(settings, settings.strategy.strategies)
    assert "example.invalid" not in text  # no address
    again = Settings(**yaml.safe_load(text))
    assert again.pnl.snapshot_interval_s == 5
    assert list(again.gateway.venues) == ["mock2"]
    engine = BacktestEngine(again, again.strategy.strategies, T0)
    assert list(engine.by_instrument) == [("binance", "BTCUSDT")]


def test_a_range_with_ticks_of_other_venues_only_says_which_and_writes_nothing(
    lake_root: str, tmp_path: Path
) -> None:
    """The strategy hears only its data venue's ticks: a run over the mock feed's alone would trade on
    nothing and report nothing, silently."""
    elsewhere = [{**STRATEGIES[1], "data_venue": "mock2"}]
    settings = Settings(
        lake_root=lake_root, gateway={"venues": {"mock2": {}}}, strategy={"strategies": elsewhere}
    )
    with pytest.raises(
        BacktestDataError,
        match=r"no ticks of BTCUSDT on mock2 \(the strategies' data venues\) from 2025-12-01T00:00:00Z .*"
        r"there are 960 of mock: a strategy hears only its data_venue's",
    ):
        run_backtest(settings, REQUEST, tmp_path / "run")
    assert list(tmp_path.iterdir()) == []


def test_a_strategy_that_takes_features_runs_with_a_warning_that_it_gets_none(
    lake_root: str, tmp_path: Path
) -> None:
    featured = [
        {
            "name": "feat",
            "kind": "tests.unit.backtest.scripted:Featured",
            "symbols": ["BTCUSDT"],
            "params": {"script": "1:buy:market:0.01"},
        }
    ]
    result = run_backtest(config(lake_root, featured), REQUEST, tmp_path / "run")
    assert result.warnings == [
        "strategy feat takes features (on_features), which a backtest does not compute (feature-eng runs "
        "live only): it ran without them"
    ]
    assert json.loads((result.out_dir / "run.json").read_text())["warnings"] == result.warnings
    assert json.loads((tmp_path / "run" / "run.json").read_text())["alt_data"] is None
    plain = run_backtest(config(lake_root, [STRATEGIES[1]]), REQUEST, tmp_path / "plain")
    assert plain.warnings == []


def gappy_lake(root: str) -> None:
    """Two venues of BTCUSDT (the strategy hears mock; mock2's ticks only move their own book), prices
    of varied places, sizes down to 10^-8 and zero, no quote on some ticks, and quiet minutes."""
    rng = random.Random(11)
    ticks, now, price = [], T0 - 60_000, Decimal("60000")
    while now < T0 + 12 * 60_000:
        now += rng.choice([0, 1, 5, 20, 60]) if rng.random() > 0.0003 else rng.randint(60_000, 150_000)
        venue = "mock" if rng.random() > 0.2 else "mock2"
        price += Decimal(rng.randint(-40, 40)).scaleb(-rng.randint(0, 3))
        quoted = rng.random() > 0.1
        ticks.append(
            MarketTick(
                timestamp=now,
                exchange="mock",
                venue=venue,
                symbol="BTCUSDT",
                price=price,
                size=Decimal(rng.randint(0, 2_000)).scaleb(-rng.randint(2, 8)),
                volume=Decimal(1),
                bid=price - Decimal("0.5") if quoted else None,
                ask=price + Decimal("0.5") if quoted else None,
            )
        )
    lake = Lake(Settings(lake_root=root))
    lake.append(MARKET_TICKS, lake_table(ticks), app_id="test", version=1)


@pytest.mark.parametrize("lake", ["walk", "gappy"])
def test_a_bars_only_run_window_by_window_writes_the_bytes_of_the_tick_by_tick_run(
    lake: str, lake_root: str, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The MA crossover (bars only) run a window at a time, quiet stretches column-wise and ticks one
    by one only while an order works or a latency is pending, and run tick by tick: every file the same
    to the byte (orders, fills, positions, PnL, equity, bars and ticks counted)."""
    from trader.backtest.engine import BacktestEngine

    ma = {**STRATEGIES[1], "params": {"fast": "2", "slow": "5", "timeframe": "1s", "quantity": "0.01"}}
    root, request = lake_root, REQUEST
    settings = config(root, [ma])
    if lake == "gappy":
        root = str(tmp_path / "gappy")
        gappy_lake(root)
        request = BacktestRequest(
            start_ms=T0, end_ms=T0 + 12 * 60_000, equity_interval_ms=10_000, window_rows=700
        )
        settings = Settings(
            lake_root=root,
            strategy={"strategies": [ma]},
            exeq={"paper": {"latency_ms": 300}},
            normalizer={"timeframes": ["1s", "1m", "5m"]},
        )
    singles = []
    on_tick = BacktestEngine.on_tick
    monkeypatch.setattr(
        BacktestEngine, "on_tick", lambda self, tick: singles.append(1) or on_tick(self, tick)
    )
    fast = run_backtest(settings, request, tmp_path / "fast")
    monkeypatch.setattr(BacktestEngine, "bars_only", property(lambda self: False))
    taken = len(singles)
    slow = run_backtest(settings, request, tmp_path / "slow")
    assert taken < fast.ticks // 3, "few ticks taken column-wise: nothing compared"
    assert json.loads((tmp_path / "fast" / "summary.json").read_text())[ma["name"]]["total"]["fills"] > 5
    for name in FILES:
        assert (tmp_path / "fast" / name).read_bytes() == (tmp_path / "slow" / name).read_bytes(), name
    assert fast.ticks == slow.ticks
