"""Alternative data in a backtest on the real servers: data published on ``alt.norm.<kind>`` are stored by
sink-alt in the lake's ``alt_data`` on SeaweedFS (its own commits, as it runs live), ticks beside them in
``market_ticks``; a backtest of a strategy that overrides ``on_alt`` hears each datum of its symbol and
its perpetual, the very message, in event time with the ticks (after the ticks of its millisecond), and
trades on it; a strategy of another symbol hears none and the run says so."""

from __future__ import annotations

import asyncio
import json
import subprocess
import sys
import time
from collections.abc import Iterator
from decimal import Decimal as D
from pathlib import Path
from typing import Any

import pyarrow.parquet as pq
import pytest

from tests.stack_helpers import Stack
from trader.backtest import run as run_module
from trader.backtest.data import DataRange, LakeTicks, lake_table
from trader.backtest.engine import BacktestEngine, feed
from trader.backtest.run import BacktestRequest, run_backtest, strategies_for
from trader.bus.connection import connect_nats
from trader.config import Settings, StrategyConfig, StrategySettings
from trader.messages import AltDatum, MarketTick, encode
from trader.stores.lake import ALT_DATA, MARKET_TICKS, Lake

pytestmark = pytest.mark.integration

T0 = 1_764_547_200_000  # 2025-12-01T00:00:00Z
END = T0 + 120_000


def _tick(at_ms: int, price: str) -> MarketTick:
    p = D(price)
    return MarketTick(
        timestamp=at_ms,
        exchange="mock",
        venue="mock",
        symbol="BTCUSDT",
        price=p,
        size=D("0.5"),
        volume=D("0.5"),
        bid=p - D("0.5"),
        ask=p + D("0.5"),
    )


TICKS = [_tick(T0 + i * 500, str(60000 + i % 5)) for i in range(-120, 240)]


def _alt(at_ms: int, kind: str, value: str, symbol: str | None = "BTCUSDT-PERP", **more: Any) -> AltDatum:
    return AltDatum(timestamp=at_ms, kind=kind, source="binance", value=D(value), symbol=symbol, **more)


# Published in this order (the stream's), which is not event time.
PUBLISHED = [
    _alt(T0 + 10_250, "mark_price", "60001.25", "BTCUSDT"),
    _alt(
        T0 + 3_000,  # a tick's millisecond
        "funding",
        "0.00012500",
        unit="rate",
        venue_symbol="BTCUSDT",
        predicted=D("-0.0000125"),
        next_time=T0 + 8 * 3_600_000,
    ),
    _alt(T0 + 3_000, "liquidation", "0.003", unit="BTC", price=D("59990.1"), side="sell"),
    _alt(T0 + 5_000, "funding", "0.9", "ETHUSDT-PERP", unit="rate"),  # another symbol's
    _alt(T0 - 20_000, "funding", "0.9", unit="rate"),  # before the start: the warm-up's, not heard
    _alt(T0 + 30_000, "funding", "0.001", unit="rate"),  # high: the strategy sells 0.5
    _alt(T0 + 60_001, "open_interest", "68744.761", unit="BTC"),
    _alt(T0 + 90_000, "funding", "-0.001", unit="rate"),  # low: it buys 0.5 back
    _alt(T0 + 95_000, "sentiment", "0.7", None),  # about no symbol
]
HEARD = sorted(
    (d for d in PUBLISHED if d.symbol in ("BTCUSDT", "BTCUSDT-PERP") and T0 <= d.timestamp < END),
    key=lambda d: d.timestamp,  # stable: the stream's order within a millisecond
)


@pytest.fixture(scope="module")
def stack(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Stack]:
    s = Stack.create(
        Path(tmp_path_factory.mktemp("backtest-alt")),
        TRADER_SINK_ALT__BATCH_SECONDS="0.5",
        TRADER_SINK_ALT__SMALL_BATCH_ROWS="0",  # committed as it comes
    )
    s.trader("up", "--detach", "--services", "", check=True)  # the servers: the test runs the sink
    try:
        yield s
    finally:
        s.trader("down", timeout=120)


async def _publish(stack: Stack, data: list[AltDatum]) -> list[int]:
    nc = await connect_nats(stack.nats_url, "test")
    assert nc is not None
    js = nc.jetstream()
    seqs = [(await js.publish(f"alt.norm.{d.kind}", encode(d))).seq for d in data]
    await nc.close()
    return seqs


@pytest.fixture(scope="module")
def lake(stack: Stack) -> Lake:
    """Ticks written to market_ticks; the alternative data published and stored by sink-alt in two
    batches (two commits)."""
    lake = Lake(stack.settings())
    lake.append(MARKET_TICKS, lake_table(TICKS), app_id="test", version=1)
    sink = subprocess.Popen(
        [sys.executable, "-m", "trader", "service", "run", "sink-alt"],
        env=stack.env,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    try:
        for part in (PUBLISHED[:4], PUBLISHED[4:]):
            seqs = asyncio.run(_publish(stack, part))
            deadline = time.monotonic() + 120
            while lake.committed_version(ALT_DATA, "sink-alt") != seqs[-1]:
                assert sink.poll() is None, f"sink-alt exited {sink.returncode}"
                assert time.monotonic() < deadline, "sink-alt did not commit the data"
                time.sleep(0.3)
    finally:
        sink.terminate()
        sink.wait(30)
    return lake


def _settings(stack: Stack, symbols: list[str]) -> Settings:
    strategy = StrategyConfig(
        name="alt",
        kind="tests.unit.backtest.scripted:AltTrader",
        symbols=symbols,
        params={"threshold": "0.0005", "quantity": "0.5"},  # a tick's size: one fill each
    )
    return stack.settings().model_copy(update={"strategy": StrategySettings(strategies=[strategy])})


REQUEST = BacktestRequest(start_ms=T0, end_ms=END, equity_interval_ms=10_000)


def test_stored_data_come_back_into_on_alt_in_event_time_with_the_ticks(stack: Stack, lake: Lake) -> None:
    settings = _settings(stack, ["BTCUSDT"])
    engine = BacktestEngine(settings, strategies_for(settings, REQUEST), T0)
    info, data = run_module._alt_source(settings, engine, REQUEST)
    assert info is not None
    engine.start([])
    feed(engine, LakeTicks(settings).ticks(DataRange(T0, END, ("BTCUSDT",))), data)
    engine.finish()
    heard = engine.runners["alt"].strategy.heard  # type: ignore[attr-defined]
    got = [item for what, _, item in heard if what == "alt"]
    assert got == HEARD  # every field: decimals, times, venue symbol, side
    # The digits as published, less the trailing zeros (the lake keeps 18 places: docs/backtest.md).
    assert [str(d.value) for d in got] == ["0.000125", "0.003", "60001.25", "0.001", "68744.761", "-0.001"]
    assert str(got[0].predicted) == "-0.0000125"
    order = [(what, item.timestamp) for what, _, item in heard]
    at_3s = order.index(("alt", T0 + 3_000))
    assert order[at_3s - 1 : at_3s + 3] == [
        ("tick", T0 + 3_000),
        ("alt", T0 + 3_000),  # the funding, then the liquidation: the stream's order
        ("alt", T0 + 3_000),
        ("tick", T0 + 3_500),
    ]
    assert [item.kind for what, _, item in heard if what == "alt"][:2] == ["funding", "liquidation"]
    times = [at for _, at in order]
    assert times == sorted(times)


def test_a_backtest_trades_on_them_and_one_of_another_symbol_is_warned(
    stack: Stack, lake: Lake, tmp_path: Path
) -> None:
    result = run_backtest(_settings(stack, ["BTCUSDT"]), REQUEST, tmp_path / "btc")
    fills = pq.read_table(result.out_dir / "fills.parquet").to_pylist()
    assert [(f["timestamp"], f["side"]) for f in fills] == [(T0 + 30_000, "sell"), (T0 + 90_000, "buy")]
    info = json.loads((result.out_dir / "run.json").read_text())
    assert info["alt_data"]["data"] == len(HEARD)
    assert info["alt_data"]["table"].endswith("/alt_data")
    assert info["warnings"] == []

    other = _settings(stack, ["SOLUSDT"])
    lake.append(
        MARKET_TICKS,
        lake_table([t.__class__(**{**_fields(t), "symbol": "SOLUSDT"}) for t in TICKS], first_seq=10_000),
        app_id="test",
        version=2,
    )
    quiet = run_backtest(other, REQUEST, tmp_path / "sol")
    [warning] = quiet.warnings
    assert "no alternative data: alt takes it (on_alt), but of SOLUSDT, SOLUSDT-PERP" in warning
    assert "has none" in warning


def _fields(tick: MarketTick) -> dict[str, Any]:
    return {name: getattr(tick, name) for name in tick.__struct_fields__}
