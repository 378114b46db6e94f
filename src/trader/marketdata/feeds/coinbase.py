"""Coinbase Exchange: the public feed's ``matches``, ``ticker`` and ``heartbeat`` channels.

- Subscribe: ``{"type": "subscribe", "product_ids": ["BTC-USD"], "channels": ["matches", "ticker",
  "heartbeat"]}`` (a connection that does not subscribe within 5 s is closed).
- Trades: ``{"type": "match", "trade_id": 10, "sequence": 50, "time": "2014-11-07T08:19:27.028459Z",
  "product_id": "BTC-USD", "size": "5.23512", "price": "400.23", "side": "sell", ...}``, and one
  ``last_match`` of the same shape on subscribing. ``side`` is the maker's: the aggressor is the other.
  ``trade_id`` goes up by one per product; ``sequence`` counts every message of the product's full
  feed, so it jumps between matches and tells nothing here.
- Top of book: ``ticker`` (``best_bid``, ``best_ask``), sent with every trade.
- Keep-alive: ``heartbeat`` once a second per product, with ``last_trade_id``: a gap shows even when no
  trade follows it.
- Gaps: ``GET /products/<product>/trades?after=<id>&limit=100``: trades older than ``after``, newest
  first (public limit 10 requests a second).
"""

from __future__ import annotations

import json
from typing import Any

from trader.marketdata.feeds.base import (
    FrameError,
    LastTradeId,
    Notice,
    Parsed,
    Quote,
    Rest,
    Trade,
    TradeRange,
    Venue,
    get,
    integer,
    iso_ms,
    items_of,
    number,
    side_of,
    text,
)
from trader.marketdata.feeds.symbols import Instrument

PAGE = 100


class Coinbase(Venue):
    name = "coinbase"
    ws_url = "wss://ws-feed.exchange.coinbase.com"
    rest_url = "https://api.exchange.coinbase.com"
    rest_rate_per_s = 5.0
    rest_burst = 5
    stale_after_s = 10.0  # heartbeats come every second

    def venue_symbol(self, instrument: Instrument) -> str:
        return f"{instrument.base}-{instrument.quote}"

    def subscribe_frames(self, venue_symbols: list[str]) -> list[str]:
        channels = ["matches", "ticker", "heartbeat"]
        return [json.dumps({"type": "subscribe", "product_ids": venue_symbols, "channels": channels})]

    def symbol_of(self, message: dict[str, Any]) -> str | None:
        return message.get("product_id")

    def parse_message(self, message: dict[str, Any]) -> Parsed:
        kind = text(message, "type", "frame")
        if kind in ("match", "last_match"):
            trade = read_trade(message, kind)
            return Parsed([trade], venue_symbol=trade.venue_symbol)
        if kind == "ticker":
            product = text(message, "product_id", kind)
            bid = number(get(message, "best_bid", kind), f"{kind}.best_bid")
            ask = number(get(message, "best_ask", kind), f"{kind}.best_ask")
            return Parsed([Quote(product, bid, ask)], venue_symbol=product)
        if kind == "heartbeat":
            product = text(message, "product_id", kind)
            last_id = integer(get(message, "last_trade_id", kind), f"{kind}.last_trade_id")
            # A heartbeat before any trade says 0: no information.
            return Parsed([LastTradeId(product, last_id)] if last_id > 0 else [], venue_symbol=product)
        if kind == "subscriptions":
            return Parsed([Notice("subscribed", json.dumps(message.get("channels"))[:300])])
        if kind == "error":
            return Parsed([Notice("error", f"{message.get('message')}: {message.get('reason')}")])
        return Parsed([Notice("info", f"type {kind}")])

    async def fetch_trades(self, rest: Rest, wanted: TradeRange, limit: int) -> list[Trade]:
        if wanted.first is None or wanted.last is None:
            return []
        trades: list[Trade] = []
        after = wanted.last + 1  # pages go back in time from here
        while after > wanted.first and len(trades) < limit:
            path = f"/products/{wanted.venue_symbol}/trades"
            payload = await rest.get_json(path, {"after": str(after), "limit": str(PAGE)})
            page = parse_rest_trades(wanted.venue_symbol, payload)
            if not page:
                break
            trades.extend(t for t in page if t.seq is not None and wanted.first <= t.seq <= wanted.last)
            after = min(t.seq or 0 for t in page)
        return trades


def read_trade(message: Any, where: str) -> Trade:
    trade_id = integer(get(message, "trade_id", where), f"{where}.trade_id")
    return Trade(
        venue_symbol=text(message, "product_id", where),
        trade_id=str(trade_id),
        price=number(get(message, "price", where), f"{where}.price"),
        size=number(get(message, "size", where), f"{where}.size"),
        side=side_of(get(message, "side", where), f"{where}.side", taker=False),
        timestamp=iso_ms(get(message, "time", where), f"{where}.time"),
        seq=trade_id,
    )


def parse_rest_trades(venue_symbol: str, payload: Any) -> list[Trade]:
    """``[{"time": "2014-11-07T22:19:28.578544Z", "trade_id": 74, "price": "10.00000000",
    "size": "0.01000000", "side": "buy"}]``, newest first; ``side`` is the maker's."""
    if isinstance(payload, dict) and "message" in payload:
        raise FrameError(f"trades: {payload['message']}")
    trades = []
    for index, row in enumerate(items_of(payload, "trades")):
        where = f"trades[{index}]"
        if not isinstance(row, dict):
            raise FrameError(f"{where}: expected an object")
        trades.append(read_trade({**row, "product_id": venue_symbol}, where))
    return trades
