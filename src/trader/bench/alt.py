"""`trader bench alt`: how fast the venues' alternative data is read, and how soon it is stored.

- Parsers, in process (nothing else runs): for each venue, frames per second its parser reads, on a mix
  of its documented frames (funding with mark and index, open interest, liquidations); and frames per
  second through the whole feed path of live-gateway (parse, unify, the strict check of sink-alt's
  decoder, encode, the duplicate filter), what bounds one gateway process.
- End to end, on the running stack (`trader up --detach --services sink-alt`): a Binance mark-price frame
  is read by a feed in this process and published to ALT_DATA as live-gateway does; the delay from the
  frame to sink-alt's Delta commit covering it (its application transaction), and to its rows being
  visible in QuestDB (both polled every 20 ms for every frame at once). sink-alt batches
  (``sink_alt.batch_seconds``, ``small_batch_*``): the figures are those of the settings in effect,
  printed with them.
"""

from __future__ import annotations

import asyncio
import json
import time
from decimal import Decimal
from statistics import median
from typing import Any

import msgspec
import structlog

from trader.bus.publish import Outgoing, publish_acked
from trader.config import LiveAltSettings, LiveGatewaySettings, Settings
from trader.marketdata.feeds import load_alt_venue
from trader.marketdata.feeds.alt import AltVenue
from trader.marketdata.feeds.alt_feed import AltVenueFeed
from trader.marketdata.feeds.feed import DeadFrame, Stored

T0 = 1_764_000_000_000


def frames(venue: str, count: int) -> list[str]:
    """``count`` frames of ``venue`` in its wire format: 8 of 10 carry prices and funding, one open
    interest (Bybit, OKX) or a second price frame, one a liquidation."""
    out = []
    for i in range(count):
        ts, price, rate = T0 + i, Decimal("60000.5") + i % 100, Decimal("0.0001") + Decimal(i % 7) / 100_000
        kind = "liq" if i % 10 == 9 else "oi" if i % 10 == 8 else "mark"
        out.append(_frame(venue, kind, ts, price, rate, i))
    return out


def _frame(venue: str, kind: str, ts: int, price: Decimal, rate: Decimal, i: int) -> str:
    if venue == "binance":
        if kind == "liq":
            order = {"s": "BTCUSDT", "S": "SELL", "o": "LIMIT", "f": "IOC", "q": "0.014", "p": str(price),
                     "ap": str(price), "X": "FILLED", "l": "0.014", "z": "0.014", "T": ts}  # fmt: skip
            return json.dumps(
                {"stream": "btcusdt@forceOrder", "data": {"e": "forceOrder", "E": ts, "o": order}}
            )
        mark = {"e": "markPriceUpdate", "E": ts, "s": "BTCUSDT", "p": str(price), "i": str(price + 1),
                "P": str(price), "r": str(rate), "T": T0 + 28_800_000}  # fmt: skip
        return json.dumps({"stream": "btcusdt@markPrice@1s", "data": mark})
    if venue == "bybit":
        if kind == "liq":
            entry = {"T": ts, "s": "BTCUSDT", "S": "Buy", "v": "0.003", "p": str(price)}
            return json.dumps(
                {"topic": "allLiquidation.BTCUSDT", "type": "snapshot", "ts": ts, "data": [entry]}
            )
        data: dict[str, Any] = {"symbol": "BTCUSDT"}
        if kind == "oi":
            data["openInterest"] = str(68_000 + i % 100)
        else:
            data.update(markPrice=str(price), indexPrice=str(price + 1), fundingRate=str(rate),
                        nextFundingTime=str(T0 + 28_800_000))  # fmt: skip
        return json.dumps({"topic": "tickers.BTCUSDT", "type": "delta", "data": data, "cs": i, "ts": ts})
    swap = "BTC-USDT-SWAP"
    if kind == "liq":
        detail = {"bkPx": str(price), "side": "sell", "sz": "3", "ts": str(ts), "posSide": "long"}
        return json.dumps({"arg": {"channel": "liquidation-orders", "instType": "SWAP"},
                           "data": [{"instId": swap, "details": [detail]}]})  # fmt: skip
    if kind == "oi":
        data = {"instId": swap, "oi": "5000", "oiCcy": "50", "oiUsd": "1", "ts": str(ts)}
        return json.dumps({"arg": {"channel": "open-interest", "instId": swap}, "data": [data]})
    data = {"instId": swap, "fundingRate": str(rate), "fundingTime": str(T0 + 28_800_000), "ts": str(ts)}
    return json.dumps({"arg": {"channel": "funding-rate", "instId": swap}, "data": [data]})


def _venue(name: str) -> AltVenue:
    venue = load_alt_venue(name)()
    symbol = "BTC-USDT-SWAP" if name == "okx" else "BTCUSDT"
    venue.subscribe_frames([symbol], frozenset({"funding", "liquidation"}))  # OKX: the swaps it keeps
    if hasattr(venue, "contract_values"):
        venue.contract_values[symbol] = Decimal("0.01")
    return venue


def parser_rates(
    count: int = 50_000, venues: tuple[str, ...] = ("binance", "bybit", "okx")
) -> dict[str, Any]:
    """Frames/s of each parser alone, and through the feed's whole path (no I/O: emit keeps nothing)."""
    return {name: _rates(name, frames(name, count)) for name in venues}


def _rates(name: str, sample: list[str]) -> dict[str, Any]:
    venue = _venue(name)
    started = time.perf_counter()
    observations = sum(len(venue.parse(frame).items) for frame in sample)
    parse_s = time.perf_counter() - started
    emitted = 0

    async def emit(item: Outgoing | DeadFrame, stored: Stored | None) -> None:
        nonlocal emitted
        emitted += 1

    feed = AltVenueFeed(
        _venue(name), LiveAltSettings(symbols=["BTCUSDT-PERP"]), LiveGatewaySettings(), emit,
        structlog.get_logger(),
    )  # fmt: skip

    async def through() -> float:
        begun = time.perf_counter()
        for frame in sample:
            await feed._on_frame(frame)  # the feed takes its frames here (its connection calls it)
        return time.perf_counter() - begun

    feed_s = asyncio.run(through())
    count = len(sample)
    return {
        "frames": count,
        "observations": observations,
        "parse_frames_per_s": round(count / parse_s),
        "parse_us_per_frame": round(parse_s / count * 1e6, 2),
        "feed_frames_per_s": round(count / feed_s),
        "feed_us_per_frame": round(feed_s / count * 1e6, 2),
        "published": emitted,
    }


async def end_to_end(settings: Settings, frames_count: int = 20, interval_s: float = 1.0) -> dict[str, Any]:
    """Frame -> sink-alt's commit, and frame -> QuestDB, on the running stack's sink-alt."""
    from trader.bus.connection import connect_nats
    from trader.stores.lake import ALT_DATA, Lake
    from trader.stores.questdb import QuestDBClient, QuestDBError

    nc = await connect_nats(settings.effective_nats_url, "bench-alt")
    if nc is None:
        raise RuntimeError(
            f"NATS is not reachable at {settings.effective_nats_url}: run `trader up --detach`"
        )
    js = nc.jetstream()
    lake, qdb = Lake(settings), QuestDBClient(settings)
    run_id = int(time.time())
    symbol = f"B{run_id % 100_000}USDT"  # an instrument of this run only
    pending: list[tuple[int, float, int]] = []  # (stream seq, sent at, event ms)
    sent_at = 0.0  # when the frame being fed was sent

    async def emit(item: Outgoing | DeadFrame, stored: Stored | None) -> None:
        if not isinstance(item, Outgoing):
            return
        ack = await (await publish_acked(js, item.subject, item.payload, item.all_headers()))
        if item.subject == "alt.norm.mark_price":
            pending.append((ack.seq, sent_at, msgspec.json.decode(item.payload)["timestamp"]))

    feed = AltVenueFeed(
        _venue("binance"), LiveAltSettings(symbols=[f"{symbol}-PERP"]), LiveGatewaySettings(), emit,
        structlog.get_logger(),
    )  # fmt: skip
    lake_at: dict[int, float] = {}  # stream seq -> when first seen committed
    qdb_at: dict[int, float] = {}  # event ms -> when first seen in QuestDB
    sql = f"SELECT ts FROM mark_index WHERE symbol = '{symbol}-PERP' AND kind = 'mark'"

    async def send(first: int, count: int) -> None:
        nonlocal sent_at
        for i in range(first, first + count):
            ts = int(time.time() * 1000)
            data = {"e": "markPriceUpdate", "E": ts, "s": symbol, "p": f"{100 + i}.5", "i": f"{100 + i}.25",
                    "P": "100", "r": "0.0001", "T": ts + 3_600_000}  # fmt: skip
            sent_at = time.perf_counter()
            await feed._on_frame(json.dumps({"stream": f"{symbol.lower()}@markPrice@1s", "data": data}))
            await asyncio.sleep(interval_s)

    async def poll(expected: int, deadline: float) -> None:
        """Both stores, every 20 ms, for every frame sent so far: when each was first seen."""
        while (len(lake_at) < expected or len(qdb_at) < expected) and time.monotonic() < deadline:
            committed = await asyncio.to_thread(lake.committed_version, ALT_DATA, "sink-alt") or 0
            try:
                body = await asyncio.to_thread(qdb.query, sql)
                seen_ts = {_epoch_ms(row[0]) for row in body["dataset"]}
            except QuestDBError:
                seen_ts = set()  # the table is made at sink-alt's first write
            now = time.perf_counter()
            for seq, _, ts in pending:
                if seq <= committed:
                    lake_at.setdefault(seq, now)
                if ts in seen_ts:
                    qdb_at.setdefault(ts, now)
            await asyncio.sleep(0.02)

    try:
        # One frame first, until stored: the first commit also creates the table and its partitions.
        await send(0, 1)
        await poll(1, time.monotonic() + 60)
        pending.clear()
        lake_at.clear()
        qdb_at.clear()
        await asyncio.gather(
            send(1, frames_count), poll(frames_count, time.monotonic() + 120 + frames_count * interval_s)
        )
        to_lake = [lake_at[seq] - sent for seq, sent, _ in pending if seq in lake_at]
        to_questdb = [qdb_at[ts] - sent for _, sent, ts in pending if ts in qdb_at]
    finally:
        await nc.close()
        qdb.close()
    cfg = settings.sink_alt
    return {
        "frames": frames_count,
        "interval_s": interval_s,
        "sink_alt_batch_seconds": cfg.batch_seconds,
        "sink_alt_small_batch_rows": cfg.small_batch_rows,
        "sink_alt_small_batch_seconds": cfg.small_batch_seconds,
        "to_lake_s": _summary(to_lake, frames_count),
        "to_questdb_s": _summary(to_questdb, frames_count),
    }


def _epoch_ms(value: str) -> int:
    """QuestDB's ``2026-12-03T04:22:01.123000Z`` as epoch ms."""
    from datetime import datetime

    return int(datetime.fromisoformat(value.replace("Z", "+00:00")).timestamp() * 1000)


def _summary(values: list[float], wanted: int) -> dict[str, Any]:
    if not values:
        return {"seen": 0, "of": wanted}
    ordered = sorted(values)
    return {
        "seen": len(values),
        "of": wanted,
        "p50": round(median(ordered), 3),
        "p90": round(ordered[min(len(ordered) - 1, int(len(ordered) * 0.9))], 3),
        "max": round(ordered[-1], 3),
    }
