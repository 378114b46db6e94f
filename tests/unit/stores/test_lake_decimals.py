"""The lake's decimal columns: products and sums of prices and sizes in SQL, exact; values a column
cannot keep refused; tables written with the old types (every decimal at 18 places) rewritten."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from decimal import Decimal as D
from pathlib import Path

import polars as pl
import pyarrow as pa
import pytest
from deltalake import CommitProperties, DeltaTable, Transaction, write_deltalake

from trader.config import Settings
from trader.messages import MarketTick, encode
from trader.runtime.consumer import Delivery
from trader.services.sink_ticks import SinkTicks
from trader.stores.lake import MARKET_TICKS, Lake, LakeMigrationError, unfit_decimal

DAY_MS = 1_732_406_400_000  # 2024-11-24T00:00:00Z
OLD_SCHEMA = pa.schema(
    [
        pa.field(f.name, pa.decimal128(38, 18), f.nullable) if pa.types.is_decimal(f.type) else f
        for f in MARKET_TICKS.schema
    ]
)


def tick(n: int, price: str, size: str, venue: str = "v1") -> MarketTick:
    return MarketTick(
        timestamp=DAY_MS + n * 20_000,
        exchange=venue,
        venue=venue,
        symbol="BTCUSDT",
        price=D(price),
        size=D(size),
        volume=D(size),
        bid=D(price) - D("0.01"),
        ask=D(price) + D("0.01"),
    )


TICKS = [
    tick(0, "60000.12", "0.00000001"),
    tick(1, "61234.5", "12.5", "v2"),
    tick(2, "59999.999999999999", "0.12345678"),
    tick(3, "60500", "3", "v2"),
    tick(4, "0.000000000001", "99999999.99999999"),
]


def delivery(seq: int, t: MarketTick) -> Delivery:
    return Delivery(seq, t.timestamp, f"market.tick.{t.symbol}", encode(t), None)


@pytest.fixture
def lake(tmp_path: Path) -> Lake:
    return Lake(Settings(lake_root=str(tmp_path / "lake")))


def sql(lake: Lake, query: str) -> list[tuple]:
    """As `trader lake sql` runs it."""
    context = pl.SQLContext()
    context.register("market_ticks", pl.scan_delta(lake.uri(MARKET_TICKS)))
    return context.execute(query).collect().rows()


def write(lake: Lake, ticks: list[MarketTick]) -> None:
    sink = SinkTicks(lake.settings)
    rows = [(delivery(i + 1, t), t) for i, t in enumerate(ticks)]
    lake.append(MARKET_TICKS, sink.to_arrow(rows), app_id="sink-ticks", version=len(ticks))


def test_notional_vwap_and_volume_are_exact_in_sql(lake: Lake) -> None:
    write(lake, TICKS)
    notional = sum((t.price * t.size for t in TICKS), D(0))
    volume = sum((t.size for t in TICKS), D(0))
    [(got_notional, got_volume)] = sql(lake, "select sum(price*size), sum(size) from market_ticks")
    assert (got_notional, got_volume) == (notional, volume)
    by_venue = dict(sql(lake, "select venue, sum(price*size) from market_ticks group by venue"))
    assert by_venue == {v: sum((t.price * t.size for t in TICKS if t.venue == v), D(0)) for v in ("v1", "v2")}
    [(vwap,)] = sql(lake, "select sum(price*size)/sum(size) from market_ticks")
    assert abs(vwap - notional / volume) < D("1e-12")


def test_a_value_with_more_places_than_its_column_is_named() -> None:
    assert unfit_decimal(MARKET_TICKS, tick(0, "1.0000000000001", "1")) == (
        "price",
        "1.0000000000001 has more than 12 decimal places, the most the lake keeps",
    )
    assert unfit_decimal(MARKET_TICKS, tick(0, "1", "0.000000001"))[0] == "size"  # type: ignore[index]
    assert unfit_decimal(MARKET_TICKS, tick(0, "1.000000000000000000", "0.10000000000")) is None
    assert unfit_decimal(MARKET_TICKS, tick(0, "0.000000000001", "99999999.99999999")) is None


def test_the_sink_refuses_only_the_ticks_a_column_cannot_keep(lake: Lake) -> None:
    sink = SinkTicks(lake.settings)
    fine, too_fine = tick(0, "60000.5", "0.5"), tick(1, "60000.5", "0.123456789")
    rows = [(delivery(1, fine), fine), (delivery(2, too_fine), too_fine)]
    data, refused = sink._fitting(rows)
    assert data is not None
    assert data.column("stream_seq").to_pylist() == [1]
    assert [(r.seq, r.field) for r in refused] == [(2, "size")]
    assert refused[0].reason == "size: 0.123456789 has more than 8 decimal places, the most the lake keeps"
    assert refused[0].data == encode(too_fine)


def _write_old(lake: Lake, ticks: list[MarketTick], version: int) -> None:
    rows = [(delivery(i + 1, t), t) for i, t in enumerate(ticks)]
    table = SinkTicks(lake.settings).to_arrow(rows).cast(OLD_SCHEMA)
    write_deltalake(
        lake.uri(MARKET_TICKS),
        table,
        partition_by=list(MARKET_TICKS.partition_by),
        commit_properties=CommitProperties(app_transactions=[Transaction("sink-ticks", version)]),
    )


def test_an_old_table_is_appended_to_then_migrated_keeping_rows_and_transactions(lake: Lake) -> None:
    _write_old(lake, TICKS[:3], version=3)
    assert set(lake.stale_columns(MARKET_TICKS)) == {"price", "size", "volume", "bid", "ask"}
    with pytest.raises(Exception, match="overflow"):  # what users met: 18 + 18 places in 38 digits
        sql(lake, "select sum(price*size) from market_ticks")
    lake.append(
        MARKET_TICKS,
        SinkTicks(lake.settings).to_arrow([(delivery(4, TICKS[3]), TICKS[3])]),
        app_id="sink-ticks",
        version=4,
    )
    before = sorted(sql(lake, "select stream_seq, price, size, bid, ask, ts, symbol, dt from market_ticks"))

    assert set(lake.migrate(MARKET_TICKS)) == {"price", "size", "volume", "bid", "ask"}

    assert lake.stale_columns(MARKET_TICKS) == {}
    assert lake.committed_version(MARKET_TICKS, "sink-ticks") == 4
    after = sorted(sql(lake, "select stream_seq, price, size, bid, ask, ts, symbol, dt from market_ticks"))
    assert after == before
    [(notional,)] = sql(lake, "select sum(price*size) from market_ticks")
    assert notional == sum((t.price * t.size for t in TICKS[:4]), D(0))
    assert lake.migrate(MARKET_TICKS) == {}


def test_a_migration_that_would_change_a_value_leaves_the_table_as_it_is(lake: Lake) -> None:
    _write_old(lake, [TICKS[0]], version=1)
    # 18 places: the old table could take it, the current size column cannot.
    rows = pa.Table.from_pylist(
        [{**row, "size": D("1e-18"), "volume": D("1e-18"), "stream_seq": 2} for row in _rows(lake)],
        schema=OLD_SCHEMA,
    )
    write_deltalake(lake.uri(MARKET_TICKS), rows, mode="append", partition_by=list(MARKET_TICKS.partition_by))
    version = DeltaTable(lake.uri(MARKET_TICKS)).version()
    with pytest.raises(LakeMigrationError, match="size holds a value with more than 8 decimal places"):
        lake.migrate(MARKET_TICKS)
    assert DeltaTable(lake.uri(MARKET_TICKS)).version() == version
    assert set(lake.stale_columns(MARKET_TICKS)) == {"price", "size", "volume", "bid", "ask"}


def _rows(lake: Lake) -> list[dict]:
    return DeltaTable(lake.uri(MARKET_TICKS)).to_pyarrow_table().select(OLD_SCHEMA.names).to_pylist()


def test_lake_sql_says_why_a_product_overflows_on_an_old_table(lake: Lake, tmp_path: Path) -> None:
    _write_old(lake, TICKS[:2], version=2)
    env = {k: v for k, v in os.environ.items() if not k.startswith("TRADER_")}
    env |= {"TRADER_LAKE_ROOT": lake.root, "TRADER_DATA_DIR": str(tmp_path / "data")}
    query = "select sum(price*size) from market_ticks"
    command = [sys.executable, "-m", "trader", "lake", "sql", query]
    result = subprocess.run(command, env=env, capture_output=True, text=True, timeout=120)
    assert result.returncode == 1
    assert "overflow" in result.stderr
    assert "market_ticks (price decimal128(38, 18)" in result.stderr
    assert "sink rewrites the table when it starts" in result.stderr
    lake.migrate(MARKET_TICKS)
    result = subprocess.run([*command, "--json"], env=env, capture_output=True, text=True, timeout=120)
    assert result.returncode == 0, result.stderr
    [row] = json.loads(result.stdout)
    assert D(next(iter(row.values()))) == TICKS[0].price * TICKS[0].size + TICKS[1].price * TICKS[1].size


@pytest.mark.parametrize(
    ("price", "unfit"),
    [
        ("12345678901234567890.123456789012", False),  # 32 digits: past Decimal's default 28
        ("12345678901234567890.1234567890123", True),
        ("1.000000000000000000", False),
        ("1E+3", False),
        ("0.00000000000100", False),
        ("0.0000000000001", True),
    ],
)
def test_places_are_counted_exactly_whatever_the_digits(price: str, unfit: bool) -> None:
    misfit = unfit_decimal(MARKET_TICKS, tick(0, price, "1"))
    assert (misfit is not None) == unfit
    if unfit:
        assert misfit is not None
        assert misfit[0] == "price"
