"""The backtest benchmark's lake: the ticks it writes read back exactly, in time order."""

from __future__ import annotations

from decimal import Decimal
from pathlib import Path

from trader.backtest.data import DataRange, LakeTicks
from trader.bench.backtest import SYMBOLS, T0, run_scenario, write_lake
from trader.config import Settings


def test_the_written_ticks_read_back_in_order_with_exact_decimals(tmp_path: Path) -> None:
    root = tmp_path / "lake"
    assert write_lake(root, 2_000)["written"]
    assert not write_lake(root, 2_000)["written"]  # kept for the next run
    ticks = list(LakeTicks(Settings(lake_root=str(root))).ticks(DataRange(T0, T0 + 2_000, ())))
    assert len(ticks) == 2_000
    assert [t.symbol for t in ticks[:4]] == SYMBOLS
    assert [t.timestamp for t in ticks] == list(range(T0, T0 + 2_000))
    for t in ticks:
        assert t.bid == t.price - Decimal("0.01")
        assert t.ask == t.price + Decimal("0.01")
        assert t.price > 0
    assert ticks[0].price.as_tuple().exponent == -2  # as the feed would write it: cents


def test_the_read_scenario_counts_every_tick(tmp_path: Path) -> None:
    root = tmp_path / "lake"
    write_lake(root, 1_000)
    result = run_scenario(str(root), "read", 1_000, str(tmp_path / "out"))
    assert result["ticks"] == 1_000
    assert result["peak_rss_mib"] > 0


def test_the_alt_scenarios_read_every_datum_and_hand_each_to_on_alt(tmp_path: Path) -> None:
    from trader.bench.backtest import ALT_EVERY_MS, write_alt_lake

    root = tmp_path / "lake"
    write_lake(root, 2_000)
    assert write_alt_lake(root, 2_000)["written"]
    assert not write_alt_lake(root, 2_000)["written"]  # kept for the next run
    read = run_scenario(str(root), "alt_read", 2_000, str(tmp_path / "out"))
    assert read["ticks"] == 2_000 // ALT_EVERY_MS
    run = run_scenario(str(root), "ma_cross_alt", 2_000, str(tmp_path / "run"))
    assert run["ticks"] == 2_000
    assert run["alt"] == 2_000 // ALT_EVERY_MS
