"""The alt_data table keeps what the venues tell of funding and liquidations, exactly, and a table
written before those columns existed takes them at the next append, its old rows kept."""

from __future__ import annotations

from decimal import Decimal as D
from pathlib import Path

import pyarrow as pa
import pytest
from deltalake import DeltaTable, write_deltalake

from trader.config import Settings
from trader.messages import AltDatum, encode
from trader.runtime.consumer import Delivery
from trader.services.sink_alt import SinkAlt
from trader.stores.lake import ALT_DATA, Lake

DAY_MS = 1_732_406_400_000

FUNDING = AltDatum(
    timestamp=DAY_MS,
    kind="funding",
    source="okx",
    value=D("0.0001875391284828"),
    symbol="BTCUSDT-PERP",
    unit="rate",
    venue_symbol="BTC-USDT-SWAP",
    predicted=D("-0.0000125"),
    next_time=DAY_MS + 3_600_000,
)
LIQUIDATION = AltDatum(
    timestamp=DAY_MS + 5,
    kind="liquidation",
    source="bybit",
    value=D("0.003"),
    symbol="BTCUSDT-PERP",
    unit="BTC",
    venue_symbol="BTCUSDT",
    price=D("94500.1"),
    side="sell",
)
SENTIMENT = AltDatum(timestamp=DAY_MS + 9, kind="sentiment", source="mock", value=D("0.5"))


@pytest.fixture
def lake(tmp_path: Path) -> Lake:
    return Lake(Settings(lake_root=str(tmp_path / "lake")))


def rows(data: list[AltDatum], first_seq: int = 1) -> list[tuple[Delivery, AltDatum]]:
    return [
        (Delivery(first_seq + i, d.timestamp, f"alt.norm.{d.kind}", encode(d), None), d)
        for i, d in enumerate(data)
    ]


def read(lake: Lake) -> list[dict]:
    table = DeltaTable(lake.uri(ALT_DATA)).to_pyarrow_table()
    return sorted(table.to_pylist(), key=lambda r: r["stream_seq"])


def test_funding_and_liquidation_fields_are_kept_exactly(lake: Lake) -> None:
    sink = SinkAlt(lake.settings)
    lake.append(
        ALT_DATA, sink.to_arrow(rows([FUNDING, LIQUIDATION, SENTIMENT])), app_id="sink-alt", version=3
    )
    funding, liquidation, sentiment = read(lake)
    assert funding["value"] == D("0.0001875391284828")
    assert funding["predicted"] == D("-0.0000125")
    assert int(funding["next_ts"].timestamp() * 1000) == DAY_MS + 3_600_000
    assert funding["venue_symbol"] == "BTC-USDT-SWAP"
    assert (liquidation["price"], liquidation["side"], liquidation["value"]) == (
        D("94500.1"),
        "sell",
        D("0.003"),
    )
    assert (sentiment["price"], sentiment["predicted"], sentiment["next_ts"]) == (None, None, None)


def test_a_table_written_before_the_new_columns_takes_them(lake: Lake) -> None:
    sink = SinkAlt(lake.settings)
    old_schema = pa.schema([f for f in ALT_DATA.schema if f.name not in ALT_DATA.added_columns])
    old = sink.to_arrow(rows([SENTIMENT])).select(old_schema.names).cast(old_schema)
    write_deltalake(lake.uri(ALT_DATA), old, mode="append", partition_by=list(ALT_DATA.partition_by))
    lake.append(ALT_DATA, sink.to_arrow(rows([FUNDING, LIQUIDATION], 2)), app_id="sink-alt", version=3)
    sentiment, funding, liquidation = read(lake)
    assert sentiment["value"] == D("0.5")
    assert sentiment["side"] is None
    assert funding["predicted"] == D("-0.0000125")
    assert liquidation["side"] == "sell"
    assert lake.committed_version(ALT_DATA, "sink-alt") == 3
