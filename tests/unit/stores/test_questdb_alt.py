"""The venues' alternative data as QuestDB rows: one table per kind, keys that make a write again replace."""

from __future__ import annotations

from decimal import Decimal as D

import pytest
from questdb import TimestampNanos

from trader.messages import AltDatum
from trader.stores.questdb_alt import DDL, latest_sql, liquidation_key, row_of

TS = 1_764_000_000_000


def datum(kind: str, value: str, **extra: object) -> AltDatum:
    fields: dict[str, object] = {"symbol": "BTCUSDT-PERP", "unit": "BTC", "venue_symbol": "BTCUSDT", **extra}
    return AltDatum(timestamp=TS, kind=kind, source="binance", value=D(value), **fields)  # type: ignore[arg-type]


def test_funding_row_keeps_rate_predicted_and_next_time() -> None:
    row = row_of(datum("funding", "0.00038167", predicted=D("-0.0001"), next_time=TS + 1000, unit="rate"))
    assert row is not None
    assert row.table == "funding"
    assert row.symbols == {"venue": "binance", "symbol": "BTCUSDT-PERP"}
    assert row.columns["rate"] == D("0.00038167")
    assert row.columns["predicted"] == D("-0.0001")
    assert row.columns["next_funding"].value == TimestampNanos((TS + 1000) * 1_000_000).value
    assert row.ts_ms == TS


def test_mark_and_index_share_a_table_told_apart_by_kind() -> None:
    mark, index = row_of(datum("mark_price", "60000.1")), row_of(datum("index_price", "60001.2"))
    assert mark is not None
    assert index is not None
    assert (mark.table, mark.symbols["kind"], mark.columns["price"]) == ("mark_index", "mark", D("60000.1"))
    assert (index.table, index.symbols["kind"]) == ("mark_index", "index")


def test_liquidations_at_one_time_have_different_keys() -> None:
    a = datum("liquidation", "0.003", price=D("94500.1"), side="sell")
    b = datum("liquidation", "0.003", price=D("94500.2"), side="sell")
    assert liquidation_key(a) != liquidation_key(b)
    assert liquidation_key(a) == liquidation_key(
        datum("liquidation", "0.003", price=D("94500.1"), side="sell")
    )
    assert 0 <= liquidation_key(a) < 2**63
    row = row_of(a)
    assert row is not None
    assert (row.table, row.symbols["side"], row.columns["quantity"]) == ("liquidations", "sell", D("0.003"))


def test_kinds_without_a_table_and_data_without_symbol_give_no_row() -> None:
    assert row_of(AltDatum(timestamp=TS, kind="sentiment", source="mock", value=D("0.5"))) is None
    assert row_of(AltDatum(timestamp=TS, kind="funding", source="mock", value=D("0.5"))) is None


def test_tables_dedup_on_their_natural_keys() -> None:
    assert DDL["funding"].endswith("DEDUP UPSERT KEYS(ts, venue, symbol)")
    assert DDL["liquidations"].endswith("DEDUP UPSERT KEYS(ts, venue, symbol, key)")
    assert DDL["mark_index"].endswith("DEDUP UPSERT KEYS(ts, venue, symbol, kind)")
    assert all(" WAL " in ddl for ddl in DDL.values())


@pytest.mark.parametrize(
    ("symbol", "where"),
    [
        (None, ""),
        ("BTCUSDT", " WHERE symbol IN ('BTCUSDT', 'BTCUSDT-PERP')"),
        ("btcusdt-perp", " WHERE symbol IN ('BTCUSDT-PERP')"),
    ],
)
def test_latest_query(symbol: str | None, where: str) -> None:
    assert (
        latest_sql("funding", symbol)
        == f"SELECT * FROM funding{where} LATEST ON ts PARTITION BY venue, symbol"
    )


@pytest.mark.parametrize("symbol", ["x'; drop table funding; --", "BTC USDT", "", "BTC-USDT-SWAP"])
def test_latest_query_refuses_what_is_not_a_unified_symbol(symbol: str) -> None:
    with pytest.raises(ValueError, match="not a unified symbol"):
        latest_sql("funding", symbol)
