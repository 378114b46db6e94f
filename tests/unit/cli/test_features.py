"""``trader features``: the SQL it asks QuestDB, oldest bar first, every digit in ``--json``, a short
table for a person, bad input refused. QuestDB's answers are stood in for here;
tests/integration/test_feature_eng.py fills the real tables."""

from __future__ import annotations

import json
from typing import Any

import pytest
from typer.testing import CliRunner

from trader.cli.features import features_sql
from trader.cli.main import app
from trader.stores.questdb import QuestDBClient, QuestDBError

runner = CliRunner()
COLUMNS = [("ts", "TIMESTAMP"), ("venue", "SYMBOL"), ("symbol", "SYMBOL"), ("bars", "LONG")]
COLUMNS += [("sma_20", "DOUBLE"), ("rsi_14", "DOUBLE")]
NEWEST_FIRST = {
    "columns": [{"name": n, "type": t} for n, t in COLUMNS],
    "dataset": [
        ["2026-12-03T09:01:00.000000Z", "mock", "BTCUSDT", 21, 60001.123456789, 55.5],
        ["2026-12-03T09:00:00.000000Z", "mock", "BTCUSDT", 20, 60000.987654321012, None],
    ],
}


@pytest.fixture
def asked(monkeypatch: pytest.MonkeyPatch) -> list[str]:
    queries: list[str] = []

    def query(self: QuestDBClient, sql: str, timeout: float = 30) -> dict[str, Any]:
        queries.append(sql)
        if "FROM features_1m" in sql:
            return NEWEST_FIRST
        raise QuestDBError("table does not exist [table=features_3m]")

    monkeypatch.setattr(QuestDBClient, "query", query)
    return queries


def test_features_oldest_first_with_every_digit_in_json(asked: list[str]) -> None:
    result = runner.invoke(app, ["features", "btcusdt", "--venue", "mock", "--last", "2", "--json"])
    assert result.exit_code == 0, result.output
    rows = json.loads(result.output)
    assert [r["bars"] for r in rows] == [20, 21]
    assert rows[0]["sma_20"] == 60000.987654321012
    assert rows[0]["rsi_14"] is None
    assert rows[1]["ts"] == "2026-12-03T09:01:00Z"
    assert asked == [
        "SELECT * FROM features_1m WHERE symbol = 'BTCUSDT' AND venue = 'mock' ORDER BY ts DESC LIMIT 2"
    ]


def test_features_table_for_a_person(asked: list[str]) -> None:
    result = runner.invoke(app, ["features", "BTCUSDT"], env={"COLUMNS": "200"})
    assert result.exit_code == 0, result.output
    assert "60001.1" in result.output
    assert "60001.123456789" not in result.output
    assert "rsi 14" in result.output  # headers are written as words


def test_features_refuse_bad_input_and_say_what_is_missing(asked: list[str]) -> None:
    with pytest.raises(ValueError, match="not a name"):
        features_sql("BTC'; drop", "1m", None, 5)
    with pytest.raises(ValueError, match="timeframe"):
        features_sql("BTCUSDT", "7x", None, 5)
    result = runner.invoke(app, ["features", "BTCUSDT", "--tf", "3m"])
    assert result.exit_code == 1
    assert "no features_3m table" in result.output
