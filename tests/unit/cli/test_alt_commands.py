"""``trader funding`` and ``trader oi``: the SQL they ask QuestDB, their tables and exact ``--json``.
QuestDB's answers are stood in for here; tests/integration/test_live_alt.py runs them on the real server."""

from __future__ import annotations

import json
from typing import Any

import pytest
from typer.testing import CliRunner

from trader.cli.main import app
from trader.stores.questdb import QuestDBClient, QuestDBError

runner = CliRunner()
DEC = "DECIMAL(38,18)"


def answer(columns: list[tuple[str, str]], rows: list[list[Any]]) -> dict[str, Any]:
    return {"columns": [{"name": n, "type": t} for n, t in columns], "dataset": rows}


FUNDING = answer(
    [("ts", "TIMESTAMP"), ("venue", "SYMBOL"), ("symbol", "SYMBOL"), ("rate", DEC), ("predicted", DEC),
     ("next_funding", "TIMESTAMP")],
    [["2026-12-03T08:00:00.000000Z", "okx", "BTCUSDT-PERP", "0.000187539128482800", None,
      "2026-12-03T16:00:00.000000Z"]],
)  # fmt: skip
MARKS = answer(
    [("ts", "TIMESTAMP"), ("venue", "SYMBOL"), ("symbol", "SYMBOL"), ("kind", "SYMBOL"), ("price", DEC)],
    [["2026-12-03T08:00:00.000000Z", "okx", "BTCUSDT-PERP", "mark", "60000.100000000000000000"],
     ["2026-12-03T08:00:00.000000Z", "okx", "BTCUSDT-PERP", "index", "60001.200000000000000000"]],
)  # fmt: skip
OI = answer(
    [("ts", "TIMESTAMP"), ("venue", "SYMBOL"), ("symbol", "SYMBOL"), ("open_interest", DEC),
     ("unit", "SYMBOL")],
    [["2026-12-03T08:00:00.000000Z", "bybit", "BTCUSDT-PERP", "68744.761000000000000000", "BTC"]],
)  # fmt: skip


@pytest.fixture
def asked(monkeypatch: pytest.MonkeyPatch) -> list[str]:
    queries: list[str] = []

    def query(self: QuestDBClient, sql: str, timeout: float = 30) -> dict[str, Any]:
        queries.append(sql)
        if "FROM funding" in sql:
            return FUNDING
        if "FROM mark_index" in sql:
            return MARKS
        if "FROM open_interest" in sql:
            return OI
        raise QuestDBError("table does not exist [table=liquidations]")

    monkeypatch.setattr(QuestDBClient, "query", query)
    return queries


def test_funding_shows_rate_next_time_mark_and_index_exactly_in_json(asked: list[str]) -> None:
    result = runner.invoke(app, ["funding", "BTC-USDT-SWAP", "--json"])
    assert result.exit_code == 0, result.output
    [row] = json.loads(result.output)
    assert row["rate"] == "0.000187539128482800"
    assert (row["mark"], row["index"]) == ("60000.100000000000000000", "60001.200000000000000000")
    assert row["next_funding"] == "2026-12-03T16:00:00.000000Z"
    assert "WHERE symbol IN ('BTCUSDT-PERP')" in asked[0]
    assert "LATEST ON ts PARTITION BY venue, symbol, kind" in asked[1]


def test_funding_table_for_a_person(asked: list[str]) -> None:
    result = runner.invoke(app, ["funding"], env={"COLUMNS": "160"})
    assert result.exit_code == 0, result.output
    assert "0.0001875391" in result.output  # rounded for the eye; --json is exact
    assert "60000.1" in result.output
    assert "WHERE" not in asked[0]


def test_oi_in_base_units(asked: list[str]) -> None:
    result = runner.invoke(app, ["oi", "BTCUSDT", "--json"])
    assert result.exit_code == 0, result.output
    assert json.loads(result.output) == [
        {"venue": "bybit", "symbol": "BTCUSDT-PERP", "open_interest": "68744.761000000000000000",
         "unit": "BTC", "ts": "2026-12-03T08:00:00.000000Z"}
    ]  # fmt: skip
    assert "WHERE symbol IN ('BTCUSDT-PERP')" in asked[0]


def test_a_symbol_that_is_none_is_bad_input(asked: list[str]) -> None:
    result = runner.invoke(app, ["oi", "not a symbol"])
    assert result.exit_code == 2
    assert asked == []
