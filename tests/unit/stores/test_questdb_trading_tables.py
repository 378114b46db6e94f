"""The positions and pnl tables: their DDL, and money brought to the 18 places DECIMAL(38, 18) keeps."""

from __future__ import annotations

from decimal import Decimal as D

from trader.stores.questdb import _stored, pnl_table_ddl, positions_table_ddl


def test_tables_are_wal_with_a_designated_timestamp_and_upsert_keys() -> None:
    positions, pnl = positions_table_ddl(), pnl_table_ddl()
    for ddl in (positions, pnl):
        assert "TIMESTAMP(ts) PARTITION BY DAY WAL" in ddl
        assert "DECIMAL(38, 18)" in ddl
    assert "DEDUP UPSERT KEYS(ts, account, venue, symbol, strategy)" in positions
    assert "strategy SYMBOL" in positions
    assert "DEDUP UPSERT KEYS(ts, scope)" in pnl


def test_money_keeps_18_places_even_beyond_the_default_precision() -> None:
    # 11 integer digits and 18 places: 29 digits, one more than Decimal's default context holds.
    assert _stored(D("12345678901.1234567890123456789")) == D("12345678901.123456789012345679")
    assert _stored(D(1) / D(3)) == D("0.333333333333333333")
    assert _stored(D("-2.5")) == D("-2.500000000000000000")
