"""The api's SQL for QuestDB: only checked values in it, rows back as dicts with times in ms."""

from __future__ import annotations

import pytest

from trader.api import tables
from trader.stores.questdb import QuestDBError


def test_bars_sql_names_the_instrument_and_the_times() -> None:
    sql = tables.bars_sql("BTCUSDT", "mock", "1m", 1_000, 2_000, 50)
    assert "from ohlcv_1m" in sql
    assert "symbol = 'BTCUSDT'" in sql
    assert "venue = 'mock'" in sql
    assert "ts >= cast(1000000 as timestamp)" in sql
    assert "ts < cast(2000000 as timestamp)" in sql
    assert sql.endswith("limit 50")


@pytest.mark.parametrize(
    ("symbol", "timeframe"), [("BTC'; drop table x; --", "1m"), ("BTCUSDT", "1m; drop"), ("", "1m")]
)
def test_anything_but_a_name_is_refused(symbol: str, timeframe: str) -> None:
    with pytest.raises(ValueError, match="not"):
        tables.bars_sql(symbol, "mock", timeframe, None, None, 10)


def test_rows_are_dicts_with_times_in_ms_and_decimals_as_sent() -> None:
    body = {
        "columns": [{"name": "ts", "type": "TIMESTAMP"}, {"name": "close", "type": "DECIMAL(38,18)"}],
        "dataset": [["2026-12-03T03:00:00.123000Z", "60000.500000000000000000"]],
    }
    assert tables.rows(body) == [{"ts": 1796266800123, "close": "60000.500000000000000000"}]


class _Qdb:
    def __init__(self, error: str | None = None, body: dict | None = None) -> None:
        self.error, self.body = error, body

    def query(self, sql: str, timeout: float = 30) -> dict:
        if self.error:
            raise QuestDBError(self.error)
        return self.body or {}


def test_a_missing_table_is_an_empty_list_and_other_errors_are_raised() -> None:
    assert tables.query_rows(_Qdb("QuestDB refused 'x': table does not exist [table=spreads]"), "x") == []
    with pytest.raises(QuestDBError):
        tables.query_rows(_Qdb("Invalid column: symbol"), "x")


def test_newest_first_queries_come_back_oldest_first() -> None:
    body = {"columns": [{"name": "n", "type": "INT"}], "dataset": [[3], [2], [1]]}
    assert [r["n"] for r in tables.query_rows(_Qdb(body=body), "x", newest_first=True)] == [1, 2, 3]


def test_features_table_by_timeframe() -> None:
    assert tables.features_table("5m") == "features_5m"
    assert (
        tables.latest_rows_sql("spreads", "ETHUSDT", 20)
        == "select * from spreads where symbol = 'ETHUSDT' limit -20"
    )
