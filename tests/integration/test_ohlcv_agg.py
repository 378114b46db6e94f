"""ohlcv-agg on the real servers: higher-timeframe bars equal, to the last digit, bars computed with
Polars from the lake's ticks; and a SIGKILL under load leaves nothing missing or doubled, in QuestDB or
on the bus.

The ticks are of two days ago and yesterday, across midnight UTC (so 1d bars meet a day boundary), with
quiet stretches (minutes and a whole quarter of an hour without a trade) and ticks published out of
order (late ticks: they amend 1m bars, and through them the higher bars, after those closed). The
normalizer's lateness is set to days for that; every series ends with a tick of now, which closes its
last historic minute.
"""

from __future__ import annotations

import asyncio
import json
import os
import random
import signal
import time
from collections.abc import Callable, Iterator
from decimal import ROUND_HALF_EVEN, Decimal, localcontext
from pathlib import Path

import httpx
import msgspec
import polars as pl
import pytest

from tests.stack_helpers import Stack
from trader.bus.connection import connect_nats
from trader.marketdata.bars import timeframe_ms
from trader.messages import Bar, MarketTick, encode

pytestmark = pytest.mark.integration

DAY_MS = 86_400_000
VENUE = "scripted"
TIMEFRAMES = ["5m", "15m", "1h", "4h", "1d"]
SERVICES = "normalizer,sink-ticks,ohlcv-agg"


@pytest.fixture(scope="module")
def stack(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Stack]:
    s = Stack.create(
        Path(tmp_path_factory.mktemp("ohlcv-agg")),
        TRADER_NORMALIZER__LATENESS_S=str(3 * 86_400),  # historic ticks are on time
        TRADER_OHLCV_AGG__AMEND_WINDOW_S=str(4 * 86_400),
        TRADER_OHLCV_AGG__SNAPSHOT_EVERY_S="1",
        TRADER_SINK_TICKS__BATCH_SECONDS="0.5",
        TRADER_SINK_TICKS__SMALL_BATCH_ROWS="0",
    )
    s.trader("up", "--detach", "--services", SERVICES, check=True)
    try:
        yield s
    finally:
        s.trader("down", timeout=120)


def _midnight_yesterday() -> int:
    now = time.time_ns() // 1_000_000
    return now - now % DAY_MS - DAY_MS


def _script(symbols: list[str], ticks_per_symbol: int, seed: int) -> list[MarketTick]:
    """Ticks from 2 h before yesterday's midnight to 2 h after, each series with its quiet stretches;
    a tenth are moved later in the publishing order (late ticks). Event times are unique per series,
    so open and close do not depend on the order of ties."""
    rng = random.Random(seed)
    midnight = _midnight_yesterday()
    out: list[MarketTick] = []
    for symbol in symbols:
        times = sorted(
            rng.sample(range(midnight - 2 * 3_600_000, midnight + 2 * 3_600_000), ticks_per_symbol)
        )
        quiet = midnight + rng.randrange(-3_600_000, 3_600_000)
        times = [t for t in times if not quiet <= t < quiet + 15 * 60_000]  # a quarter of an hour
        for t in times:
            price = Decimal(rng.randrange(1, 10**9)) / Decimal(10**4)
            size = Decimal(rng.randrange(1, 10**8)) / Decimal(10**8)
            out.append(
                MarketTick(
                    timestamp=t,
                    exchange=VENUE,
                    venue=VENUE,
                    symbol=symbol,
                    price=price,
                    size=size,
                    volume=size,
                )
            )
    order = sorted(range(len(out)), key=lambda i: out[i].timestamp)
    for i in rng.sample(range(len(order)), len(order) // 10):  # late: published a while after
        j = min(len(order) - 1, i + rng.randrange(20, 400))
        order.insert(j, order.pop(i))
    return [out[i] for i in order]


def _closers(symbols: list[str]) -> list[MarketTick]:
    """A tick of now per series: it closes the series' last historic minute (the normalizer's lateness
    is days, so nothing else would); its own minute stays open and never reaches ohlcv-agg."""
    now = time.time_ns() // 1_000_000
    one = Decimal(1)
    return [
        MarketTick(timestamp=now, exchange=VENUE, venue=VENUE, symbol=s, price=one, size=one, volume=one)
        for s in symbols
    ]


async def _publish(
    stack: Stack, ticks: list[MarketTick], *, during: Callable[[int], None] | None = None
) -> None:
    nc = await connect_nats(stack.nats_url, "test")
    assert nc is not None
    js = nc.jetstream()
    for n, tick in enumerate(ticks):
        await js.publish(f"market.tick.{tick.venue}.{tick.symbol}", encode(tick))
        if during is not None:
            during(n)
        if n % 500 == 499:
            await asyncio.sleep(0.2)  # a steady flow, not one burst
    await nc.close()


def _lake(stack: Stack) -> pl.DataFrame:
    settings = stack.settings()
    return pl.read_delta(
        f"{settings.lake_root}/market_ticks", storage_options=settings.delta_storage_options()
    ).filter(pl.col("venue") == VENUE)


def _expected(lake: pl.DataFrame, timeframe: str, before: int) -> dict[tuple, dict]:
    """The bars of ``timeframe`` from the lake's ticks (those before ``before``), with Polars."""
    size = timeframe_ms(timeframe)
    grouped = (
        lake.with_columns(ms=pl.col("ts").dt.epoch("ms"))
        .filter(pl.col("ms") < before)
        .with_columns(bucket=pl.col("ms") - pl.col("ms") % size)
        .sort(["ms", "stream_seq"])
        .group_by(["symbol", "bucket"], maintain_order=True)
        .agg(
            pl.col("price").first().alias("open"),
            pl.col("price").max().alias("high"),
            pl.col("price").min().alias("low"),
            pl.col("price").last().alias("close"),
            pl.col("size").sum().alias("volume"),
            pl.len().alias("trades"),
            pl.col("price").alias("prices"),
            pl.col("size").alias("sizes"),
        )
    )
    bars = {}
    for row in grouped.iter_rows(named=True):
        with localcontext() as ctx:
            ctx.prec = 60
            notional = sum((p * s for p, s in zip(row["prices"], row["sizes"], strict=True)), Decimal(0))
            vwap = notional / row["volume"]
        bars[(row["symbol"], row["bucket"])] = {
            "open": row["open"],
            "high": row["high"],
            "low": row["low"],
            "close": row["close"],
            "volume": row["volume"],
            "vwap": vwap.quantize(Decimal("1e-18"), rounding=ROUND_HALF_EVEN),
            "trades": row["trades"],
            "closed": True,
        }
    return bars


def _questdb(stack: Stack, timeframe: str, before: int) -> dict[tuple, dict]:
    response = httpx.get(
        f"http://127.0.0.1:{stack.ports['questdb_http']}/exec",
        params={"query": f"select * from ohlcv_{timeframe} where venue = '{VENUE}'"},
        timeout=30,
    ).json()
    names = [c["name"] for c in response["columns"]]
    bars = {}
    for values in response["dataset"]:
        row = dict(zip(names, values, strict=True))
        start = int(pl.Series([row["ts"]]).str.to_datetime(time_zone="UTC").dt.epoch("ms")[0])
        if start < before:
            bars[(row["symbol"], start)] = {
                **{k: Decimal(row[k]) for k in ("open", "high", "low", "close", "volume", "vwap")},
                "trades": row["trades"],
                "closed": row["closed"],
            }
    return bars


async def _bus(stack: Stack, timeframe: str) -> list[tuple[str, str, Bar]]:
    """Every message on ``market.bar.<tf>.scripted.>``, in stream order: (subject, msg id, bar). Read
    until the consumer has none pending (what the stream held when the last one was delivered), or none
    came in 3 s (the subject is empty)."""
    nc = await connect_nats(stack.nats_url, "test")
    assert nc is not None
    js = nc.jetstream()
    sub = await js.subscribe(f"market.bar.{timeframe}.{VENUE}.>", ordered_consumer=True)
    out = []
    decode = msgspec.json.Decoder(Bar).decode
    pending, timeout = 1, 3.0
    while pending:
        try:
            msg = await sub.next_msg(timeout=timeout)
        except TimeoutError:
            assert not out, f"{timeout} s without a message while {pending} were pending"
            break
        out.append((msg.subject, (msg.headers or {}).get("Nats-Msg-Id", ""), decode(msg.data)))
        pending, timeout = msg.metadata.num_pending, 30.0
    await nc.close()
    return out


def _as_row(bar: Bar) -> dict:
    return {
        "open": bar.open,
        "high": bar.high,
        "low": bar.low,
        "close": bar.close,
        "volume": bar.volume,
        "vwap": bar.vwap,
        "trades": bar.trades,
        "closed": bar.closed,
    }


def _check(stack: Stack, symbols: list[str], ticks: int) -> None:
    """QuestDB and the bus hold exactly the bars of the lake's ticks, for every timeframe."""
    deadline = time.monotonic() + 120
    while _lake(stack).filter(pl.col("symbol").is_in(symbols)).height < ticks:
        assert time.monotonic() < deadline, "sink-ticks did not store every tick"
        time.sleep(1)
    lake = _lake(stack).filter(pl.col("symbol").is_in(symbols))
    before = _midnight_yesterday() + DAY_MS  # the closers' bars (today) are still open
    for timeframe in TIMEFRAMES:
        expected = _expected(lake, timeframe, before)
        assert expected, "no bars to compare"
        deadline = time.monotonic() + 90
        while True:
            actual = {k: v for k, v in _questdb(stack, timeframe, before).items() if k[0] in symbols}
            if actual == expected or time.monotonic() > deadline:
                break
            time.sleep(1)
        assert set(actual) == set(expected), timeframe
        for key, bar in expected.items():
            assert actual[key] == bar, (timeframe, key)
        # Rows are written and bars published at once: the bus may be a moment behind QuestDB.
        deadline = time.monotonic() + 30
        while True:
            messages = [m for m in asyncio.run(_bus(stack, timeframe)) if m[2].symbol in symbols]
            latest = {(b.symbol, b.start): _as_row(b) for _, _, b in messages}
            if latest == expected or time.monotonic() > deadline:
                break
            time.sleep(0.5)
        ids = [msg_id for _, msg_id, _ in messages]
        assert len(ids) == len(set(ids)), f"{timeframe}: a bar version stored twice on the bus"
        versions = {(b.symbol, b.start, b.trades) for _, _, b in messages}
        assert len(versions) == len(messages), f"{timeframe}: one version in two messages"
        assert latest == expected, f"{timeframe}: the latest bar published differs from the lake's"


def test_higher_bars_equal_bars_from_the_lake(stack: Stack) -> None:
    symbols = ["BTCUSDT", "ETHUSDT"]
    ticks = _script(symbols, 1500, seed=1)
    asyncio.run(_publish(stack, [*ticks, *_closers(symbols)]))
    _check(stack, symbols, len(ticks) + len(symbols))
    # `trader bars` shows the same bars, the latest, oldest first.
    shown = stack.trader(
        "bars", "ethusdt", "--tf", "1h", "--venue", VENUE, "--last", "3", "--json", check=True
    )
    rows = json.loads(shown.stdout)
    expected = _expected(
        _lake(stack).filter(pl.col("symbol") == "ETHUSDT"), "1h", _midnight_yesterday() + DAY_MS
    )
    latest = [bar for _, bar in sorted(expected.items())[-3:]]
    prices = ("open", "high", "low", "close")
    assert [{**{k: Decimal(r[k]) for k in prices}, "trades": r["trades"]} for r in rows] == [
        {**{k: b[k] for k in prices}, "trades": b["trades"]} for b in latest
    ]


def _pid(stack: Stack, name: str) -> int:
    return next(c["pid"] for c in stack.status()["components"] if c["name"] == name)


def test_sigkill_under_load_loses_and_doubles_nothing(stack: Stack) -> None:
    symbols = [f"S{n}USDT" for n in range(12)]
    ticks = _script(symbols, 1500, seed=2)
    kills = {len(ticks) // 3, 2 * len(ticks) // 3}
    killed = []

    # Each restarted process logs its intake's start once it has loaded (seconds on a loaded machine).
    def intake_starts() -> list[dict]:
        log = (stack.data_dir / "logs" / "ohlcv-agg.log").read_text()
        return [msgspec.json.decode(line) for line in log.splitlines() if '"intake.started"' in line]

    def kill(n: int) -> None:
        if n in kills:
            pid = _pid(stack, "ohlcv-agg")
            # Not yet restarted after the first kill, or not yet reading: skipped (a process killed
            # before its intake starts logs no start, and resumes nothing).
            if pid and pid not in killed and len(intake_starts()) >= 1 + len(killed):
                os.kill(pid, signal.SIGKILL)
                killed.append(pid)

    asyncio.run(_publish(stack, [*ticks, *_closers(symbols)], during=kill))
    assert killed, "ohlcv-agg was never killed"
    _check(stack, symbols, len(ticks) + len(symbols))
    deadline = time.monotonic() + 60
    while _pid(stack, "ohlcv-agg") in killed:  # restarted by the supervisor
        assert time.monotonic() < deadline, "ohlcv-agg was not restarted"
        time.sleep(0.5)

    # Each restart resumed from a snapshot (not from the start of the stream) and replayed the rest.
    deadline = time.monotonic() + 120
    while len(starts := intake_starts()) < 1 + len(killed) and time.monotonic() < deadline:
        time.sleep(0.5)
    assert len(starts) >= 1 + len(killed)
    assert [s["snapshot_problem"] for s in starts[-len(killed) :]] == [None] * len(killed)
    assert all(s["start_seq"] > 1 for s in starts[-len(killed) :])
