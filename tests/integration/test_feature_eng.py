"""feature-eng and sink-features on the real servers: closed bars in, and the features of every bar on the
bus, in QuestDB ``features_1m`` and in the lake's ``features`` table, equal to the pure engine's over
the same bars; and a SIGKILL of feature-eng under load (twice) leaves nothing missing and nothing
doubled in any of the three, with the very numbers of an uninterrupted run (the snapshot resumes the
running state exactly, and the bars that came while it was down are computed at its restart)."""

from __future__ import annotations

import asyncio
import json
import math
import os
import random
import signal
import time
from collections.abc import Callable, Iterator
from decimal import Decimal
from pathlib import Path

import httpx
import msgspec
import polars as pl
import pytest

from tests.stack_helpers import Stack
from trader.analytics.features.config import FeatureEngSettings
from trader.analytics.features.engine import FeatureEngine
from trader.bus.connection import connect_nats
from trader.bus.streams import bar_subject
from trader.messages import Bar, Features, encode

pytestmark = pytest.mark.integration

VENUE = "scripted"
MINUTE = 60_000
SERVICES = "feature-eng,sink-features"


@pytest.fixture(scope="module")
def stack(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Stack]:
    s = Stack.create(
        Path(tmp_path_factory.mktemp("feature-eng")),
        TRADER_FEATURE_ENG__TIMEFRAMES='["1m"]',
        TRADER_FEATURE_ENG__SNAPSHOT_EVERY_S="1",
        TRADER_SINK_FEATURES__BATCH_SECONDS="0.5",
        TRADER_SINK_FEATURES__SMALL_BATCH_ROWS="0",
    )
    s.trader("up", "--detach", "--services", SERVICES, check=True)
    try:
        yield s
    finally:
        s.trader("down", timeout=120)


def _bars(symbols: list[str], count: int, seed: int) -> list[Bar]:
    """``count`` 1m bars per symbol, a random walk each, yesterday; interleaved as a feed gives them."""
    rng = random.Random(seed)
    now = time.time_ns() // 1_000_000
    first = now - now % 86_400_000 - 86_400_000
    out: list[Bar] = []
    prices = {s: Decimal(rng.randrange(100, 100_000)) for s in symbols}
    for i in range(count):
        for symbol in symbols:
            open_ = prices[symbol]
            close = max(
                Decimal("0.01"), (open_ * Decimal(str(1 + rng.gauss(0, 0.003)))).quantize(Decimal("0.01"))
            )
            prices[symbol] = close
            high, low = max(open_, close) + Decimal("0.5"), min(open_, close) - Decimal("0.01")
            out.append(
                Bar(
                    venue=VENUE,
                    symbol=symbol,
                    timeframe="1m",
                    start=first + i * MINUTE,
                    open=open_,
                    high=high,
                    low=max(low, Decimal("0.01")),
                    close=close,
                    volume=Decimal(rng.randrange(1, 10**6)) / 1000,
                    vwap=((high + low) / 2).quantize(Decimal("0.01")),
                    trades=rng.randrange(1, 100),
                )
            )
    return out


def _expected(bars: list[Bar]) -> dict[tuple[str, int], Features]:
    engine = FeatureEngine(FeatureEngSettings(timeframes=["1m"]))
    out = {}
    for bar in bars:
        features = engine.on_bar(bar)
        assert features is not None
        out[(bar.symbol, bar.start)] = features
    return out


async def _publish(stack: Stack, bars: list[Bar], during: Callable[[int], None] | None = None) -> None:
    nc = await connect_nats(stack.nats_url, "test")
    assert nc is not None
    js = nc.jetstream()
    for n, bar in enumerate(bars):
        msg_id = f"{bar.venue}:{bar.symbol}:{bar.timeframe}:{bar.start}:{bar.trades}"
        await js.publish(bar_subject("1m", VENUE, bar.symbol), encode(bar), headers={"Nats-Msg-Id": msg_id})
        if during is not None:
            during(n)
        if n % 200 == 199:
            await asyncio.sleep(0.1)  # a steady flow
    await nc.close()


async def _bus(stack: Stack, symbols: list[str]) -> list[tuple[str, Features]]:
    """Every features message of ``symbols`` in FEATURES, in stream order: (msg id, features). Read
    until the consumer has none pending (what the stream held when the last one was delivered), or none
    came in 3 s (the subject is empty)."""
    nc = await connect_nats(stack.nats_url, "test")
    assert nc is not None
    js = nc.jetstream()
    sub = await js.subscribe(f"market.feature.1m.{VENUE}.>", ordered_consumer=True)
    decode = msgspec.json.Decoder(Features).decode
    out = []
    pending, timeout, read = 1, 3.0, 0
    while pending:
        try:
            msg = await sub.next_msg(timeout=timeout)
        except TimeoutError:
            assert not read, f"{timeout} s without a message while {pending} were pending"
            break
        read += 1
        features = decode(msg.data)
        if features.symbol in symbols:
            out.append(((msg.headers or {}).get("Nats-Msg-Id", ""), features))
        pending, timeout = msg.metadata.num_pending, 30.0
    await nc.close()
    return out


def _questdb(stack: Stack, symbols: list[str]) -> dict[tuple[str, int], dict]:
    names = ", ".join(f"'{s}'" for s in symbols)
    response = httpx.get(
        f"http://127.0.0.1:{stack.ports['questdb_http']}/exec",
        params={"query": f"select * from features_1m where venue = '{VENUE}' and symbol in ({names})"},
        timeout=30,
    ).json()
    columns = [c["name"] for c in response["columns"]]
    rows = {}
    for values in response["dataset"]:
        row = dict(zip(columns, values, strict=True))
        start = int(pl.Series([row.pop("ts")]).str.to_datetime(time_zone="UTC").dt.epoch("ms")[0])
        rows[(row.pop("symbol"), start)] = row
    return rows


def _lake(stack: Stack, symbols: list[str]) -> pl.DataFrame:
    settings = stack.settings()
    try:
        table = pl.read_delta(
            f"{settings.lake_root}/features", storage_options=settings.delta_storage_options()
        )
    except Exception:  # not written yet
        return pl.DataFrame()
    return table.filter((pl.col("venue") == VENUE) & pl.col("symbol").is_in(symbols))


def _until(check: Callable[[], bool], what: str, timeout: float = 120) -> None:
    deadline = time.monotonic() + timeout
    while not check():
        assert time.monotonic() < deadline, f"timed out waiting for {what}"
        time.sleep(0.5)


def _same(a: float | None, b: float | None) -> bool:
    if a is None or b is None:
        return a is None and b is None
    return math.isclose(a, b, rel_tol=1e-12, abs_tol=1e-300)


def _check(stack: Stack, bars: list[Bar], symbols: list[str]) -> None:
    expected = _expected(bars)
    # The bus: one message per bar, with the pure engine's numbers, exactly.
    messages: list[tuple[str, Features]] = []

    def all_on_the_bus() -> bool:
        nonlocal messages
        messages = asyncio.run(_bus(stack, symbols))
        return len(messages) >= len(expected)

    _until(all_on_the_bus, "every bar's features on the bus")
    ids = [msg_id for msg_id, _ in messages]
    assert len(ids) == len(set(ids)) == len(expected), "features missing or doubled on the bus"
    assert {(f.symbol, f.start): f for _, f in messages} == expected
    # QuestDB: a row per bar, the values the bus has (null where None).
    _until(lambda: len(_questdb(stack, symbols)) >= len(expected), "every row in QuestDB")
    rows = _questdb(stack, symbols)
    assert set(rows) == set(expected)
    for key, features in expected.items():
        assert rows[key]["bars"] == features.bars
        for name, value in features.values.items():
            assert _same(rows[key][name], value), (key, name, rows[key][name], value)
    # The lake: a row per (bar, feature with a value), exactly once.
    wanted = {
        (f.symbol, f.start, name): value
        for f in expected.values()
        for name, value in f.values.items()
        if value is not None
    }
    _until(lambda: _lake(stack, symbols).height >= len(wanted), "every feature in the lake")
    lake = _lake(stack, symbols).with_columns(ms=pl.col("ts").dt.epoch("ms"))
    assert lake.height == len(wanted), "features missing or doubled in the lake"
    got = {(r["symbol"], r["ms"], r["feature"]): r["value"] for r in lake.iter_rows(named=True)}
    assert got == wanted


def test_bars_in_features_out_on_the_bus_in_questdb_and_in_the_lake(stack: Stack) -> None:
    symbols = ["BTCUSDT", "ETHUSDT"]
    bars = _bars(symbols, 120, seed=1)
    asyncio.run(_publish(stack, bars))
    _check(stack, bars, symbols)
    health = httpx.get(f"http://127.0.0.1:{stack.ports['feature_eng']}/health", timeout=10).json()
    assert health["series"] >= 2
    # trader features: the latest rows of QuestDB, oldest first, every digit in JSON.
    shown = stack.trader("features", "BTCUSDT", "--venue", VENUE, "--last", "3", "--json", check=True)
    rows = json.loads(shown.stdout)
    latest = sorted((f for f in _expected(bars).values() if f.symbol == "BTCUSDT"), key=lambda f: f.start)[
        -3:
    ]
    assert [r["bars"] for r in rows] == [f.bars for f in latest]
    for row, features in zip(rows, latest, strict=True):
        for name, value in features.values.items():
            assert _same(row[name], value), (name, row[name], value)


def _pid(stack: Stack, name: str) -> int:
    return next(c["pid"] for c in stack.status()["components"] if c["name"] == name)


def test_sigkill_under_load_loses_and_doubles_nothing(stack: Stack) -> None:
    symbols = [f"K{n}USDT" for n in range(8)]
    bars = _bars(symbols, 300, seed=2)
    kills = {len(bars) // 3, 2 * len(bars) // 3}
    killed: list[int] = []

    def kill(n: int) -> None:
        if n in kills:  # the one before restarted first (the supervisor's backoff), then killed again
            _until(lambda: _pid(stack, "feature-eng") not in (*killed, 0, None), "feature-eng restarted", 60)
            pid = _pid(stack, "feature-eng")
            os.kill(pid, signal.SIGKILL)
            killed.append(pid)

    asyncio.run(_publish(stack, bars, during=kill))
    assert len(killed) == 2, "feature-eng was not killed twice"
    _check(stack, bars, symbols)
    _until(lambda: _pid(stack, "feature-eng") not in killed, "feature-eng restarted", 60)
