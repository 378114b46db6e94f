"""``trader replay`` before it reaches the bus: one line for what it cannot replay (exit 1), and a stack
that is down said as every command says it. The replay itself: tests/integration/test_replay_cli.py."""

from __future__ import annotations

import os
from pathlib import Path

import pytest
from typer.testing import CliRunner

from tests.stack_helpers import free_port_map
from tests.unit.backtest.test_run import T0, walk
from trader.backtest.data import lake_table
from trader.cli.main import app
from trader.config import Settings
from trader.stores.lake import MARKET_TICKS, Lake

runner = CliRunner()


@pytest.fixture
def env(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    root = tmp_path / "lake"
    ticks = walk("BTCUSDT", "60000", 2, 250)
    Lake(Settings(lake_root=str(root))).append(MARKET_TICKS, lake_table(ticks), app_id="t", version=1)
    for name in list(os.environ):
        if name.startswith("TRADER_"):
            monkeypatch.delenv(name)
    monkeypatch.setenv("TRADER_DATA_DIR", str(tmp_path / "data"))
    monkeypatch.setenv("TRADER_LAKE_ROOT", str(root))
    monkeypatch.setenv("TRADER_PORTS__NATS", str(free_port_map()["nats"]))  # nothing listens there
    return tmp_path


@pytest.mark.parametrize(
    ("args", "said"),
    [
        ([], "--from and --to are required"),
        (["--from", str(T0), "--to", str(T0)], "must be after --from"),
        (["--from", str(T0), "--to", str(T0 + 1_000), "--speed", "fast"], "--speed 'fast': a number"),
        (["--from", str(T0), "--to", str(T0 + 1_000), "--speed", "-2"], "must be above 0"),
        (["--from", str(T0), "--to", str(T0 + 1_000), "--venues", "replay-mock"], "not replayed again"),
        (["--from", "2026-13-01", "--to", str(T0)], "not a time like"),
        (["--from", str(T0), "--to", str(T0 + 60_000), "--symbols", "DOGEUSDT"], "no ticks of DOGEUSDT"),
        (["--from", str(T0), "--to", str(T0 + 60_000), "--venues", "binance"], "it holds BTCUSDT"),
    ],
)
def test_what_it_cannot_replay_is_one_line_and_exit_1(env: Path, args: list[str], said: str) -> None:
    result = runner.invoke(app, ["replay", *args])
    assert result.exit_code == 1, result.output
    assert said in result.output
    assert "Traceback" not in result.output


def test_a_stack_that_is_down_is_said_in_one_line(env: Path) -> None:
    result = runner.invoke(app, ["replay", "--from", str(T0), "--to", str(T0 + 60_000), "--speed", "max"])
    assert result.exit_code == 1, result.output
    assert "cannot reach NATS" in result.output
    assert "is the stack up?" in result.output
