"""``trader backtest`` on a lake on disk: the table of figures, the run directory, a sweep's ranked table,
and one line for what it cannot run (exit 1)."""

from __future__ import annotations

import json
import os
from decimal import Decimal
from pathlib import Path

import pyarrow.parquet as pq
import pytest
from typer.testing import CliRunner

from tests.unit.backtest.test_run import MINUTES, STRATEGIES, T0, walk
from trader.backtest.data import lake_table
from trader.cli.main import app
from trader.config import Settings
from trader.stores.lake import MARKET_TICKS, Lake

runner = CliRunner()
assert MINUTES >= 3


@pytest.fixture
def env(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    root = tmp_path / "lake"
    ticks = sorted(
        walk("ETHUSDT", "3000", 1, 200) + walk("BTCUSDT", "60000", 2, 250), key=lambda t: t.timestamp
    )
    Lake(Settings(lake_root=str(root))).append(MARKET_TICKS, lake_table(ticks), app_id="t", version=1)
    for name in list(os.environ):
        if name.startswith("TRADER_"):
            monkeypatch.delenv(name)
    monkeypatch.setenv("TRADER_DATA_DIR", str(tmp_path / "data"))
    monkeypatch.setenv("TRADER_LAKE_ROOT", str(root))
    monkeypatch.setenv("TRADER_STRATEGY__STRATEGIES", json.dumps(STRATEGIES))
    return tmp_path


def test_a_run_prints_its_figures_and_where_its_report_is(env: Path) -> None:
    out = env / "run1"
    result = runner.invoke(
        app, ["backtest", "--from", str(T0), "--to", "2025-12-01T00:02", "--out", str(out)]
    )
    assert result.exit_code == 0, result.output
    assert "mm-eth" in result.output
    assert "ETHUSDT" in result.output
    assert f"report: {out}/report.html" in result.output
    assert (out / "summary.json").is_file()


def test_a_sweep_prints_a_ranked_table(env: Path) -> None:
    args = [
        "backtest",
        "--from",
        "2025-12-01T00:00Z",
        "--to",
        "2025-12-01T00:01Z",
        "--out",
        str(env / "sweep"),
    ]
    args += ["--grid", "mm-eth.spread_bps=5,20", "--workers", "1", "--rank-by", "total_return"]
    result = runner.invoke(app, args)
    assert result.exit_code == 0, result.output
    assert "mm-eth.spread_bps=5" in result.output
    assert "2 runs under" in result.output
    assert len(list((env / "sweep").iterdir())) == 2


def test_what_cannot_run_is_one_line_and_exit_1(env: Path) -> None:
    result = runner.invoke(app, ["backtest", "--from", "2020-01-01", "--to", "2020-01-02"])
    assert result.exit_code == 1
    assert "no ticks of BTCUSDT, ETHUSDT from 2020-01-01T00:00:00Z" in result.output
    result = runner.invoke(app, ["backtest", "--from", "yesterday", "--to", "2020-01-02"])
    assert result.exit_code == 1
    assert "--from 'yesterday': not a time" in result.output
    result = runner.invoke(
        app, ["backtest", "--from", "2020-01-01", "--to", "2020-01-02", "--grid", "nope=1"]
    )
    assert result.exit_code == 1
    assert "2 strategies run" in result.output


def test_a_sweep_ranks_by_the_figure_exactly_and_a_failed_combination_comes_last(env: Path) -> None:
    args = ["backtest", "--from", "2025-12-01T00:00Z", "--to", "2025-12-01T00:02Z", "--out", str(env / "s")]
    args += ["--grid", "mm-eth.spread_bps=5,nope,40", "--workers", "1", "--rank-by", "trades", "--json"]
    result = runner.invoke(app, args)
    assert result.exit_code == 0, result.output
    rows = json.loads(result.stdout)
    assert [r["rank"] for r in rows] == [1, 2, 3]
    ran = [r for r in rows if r["trades"] is not None]
    assert len(ran) == 2
    assert [r["trades"] for r in ran] == sorted((r["trades"] for r in ran), reverse=True)
    assert "spread_bps=nope" in rows[-1]["parameters"]
    assert "nope" in rows[-1]["run"]  # the error, in the run column
    for row in ran:  # exact: the figures of the run's own summary, not rounded for show
        summary = json.loads((env / "s" / row["run"] / "summary.json").read_text())
        total_return = sum(Decimal(s["total"]["total_return"]) for s in summary.values())
        assert Decimal(row["return"]) == total_return


def test_a_sweep_refuses_a_rank_figure_that_does_not_exist(env: Path) -> None:
    args = [
        "backtest",
        "--from",
        "2025-12-01T00:00Z",
        "--to",
        "2025-12-01T00:01Z",
        "--grid",
        "mm-eth.spread_bps=5",
    ]
    result = runner.invoke(app, [*args, "--rank-by", "sharp"])
    assert result.exit_code == 1
    assert "--rank-by 'sharp' is not a figure of the summary: one of trades" in result.output


def test_symbols_capital_and_equity_interval_reach_the_run(env: Path) -> None:
    out = env / "eth"
    args = ["backtest", "--from", str(T0), "--to", "2025-12-01T00:02Z", "--out", str(out), "--json"]
    args += ["--symbols", "ETHUSDT", "--capital", "5000", "--equity-interval", "30"]
    result = runner.invoke(app, args)
    assert result.exit_code == 0, result.output
    shown = json.loads(result.stdout)
    assert list(shown["summary"]) == ["mm-eth"]  # ma-btc trades BTCUSDT only: it does not run
    assert list(shown["summary"]["mm-eth"]["symbols"]) == ["ETHUSDT"]
    assert shown["warnings"] == []
    info = json.loads((out / "run.json").read_text())
    assert (info["symbols"], info["capital"], info["equity_interval_ms"]) == (["ETHUSDT"], "5000", 30_000)
    equity = {row["timestamp"] for row in pq.read_table(out / "equity.parquet").to_pylist()}
    assert {T0, T0 + 30_000, T0 + 60_000, T0 + 90_000} <= equity
    pnl = Decimal(shown["summary"]["mm-eth"]["total"]["total_pnl"])
    assert Decimal(shown["summary"]["mm-eth"]["total"]["total_return"]) == pnl / 5000


@pytest.mark.parametrize(
    ("extra", "message"),
    [
        (["--symbols", "SOLUSDT"], "no enabled strategy trades SOLUSDT"),
        (["--capital", "abc"], "--capital 'abc' is not a decimal"),
        (["--capital", "-5"], "--capital '-5' must be positive"),
        (["--to", "2025-11-30"], "is not after --from"),
    ],
)
def test_bad_options_are_one_line_and_exit_1(env: Path, extra: list[str], message: str) -> None:
    args = ["backtest", "--from", str(T0), "--to", "2025-12-01T00:02Z", "--out", str(env / "bad")]
    result = runner.invoke(app, [*args, *extra])
    assert result.exit_code == 1, result.output
    assert message in result.output
    assert not (env / "bad").exists()


def test_a_sweep_ranked_by_drawdown_puts_the_smallest_first(env: Path) -> None:
    args = ["backtest", "--from", "2025-12-01T00:00Z", "--to", "2025-12-01T00:02Z", "--out", str(env / "dd")]
    args += ["--grid", "mm-eth.spread_bps=2,40,10", "--workers", "1", "--rank-by", "max_drawdown", "--json"]
    result = runner.invoke(app, args)
    assert result.exit_code == 0, result.output
    rows = json.loads(result.stdout)
    drawdowns = [Decimal(r["max_drawdown"]) for r in rows]
    assert drawdowns == sorted(drawdowns)
    assert len(set(drawdowns)) > 1, "the same drawdown for every run: nothing ranked"


def test_a_run_whose_strategy_takes_alt_data_and_finds_none_warns_on_stderr(
    env: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    alt = [
        {
            "name": "alt",
            "kind": "tests.unit.backtest.scripted:AltTrader",
            "symbols": ["BTCUSDT"],
            "params": {"threshold": "0.0005", "quantity": "1"},
        }
    ]
    monkeypatch.setenv("TRADER_STRATEGY__STRATEGIES", json.dumps(alt))
    args = ["backtest", "--from", str(T0), "--to", "2025-12-01T00:01Z", "--out", str(env / "alt"), "--json"]
    result = runner.invoke(app, args)
    assert result.exit_code == 0, result.output
    assert (
        "warning: no alternative data: alt takes it (on_alt), but of BTCUSDT, BTCUSDT-PERP" in result.stderr
    )
    assert "there is no Delta table at" in result.stderr
    assert json.loads(result.stdout)["warnings"][0].startswith("no alternative data")
