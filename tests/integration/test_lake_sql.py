"""The questions a trader asks of the lake, on a real Delta table on SeaweedFS: notional, VWAP per
minute, volume per venue, through `trader lake sql`, exact to the last digit.

The table starts as one written before per-column decimal types (every decimal at 18 places, where
``price * size`` overflowed): sink-ticks rewrites it when it starts, then appends the ticks published
here, and dead-letters the one whose size has more places than the lake keeps.
"""

from __future__ import annotations

import asyncio
import json
import subprocess
import sys
import time
from collections import defaultdict
from collections.abc import Iterator
from datetime import UTC, datetime
from decimal import ROUND_HALF_EVEN, Decimal, localcontext
from pathlib import Path

import pyarrow as pa
import pytest
from deltalake import CommitProperties, DeltaTable, Transaction, write_deltalake

from tests.stack_helpers import Stack
from trader.bus.connection import connect_nats
from trader.messages import MarketTick, encode
from trader.runtime.consumer import Delivery
from trader.services.sink_ticks import SinkTicks
from trader.stores.lake import MARKET_TICKS, QUANTITY, Lake

pytestmark = pytest.mark.integration

MINUTE_MS = 60_000
START_MS = 1_732_406_400_000  # 2024-11-24T00:00:00Z
OLD_SCHEMA = pa.schema(
    [
        pa.field(f.name, pa.decimal128(38, 18), f.nullable)
        if f.name in {"price", "size", "volume", "bid", "ask"}
        else f
        for f in MARKET_TICKS.schema
    ]
)


def _tick(n: int, venue: str, price: str, size: str) -> MarketTick:
    return MarketTick(
        timestamp=START_MS + n * 17_000,  # about 3.5 ticks a minute: several minutes, several ticks each
        exchange=venue,
        venue=venue,
        symbol="BTCUSDT" if n % 3 else "ETHUSDT",
        price=Decimal(price),
        size=Decimal(size),
        volume=Decimal(size),
        bid=Decimal(price) - Decimal("0.01") if Decimal(price) > 1 else None,
        ask=Decimal(price) + Decimal("0.01") if Decimal(price) > 1 else None,
    )


# Written in the old types before the sink starts: stored ticks of an earlier version.
OLD_TICKS = [_tick(n, "binance", f"{60000 + n}.25", f"0.{n + 1:08d}") for n in range(4)]
# Published: large and small prices and sizes, to the places each column keeps.
NEW_TICKS = [
    _tick(4 + n, venue, price, size)
    for n, (venue, price, size) in enumerate(
        [
            ("binance", "60123.45", "1.5"),
            ("kraken", "60123.999999999999", "0.00000001"),
            ("kraken", "59000", "12345.12345678"),
            ("binance", "0.000000000001", "99999999999.99999999"),
            ("okx", "61000.1", "3"),
            ("okx", "61000.2", "0.333"),
            ("binance", "60999.99", "2.00000000"),
        ]
    )
]
TOO_FINE = _tick(20, "kraken", "60000", "0.123456789")  # 9 places: the size column keeps 8


@pytest.fixture(autouse=True)
def exact() -> Iterator[None]:
    """Python's Decimal rounds to 28 digits by default: the expected sums here must not."""
    with localcontext() as ctx:
        ctx.prec = 80
        yield


@pytest.fixture(scope="module")
def stack(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Stack]:
    s = Stack.create(
        Path(tmp_path_factory.mktemp("lake-sql")),
        TRADER_SINK_TICKS__BATCH_SECONDS="0.5",
        TRADER_SINK_TICKS__SMALL_BATCH_ROWS="0",  # a trickle: committed as it comes
    )
    s.trader("up", "--detach", "--services", "", check=True)  # the servers: the test runs the sink
    try:
        yield s
    finally:
        s.trader("down", timeout=120)


def _write_old_table(lake: Lake) -> None:
    rows = [(Delivery(1000 + i, t.timestamp, "x", b"", None), t) for i, t in enumerate(OLD_TICKS)]
    table = SinkTicks(lake.settings).to_arrow(rows).cast(OLD_SCHEMA)
    write_deltalake(
        lake.uri(MARKET_TICKS),
        table,
        partition_by=list(MARKET_TICKS.partition_by),
        storage_options=lake.storage_options,
        commit_properties=CommitProperties(app_transactions=[Transaction("sink-ticks", 0)]),
    )


async def _publish(stack: Stack) -> list[int]:
    nc = await connect_nats(stack.nats_url, "test")
    assert nc is not None
    js = nc.jetstream()
    seqs = []
    for tick in [*NEW_TICKS, TOO_FINE]:
        seqs.append((await js.publish(f"market.tick.{tick.symbol}", encode(tick))).seq)
    await nc.close()
    return seqs


@pytest.fixture(scope="module")
def lake(stack: Stack) -> Lake:
    lake = Lake(stack.settings())
    _write_old_table(lake)
    assert lake.stale_columns(MARKET_TICKS), "the table must start in the old types"
    seqs = asyncio.run(_publish(stack))
    sink = subprocess.Popen(
        [sys.executable, "-m", "trader", "service", "run", "sink-ticks"],
        env=stack.env,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    try:
        deadline = time.monotonic() + 120
        while lake.committed_version(MARKET_TICKS, "sink-ticks") != seqs[-1]:
            assert sink.poll() is None, f"sink-ticks exited {sink.returncode}"
            assert time.monotonic() < deadline, "sink-ticks did not commit the ticks"
            time.sleep(0.5)
    finally:
        sink.terminate()
        sink.wait(30)
    return lake


def _sql(stack: Stack, query: str) -> list[dict]:
    return json.loads(stack.trader("lake", "sql", query, "--json", check=True).stdout)


def _rows() -> list[MarketTick]:
    return [*OLD_TICKS, *NEW_TICKS]


def _quotient(numerator: Decimal, denominator: Decimal, like: Decimal) -> Decimal:
    """numerator / denominator rounded to the places of ``like``, half to even."""
    return (numerator / denominator).quantize(Decimal(1).scaleb(like.as_tuple().exponent), ROUND_HALF_EVEN)


def test_the_old_table_was_rewritten_in_the_current_types(lake: Lake) -> None:
    assert lake.stale_columns(MARKET_TICKS) == {}
    stored = pa.schema(
        DeltaTable(lake.uri(MARKET_TICKS), storage_options=lake.storage_options).schema().to_arrow()
    )
    assert stored.field("size").type == QUANTITY
    seqs = (
        DeltaTable(lake.uri(MARKET_TICKS), storage_options=lake.storage_options)
        .to_pyarrow_table()
        .column("stream_seq")
        .to_pylist()
    )
    assert len(seqs) == len(OLD_TICKS) + len(NEW_TICKS)
    assert {1000, 1001, 1002, 1003} <= set(seqs)  # the old rows, kept


def test_notional_and_volume_over_every_tick(stack: Stack, lake: Lake) -> None:
    [row] = _sql(
        stack, "select sum(price * size) as notional, sum(size) as volume, count(*) as n from market_ticks"
    )
    assert Decimal(row["notional"]) == sum((t.price * t.size for t in _rows()), Decimal(0))
    assert Decimal(row["volume"]) == sum((t.size for t in _rows()), Decimal(0))
    assert row["n"] == len(_rows())


def test_volume_and_notional_per_venue(stack: Stack, lake: Lake) -> None:
    got = _sql(
        stack,
        "select venue, sum(size) as volume, sum(price * size) as notional from market_ticks"
        " group by venue order by venue",
    )
    volume: dict[str, Decimal] = defaultdict(Decimal)
    notional: dict[str, Decimal] = defaultdict(Decimal)
    for t in _rows():
        volume[t.venue] += t.size
        notional[t.venue] += t.price * t.size
    assert [r["venue"] for r in got] == sorted(volume)
    assert {r["venue"]: Decimal(r["volume"]) for r in got} == volume
    assert {r["venue"]: Decimal(r["notional"]) for r in got} == notional


def test_vwap_per_minute_and_symbol(stack: Stack, lake: Lake) -> None:
    got = _sql(
        stack,
        "select symbol, date_trunc('minute', ts) as minute, sum(price * size) / sum(size) as vwap"
        " from market_ticks group by symbol, minute order by symbol, minute",
    )
    groups: dict[tuple[str, datetime], list[MarketTick]] = defaultdict(list)
    for t in _rows():
        minute = datetime.fromtimestamp(t.timestamp // MINUTE_MS * 60, UTC)
        groups[(t.symbol, minute)].append(t)
    assert [(r["symbol"], datetime.fromisoformat(r["minute"])) for r in got] == sorted(groups)
    for r in got:
        ticks = groups[(r["symbol"], datetime.fromisoformat(r["minute"]))]
        vwap = Decimal(r["vwap"])
        notional = sum((t.price * t.size for t in ticks), Decimal(0))
        expected = _quotient(notional, sum((t.size for t in ticks), Decimal(0)), vwap)
        assert vwap == expected, (r, ticks)


def test_a_size_with_more_places_than_the_lake_keeps_is_a_dead_letter(stack: Stack, lake: Lake) -> None:
    letters = json.loads(stack.trader("dlq", "list", "--service", "sink-ticks", "--json", check=True).stdout)
    assert [r["reason"] for r in letters] == ["size: 0.123456789 has more than 8 decimal places"]
    assert json.loads(letters[0]["payload"]) == json.loads(encode(TOO_FINE))
