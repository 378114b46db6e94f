"""``trader bars``: the SQL it asks QuestDB, oldest bar first, exact ``--json``, bad input refused.
QuestDB's answers are stood in for here; tests/integration/test_ohlcv_agg.py fills the real tables."""

from __future__ import annotations

import json
from typing import Any

import pytest
from typer.testing import CliRunner

from trader.cli.bars import bars_sql
from trader.cli.main import app
from trader.stores.questdb import QuestDBClient, QuestDBError

runner = CliRunner()
DEC = "DECIMAL(38,18)"
COLUMNS = [("ts", "TIMESTAMP"), ("venue", "SYMBOL"), ("symbol", "SYMBOL")]
COLUMNS += [(c, DEC) for c in ("open", "high", "low", "close", "volume", "vwap")]
COLUMNS += [("trades", "LONG"), ("closed", "BOOLEAN")]
NEWEST_FIRST = {
    "columns": [{"name": n, "type": t} for n, t in COLUMNS],
    "dataset": [
        ["2026-12-03T09:00:00.000000Z", "mock", "BTCUSDT", "60010.5", "60020", "60000", "60001.25",
         "2.5", "60005.123456789012345678", 41, False],
        ["2026-12-03T08:00:00.000000Z", "mock", "BTCUSDT", "60000", "60100", "59900.000000000000000001",
         "60010.5", "10", "60002.000000000000000001", 380, True],
    ],
}  # fmt: skip


@pytest.fixture
def asked(monkeypatch: pytest.MonkeyPatch) -> list[str]:
    queries: list[str] = []

    def query(self: QuestDBClient, sql: str, timeout: float = 30) -> dict[str, Any]:
        queries.append(sql)
        if "FROM ohlcv_1h" in sql:
            return NEWEST_FIRST
        raise QuestDBError("table does not exist [table=ohlcv_3m]")

    monkeypatch.setattr(QuestDBClient, "query", query)
    return queries


def test_bars_oldest_first_and_exact_in_json(asked: list[str]) -> None:
    result = runner.invoke(app, ["bars", "btcusdt", "--venue", "mock", "--last", "2", "--json"])
    assert result.exit_code == 0, result.output
    rows = json.loads(result.output)
    assert [r["ts"] for r in rows] == ["2026-12-03T08:00:00Z", "2026-12-03T09:00:00Z"]
    assert rows[0]["low"] == "59900.000000000000000001"
    assert (rows[0]["closed"], rows[1]["closed"], rows[1]["trades"]) == (True, False, 41)
    assert asked == [
        "SELECT ts, venue, symbol, open, high, low, close, volume, vwap, trades, closed FROM ohlcv_1h "
        "WHERE symbol = 'BTCUSDT' AND venue = 'mock' ORDER BY ts DESC LIMIT 2"
    ]


def test_bars_table_for_a_person(asked: list[str]) -> None:
    result = runner.invoke(app, ["bars", "BTCUSDT"], env={"COLUMNS": "200"})
    assert result.exit_code == 0, result.output
    assert "60005.123456789 " in result.output  # rounded for the eye; --json is exact
    assert "LIMIT 20" in asked[0]


def test_a_timeframe_without_a_table_says_which_exist(asked: list[str]) -> None:
    result = runner.invoke(app, ["bars", "BTCUSDT", "--tf", "3m"])
    assert result.exit_code == 1
    assert "no ohlcv_3m table" in result.output


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (["BTC'; DROP TABLE ohlcv_1m; --"], "is not a name"),
        (["BTCUSDT", "--venue", "a b"], "is not a name"),
        (["BTCUSDT", "--tf", "7m"], "does not divide a day"),
        (["BTCUSDT", "--last", "0"], "at least 1"),
    ],
)
def test_bad_input_is_refused_before_any_query(asked: list[str], args: list[str], message: str) -> None:
    result = runner.invoke(app, ["bars", *args])
    assert result.exit_code == 1
    assert message in result.output
    assert asked == []


def test_sql_of_all_venues() -> None:
    assert "WHERE symbol = 'ETHUSDT' ORDER BY" in bars_sql("ETHUSDT", "1d", None, 5)
