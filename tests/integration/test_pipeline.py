"""The market-data pipeline on the real servers: exactly once through crashes, exact bars, dead letters.

One scenario, because each part needs the same run: a feed of several symbols with ticks inside and
beyond the lateness window, a corpus of hostile messages mixed in, each consumer killed with SIGKILL in
the middle, then a quiet period. Afterwards:
- the lake holds every valid tick and alternative datum exactly once;
- every hostile message is in the dead letters, with the right reason, and nothing valid is;
- the bars in QuestDB equal, to the last digit, bars computed with Polars from the ticks in the lake.
"""

from __future__ import annotations

import asyncio
import json
import os
import random
import signal
import time
from collections.abc import Iterator
from decimal import ROUND_HALF_EVEN, Decimal, localcontext
from pathlib import Path

import httpx
import polars as pl
import pyarrow.fs as pafs
import pytest

from tests.stack_helpers import Stack
from trader.bus import dlq
from trader.bus.connection import connect_nats
from trader.messages import AltDatum, MarketTick, encode
from trader.stack.seaweedfs import s3_filesystem

pytestmark = pytest.mark.integration

LATENESS_S = 2
SYMBOLS = ["BTCUSDT", "ETHUSDT", "SOLUSDT"]
SERVICES = ["normalizer", "sink-ticks", "sink-alt"]
TIMEFRAMES = ["1s", "1m"]

# (bytes, field the refusal must name, text its reason must contain)
HOSTILE_TICKS = [
    (b"{not json", "body", "malformed JSON"),
    (b"", "body", "malformed JSON"),
    (b"[1,2,3]", "body", "expected a JSON object"),
    (b"\xff\xfe\x00garbage", "body", "malformed JSON"),
    (b'{"timestamp": 1, "venue": "x", "symbol": "BTCUSDT", "price": 1, "size": 1}', "timestamp", "outside"),
    (
        b'{"timestamp": "tomorrow", "venue": "x", "symbol": "BTCUSDT", "price": 1, "size": 1}',
        "timestamp",
        "ISO",
    ),
    (b'{"venue": "x", "symbol": "BTCUSDT", "price": 1, "size": 1}', "timestamp", "missing"),
    (b'{"timestamp": 1732406400000, "symbol": "BTCUSDT", "price": 1, "size": 1}', "venue", "missing"),
    (
        b'{"timestamp": 1732406400000, "venue": "x", "symbol": "BTCUSDT", "price": 0, "size": 1}',
        "price",
        "positive",
    ),
    (
        b'{"timestamp": 1732406400000, "venue": "x", "symbol": "BTCUSDT", "price": "NaN", "size": 1}',
        "price",
        "finite",
    ),
    (
        b'{"timestamp": 1732406400000, "venue": "x", "symbol": "BTCUSDT", "price": 1, "size": -3}',
        "size",
        "negative",
    ),
    (
        b'{"timestamp": 1732406400000, "venue": "x", "symbol": "BTCUSDT", "price": 5, "size": 1, '
        b'"bid": 6, "ask": 5}',
        "bid",
        "above ask",
    ),
    (
        b'{"timestamp": 1732406400000, "venue": "x", "symbol": "BTC.USDT", "price": 1, "size": 1}',
        "symbol",
        "not a",
    ),
    (
        b'{"timestamp": 1732406400000, "venue": "x", "symbol": "BTCUSDT", "price": [1], "size": 1}',
        "price",
        "array",
    ),
    (
        b'{"timestamp": 1732406400000, "venue": "x", "symbol": "BTCUSDT", "price": 1e30, "size": 1}',
        "price",
        "range",
    ),
    (
        json.dumps(
            {
                "timestamp": 1732406400000,
                "venue": "x" * 10,
                "symbol": "BTCUSDT",
                "price": 1,
                "size": 1,
                "pad": "A" * 100_000,
            }
        ).encode()[:50_000],
        "body",
        "malformed JSON",
    ),
]
HOSTILE_ALT = [
    (b'{"kind": "funding_rate"}', "timestamp", "missing"),
    (
        b'{"timestamp": 1732406400000, "kind": "Funding Rate", "source": "t", "value": 1}',
        "kind",
        "not a kind",
    ),
    (
        b'{"timestamp": 1732406400000, "kind": "sentiment", "source": "t", "value": "high"}',
        "value",
        "decimal",
    ),
]


@pytest.fixture(scope="module")
def pipeline(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Stack]:
    stack = Stack.create(
        Path(tmp_path_factory.mktemp("pipeline")),
        TRADER_NORMALIZER__LATENESS_S=str(LATENESS_S),
        TRADER_NORMALIZER__CLOCK_SAFETY_S="0.5",
        TRADER_SINK_TICKS__BATCH_SECONDS="0.5",
        TRADER_SINK_ALT__BATCH_SECONDS="0.5",
        # The tests' ticks are a trickle: committed as they come, not every 30 s.
        TRADER_SINK_TICKS__SMALL_BATCH_ROWS="0",
        TRADER_SINK_ALT__SMALL_BATCH_ROWS="0",
        TRADER_SUPERVISOR__RESTART_BACKOFF_INITIAL_S="0.2",
    )
    stack.trader("up", "--detach", "--services", ",".join(SERVICES), check=True)
    try:
        yield stack
    finally:
        stack.trader("down", timeout=120)


def _pid(stack: Stack, name: str) -> int:
    return next(c["pid"] for c in stack.status()["components"] if c["name"] == name)


async def _feed(stack: Stack) -> dict[str, object]:
    """Publish for ~9 s: valid ticks (some in the lateness window, some beyond), alternative data, the
    hostile corpus; kill each consumer once along the way. Returns what was published."""
    rng = random.Random(7)
    nc = await connect_nats(stack.nats_url, "test")
    assert nc is not None
    js = nc.jetstream()
    prices = {s: Decimal(p) for s, p in zip(SYMBOLS, ["60000.00", "3000.00", "150.00"], strict=True)}
    trade_ids = dict.fromkeys(SYMBOLS, 0)
    published: dict[str, object] = {
        "ticks": {},
        "late": set(),
        "alt": set(),
        "hostile_ticks": {},
        "hostile_alt": {},
    }
    kills = {150: "sink-ticks", 300: "normalizer", 450: "sink-alt"}
    hostile = iter(HOSTILE_TICKS)
    hostile_alt = iter(HOSTILE_ALT)
    for step in range(600):
        now = time.time_ns() // 1_000_000
        symbol = SYMBOLS[step % 3]
        kind = rng.random()
        if kind < 0.05:
            ts = now - 10_000  # far beyond the window: must be refused as late
        elif kind < 0.15:
            ts = now - rng.randint(900, 1_400)  # inside the window: amends an already closed 1s bar
        else:
            ts = now
        prices[symbol] += Decimal(rng.randint(-20, 20)) / 100
        trade_ids[symbol] += 1
        tick = MarketTick(
            timestamp=ts,
            exchange="test",
            venue="test",
            symbol=symbol,
            price=prices[symbol],
            size=Decimal(rng.randint(1, 5000)) / 1000,
            volume=Decimal(0),
            trade_id=str(trade_ids[symbol]),
            bid=prices[symbol] - Decimal("0.01"),
            ask=prices[symbol] + Decimal("0.01"),
        )
        tick = MarketTick(**{**{f: getattr(tick, f) for f in tick.__struct_fields__}, "volume": tick.size})
        headers = {"Nats-Msg-Id": f"test:{symbol}:{tick.trade_id}"}
        ack = await js.publish(f"market.tick.test.{symbol}", encode(tick), headers=headers)
        published["ticks"][ack.seq] = tick  # type: ignore[index]
        if ts == now - 10_000:
            published["late"].add(ack.seq)  # type: ignore[union-attr]
        if step % 10 == 0:
            datum = AltDatum(
                timestamp=now,
                kind="funding_rate",
                source="test",
                symbol=symbol,
                value=Decimal(rng.randint(-100, 100)) / 1_000_000,
                unit="rate",
            )
            alt_ack = await js.publish("alt.norm.funding_rate", encode(datum))
            published["alt"].add(alt_ack.seq)  # type: ignore[union-attr]
        if step % 25 == 5:
            item = next(hostile, None)
            if item is not None:
                ack = await js.publish("market.tick.test.BTCUSDT", item[0], headers={"X-Origin": "corpus"})
                published["hostile_ticks"][ack.seq] = item  # type: ignore[index]
            alt_item = next(hostile_alt, None)
            if alt_item is not None:
                ack = await js.publish("alt.norm.funding_rate", alt_item[0])
                published["hostile_alt"][ack.seq] = alt_item  # type: ignore[index]
        if step in kills:
            os.kill(_pid(stack, kills[step]), signal.SIGKILL)
        await asyncio.sleep(0.015)
    await nc.close()
    return published


def _wait_for(predicate, timeout: float, what: str) -> None:
    deadline = time.monotonic() + timeout
    while not predicate():
        assert time.monotonic() < deadline, what
        time.sleep(0.5)


def _lake(stack: Stack, table: str) -> pl.DataFrame:
    settings = stack.settings()
    return pl.read_delta(f"{settings.lake_root}/{table}", storage_options=settings.delta_storage_options())


@pytest.fixture(scope="module")
def run(pipeline: Stack) -> dict[str, object]:
    published = asyncio.run(_feed(pipeline))
    ticks: dict[int, MarketTick] = published["ticks"]  # type: ignore[assignment]
    # Everything consumed and every bar final: the lake has all rows, the stack is quiet.
    _wait_for(lambda: _lake(pipeline, "market_ticks").height >= len(ticks), 60, "sink-ticks did not catch up")
    _wait_for(lambda: _lake(pipeline, "alt_data").height >= len(published["alt"]), 60, "sink-alt behind")  # type: ignore[arg-type]
    time.sleep(LATENESS_S + 2.5)
    restarts = {c["name"]: c["restarts"] for c in pipeline.status()["components"]}
    return {**published, "restarts": restarts}


def test_each_consumer_was_killed_and_restarted(run: dict) -> None:
    for name in SERVICES:
        assert run["restarts"][name] == 1, run["restarts"]


def test_lake_holds_every_valid_tick_exactly_once(pipeline: Stack, run: dict) -> None:
    lake = _lake(pipeline, "market_ticks")
    seqs = lake.get_column("stream_seq").to_list()
    assert len(seqs) == len(set(seqs)), "a tick is in the lake twice"
    assert set(seqs) == set(run["ticks"]), "the lake and the valid ticks published differ"
    by_seq = {row["stream_seq"]: row for row in lake.iter_rows(named=True)}
    for seq, tick in run["ticks"].items():
        row = by_seq[seq]
        assert row["price"] == tick.price
        assert row["size"] == tick.size
        assert row["trade_id"] == tick.trade_id
        assert int(row["ts"].timestamp() * 1000) == tick.timestamp
        assert row["side"] is None  # a missing value stays null
        assert row["dt"] == time.strftime("%Y-%m-%d", time.gmtime(tick.timestamp / 1000))


def test_lake_holds_every_alt_datum_exactly_once(pipeline: Stack, run: dict) -> None:
    seqs = _lake(pipeline, "alt_data").get_column("stream_seq").to_list()
    assert sorted(seqs) == sorted(run["alt"])


async def _dead_letters(stack: Stack) -> list[tuple[str, int, str, bytes]]:
    nc = await connect_nats(stack.nats_url, "test")
    assert nc is not None
    js = nc.jetstream()
    state = (await js.stream_info("DLQ")).state
    letters = []
    for seq in range(state.first_seq, state.last_seq + 1):
        msg = await js.get_msg("DLQ", seq)
        h = msg.headers or {}
        letters.append((h[dlq.SERVICE], int(h[dlq.STREAM_SEQ]), h[dlq.REASON], msg.data or b""))
    await nc.close()
    return letters


def test_hostile_input_lands_in_dead_letters_with_reasons(pipeline: Stack, run: dict) -> None:
    letters = asyncio.run(_dead_letters(pipeline))
    seen = {(service, seq): (reason, data) for service, seq, reason, data in letters}
    assert len(seen) == len(letters), "a message was dead-lettered twice by one service"
    for services, corpus in (
        (("normalizer", "sink-ticks"), run["hostile_ticks"]),
        (("sink-alt",), run["hostile_alt"]),
    ):
        for seq, (data, field, text) in corpus.items():
            for service in services:
                reason, original = seen[(service, seq)]
                assert original == data, "the dead letter must carry the original bytes"
                assert reason.startswith(f"{field}:"), (service, data[:60], reason)
                assert text in reason, (service, data[:60], reason)
    late = {
        seq
        for (service, seq), (reason, _) in seen.items()
        if service == "normalizer" and reason.startswith("late")
    }
    assert late == run["late"]
    valid_refused = {seq for (service, seq) in seen if service == "sink-ticks"} & set(run["ticks"])
    assert valid_refused == set(), "a valid tick was refused by sink-ticks"


def _expected_bars(lake: pl.DataFrame, timeframe_ms: int) -> dict[tuple, dict]:
    """Bars from the lake's ticks, computed here without the normalizer's code."""
    accepted = (
        lake.filter((pl.col("ingest_ts") - pl.col("ts")).dt.total_milliseconds() <= LATENESS_S * 1000)
        .with_columns(
            ms=pl.col("ts").dt.epoch("ms"),
        )
        .with_columns(bucket=pl.col("ms") - pl.col("ms") % timeframe_ms)
        .sort(["ms", "stream_seq"])
    )
    grouped = accepted.group_by(["venue", "symbol", "bucket"], maintain_order=True).agg(
        pl.col("price").first().alias("open"),
        pl.col("price").max().alias("high"),
        pl.col("price").min().alias("low"),
        pl.col("price").last().alias("close"),
        pl.col("size").sum().alias("volume"),
        pl.len().alias("trades"),
        pl.col("price").alias("prices"),
        pl.col("size").alias("sizes"),
    )
    bars = {}
    for row in grouped.iter_rows(named=True):
        with localcontext() as ctx:
            ctx.prec = 60
            notional = sum((p * s for p, s in zip(row["prices"], row["sizes"], strict=True)), Decimal(0))
            vwap = (notional / row["volume"]) if row["volume"] else row["close"]
        bars[(row["venue"], row["symbol"], row["bucket"])] = {
            "open": row["open"],
            "high": row["high"],
            "low": row["low"],
            "close": row["close"],
            "volume": row["volume"],
            "vwap": vwap.quantize(Decimal("1e-18"), rounding=ROUND_HALF_EVEN),
            "trades": row["trades"],
        }
    return bars


def _questdb_bars(stack: Stack, timeframe: str) -> dict[tuple, dict]:
    response = httpx.get(
        f"http://127.0.0.1:{stack.ports['questdb_http']}/exec",
        params={"query": f"select * from ohlcv_{timeframe} where venue = 'test'"},
    ).json()
    names = [c["name"] for c in response["columns"]]
    bars = {}
    for values in response["dataset"]:
        row = dict(zip(names, values, strict=True))
        start = int(pl.Series([row["ts"]]).str.to_datetime(time_zone="UTC").dt.epoch("ms")[0])
        bars[(row["venue"], row["symbol"], start)] = {
            **{k: Decimal(row[k]) for k in ("open", "high", "low", "close", "volume", "vwap")},
            "trades": row["trades"],
        }
    return bars


@pytest.mark.parametrize(("timeframe", "size_ms"), [("1s", 1_000), ("1m", 60_000)])
def test_bars_in_questdb_equal_bars_from_the_lake(
    pipeline: Stack, run: dict, timeframe: str, size_ms: int
) -> None:
    expected = _expected_bars(_lake(pipeline, "market_ticks").filter(pl.col("venue") == "test"), size_ms)
    assert expected, "no bars to compare"
    deadline = time.monotonic() + 15  # WAL tables apply a moment after the write
    while (actual := _questdb_bars(pipeline, timeframe)) != expected and time.monotonic() < deadline:
        time.sleep(0.5)
    assert set(actual) == set(expected)
    for key, bar in expected.items():
        assert actual[key] == bar, key


def test_closed_bars_are_published_on_the_bars_stream(pipeline: Stack, run: dict) -> None:
    async def last_bar() -> dict:
        nc = await connect_nats(pipeline.nats_url, "test")
        assert nc is not None
        msg = await nc.jetstream().get_last_msg("BARS", "market.bar.1s.test.BTCUSDT")
        await nc.close()
        return json.loads(msg.data)

    bar = asyncio.run(last_bar())
    assert bar["venue"] == "test"
    assert bar["timeframe"] == "1s"
    assert bar["closed"] is True


# The data commands, on the same run: they come last, since compaction and replay change the state.


def _cli_json(stack: Stack, *args: str) -> list[dict]:
    return json.loads(stack.trader(*args, "--json", check=True).stdout)


def test_query_runs_sql_on_questdb(pipeline: Stack, run: dict) -> None:
    rows = _cli_json(
        pipeline, "query", "select symbol, count() n from ohlcv_1s where venue = 'test' order by 1"
    )
    assert [r["symbol"] for r in rows] == sorted(SYMBOLS)
    assert sum(r["n"] for r in rows) == len(_questdb_bars(pipeline, "1s"))
    failed = pipeline.trader("query", "select * from no_such_table")
    assert failed.returncode == 1
    assert "no_such_table" in failed.stderr


def test_lake_info_sql_and_compact_agree_with_the_lake(pipeline: Stack, run: dict) -> None:
    height = _lake(pipeline, "market_ticks").height
    info = {r["table"]: r for r in _cli_json(pipeline, "lake", "info")}
    assert info["market_ticks"]["rows"] == height
    assert info["alt_data"]["rows"] == len(run["alt"])
    counted = _cli_json(
        pipeline, "lake", "sql", "select count(*) as n from market_ticks where venue = 'test'"
    )
    assert counted == [{"n": len(run["ticks"])}]
    compacted = {r["table"]: r for r in _cli_json(pipeline, "lake", "compact")}
    assert compacted["market_ticks"]["numFilesAdded"] >= 1
    after = {r["table"]: r for r in _cli_json(pipeline, "lake", "info")}
    assert after["market_ticks"]["rows"] == height, "compaction changed the rows"
    assert after["market_ticks"]["files"] < info["market_ticks"]["files"]
    seqs = _lake(pipeline, "market_ticks").get_column("stream_seq").to_list()
    assert len(seqs) == len(set(seqs))
    # The files compaction replaced are listed, then deleted; the table reads the same afterwards.
    listed = _cli_json(pipeline, "lake", "vacuum", "--retention-hours", "0")
    stale = {r["dry_run"] for r in listed if r["table"] == "market_ticks"}
    assert len(stale) >= info["market_ticks"]["files"] - after["market_ticks"]["files"]
    deleted = _cli_json(pipeline, "lake", "vacuum", "--retention-hours", "0", "--apply")
    assert {r["deleted"] for r in deleted if r["table"] == "market_ticks"} == stale
    settings = pipeline.settings()
    selector = pafs.FileSelector(f"{settings.s3_bucket}/lake/market_ticks", recursive=True)
    in_storage = {f.path for f in s3_filesystem(settings).get_file_info(selector)}
    assert not {p for p in in_storage if any(p.endswith(name) for name in stale)}, "a vacuumed file is left"
    assert sorted(_lake(pipeline, "market_ticks").get_column("stream_seq").to_list()) == sorted(seqs)


def test_dlq_list_shows_reasons_and_replay_sends_messages_back(pipeline: Stack, run: dict) -> None:
    listed = _cli_json(pipeline, "dlq", "list", "--service", "sink-alt")
    assert {r["stream_seq"] for r in listed} == set(run["hostile_alt"])
    for r in listed:
        _data, field, text = run["hostile_alt"][r["stream_seq"]]
        assert r["reason"].startswith(f"{field}:")
        assert text in r["reason"]
    dry = pipeline.trader("dlq", "replay", "--service", "sink-alt", "--dry-run", check=True)
    assert f"{len(listed)} message(s) would be replayed" in dry.stderr
    pipeline.trader("dlq", "replay", "--service", "sink-alt", check=True)
    # Still malformed, so sink-alt refuses the replayed copies again: new dead letters, new sequences.
    deadline = time.monotonic() + 30
    while True:
        again = _cli_json(pipeline, "dlq", "list", "--service", "sink-alt")
        if len(again) == len(listed) or time.monotonic() > deadline:
            break
        time.sleep(0.5)
    assert len(again) == len(listed)
    assert {r["stream_seq"] for r in again}.isdisjoint(run["hostile_alt"])
    assert sorted(r["reason"] for r in again) == sorted(r["reason"] for r in listed)
