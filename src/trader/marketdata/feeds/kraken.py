"""Kraken spot, websocket API v2: the ``trade`` and ``ticker`` (best bid and offer) channels.

- Subscribe: ``{"method": "subscribe", "params": {"channel": "trade", "symbol": ["BTC/USD"],
  "snapshot": true}, "req_id": 1}``; acknowledged by ``{"method": "subscribe", "success": true, ...}``.
- Trades: ``{"channel": "trade", "type": "update", "data": [{"symbol": "BTC/USD", "side": "sell",
  "price": 0.5117, "qty": 40.0, "ord_type": "market", "trade_id": 4665906,
  "timestamp": "2023-09-25T07:49:37.708706Z"}]}``. Prices and quantities are JSON numbers (read exactly,
  never as floats); ``side`` is the taker's; ``trade_id`` goes up by one per pair. The snapshot (the last
  50 trades) sent on subscribing fills what a short disconnect missed.
- Top of book: ``{"channel": "ticker", "data": [{"symbol": "BTC/USD", "bid": ..., "ask": ..., ...}]}``
  with ``event_trigger: "bbo"``, sent on every change of the best bid or offer.
- Keep-alive: ``{"channel": "heartbeat"}`` about once a second; ``{"method": "ping"}`` answered by
  ``{"method": "pong"}``.
- v2 writes bitcoin BTC (``BTC/USD``); the REST API still says XBT (``XBTUSD``, answers keyed ``XXBTZUSD``).
- Gaps: ``GET /0/public/Trades?pair=XBTUSD&since=<time>&count=1000``: ``[price, volume, time, side,
  type, misc, trade_id]`` rows and ``last`` to page on (public limit about 1 call a second).
"""

from __future__ import annotations

import itertools
import json
from typing import Any

from trader.marketdata.feeds.base import (
    FrameError,
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
    parse_each,
    seconds_ms,
    side_of,
    text,
)
from trader.marketdata.feeds.symbols import Instrument, parse_symbol

PAGE = 1000
REST_ASSET = {"BTC": "XBT", "DOGE": "XDG"}


class Kraken(Venue):
    name = "kraken"
    ws_url = "wss://ws.kraken.com/v2"
    rest_url = "https://api.kraken.com"
    rest_rate_per_s = 0.5
    rest_burst = 2
    stale_after_s = 10.0  # heartbeats come every second
    ping_interval_s = 20.0

    def __init__(self) -> None:
        self._req_ids = itertools.count(1)

    def venue_symbol(self, instrument: Instrument) -> str:
        return f"{instrument.base}/{instrument.quote}"

    def subscribe_frames(self, venue_symbols: list[str]) -> list[str]:
        trade = {"channel": "trade", "symbol": venue_symbols, "snapshot": True}
        ticker = {"channel": "ticker", "symbol": venue_symbols, "event_trigger": "bbo", "snapshot": True}
        return [
            json.dumps({"method": "subscribe", "params": params, "req_id": next(self._req_ids)})
            for params in (trade, ticker)
        ]

    def ping_frame(self) -> str | None:
        return json.dumps({"method": "ping", "req_id": next(self._req_ids)})

    def symbol_of(self, message: dict[str, Any]) -> str | None:
        return _first_symbol(message)

    def parse_message(self, message: dict[str, Any]) -> Parsed:
        if "method" in message:
            return _method_reply(message)
        channel = text(message, "channel", "frame")
        if channel == "trade":
            parsed = Parsed()
            parse_each(
                parsed, items_of(get(message, "data", channel), "trade.data"), "trade.data", read_trade
            )
            parsed.venue_symbol = _first_symbol(message)
            return parsed
        if channel == "ticker":
            parsed = Parsed()
            parse_each(
                parsed, items_of(get(message, "data", channel), "ticker.data"), "ticker.data", read_quote
            )
            parsed.venue_symbol = _first_symbol(message)
            return parsed
        if channel == "heartbeat":
            return Parsed([Notice("heartbeat")])
        return Parsed([Notice("info", f"channel {channel}")])

    async def fetch_trades(self, rest: Rest, wanted: TradeRange, limit: int) -> list[Trade]:
        if wanted.first is None or wanted.last is None:
            return []
        pair = rest_pair(wanted.venue_symbol)
        # Kraken pages by time: from just before the last trade seen, until the ids reach the gap's end.
        since = str(max(0, (wanted.since_ms or 0) // 1000 - 1))
        trades: list[Trade] = []
        for _ in range(limit // PAGE + 2):  # the trades before the gap come too: one page more
            payload = await rest.get_json(
                "/0/public/Trades", {"pair": pair, "since": since, "count": str(PAGE)}
            )
            page, last = parse_rest_trades(wanted.venue_symbol, payload)
            trades.extend(t for t in page if t.seq is not None and wanted.first <= t.seq <= wanted.last)
            if not page or last == since or max(t.seq or 0 for t in page) >= wanted.last:
                break
            since = last
        return trades


def rest_pair(venue_symbol: str) -> str:
    instrument = parse_symbol(venue_symbol)
    return REST_ASSET.get(instrument.base, instrument.base) + REST_ASSET.get(
        instrument.quote, instrument.quote
    )


def read_trade(entry: Any, where: str) -> Trade:
    trade_id = integer(get(entry, "trade_id", where), f"{where}.trade_id")
    return Trade(
        venue_symbol=text(entry, "symbol", where),
        trade_id=str(trade_id),
        price=number(get(entry, "price", where), f"{where}.price"),
        size=number(get(entry, "qty", where), f"{where}.qty"),
        side=side_of(get(entry, "side", where), f"{where}.side"),
        timestamp=iso_ms(get(entry, "timestamp", where), f"{where}.timestamp"),
        seq=trade_id,
    )


def read_quote(entry: Any, where: str) -> Quote:
    return Quote(
        text(entry, "symbol", where),
        number(get(entry, "bid", where), f"{where}.bid"),
        number(get(entry, "ask", where), f"{where}.ask"),
    )


def parse_rest_trades(venue_symbol: str, payload: Any) -> tuple[list[Trade], str]:
    """``{"error": [], "result": {"XXBTZUSD": [["30243.40000", "0.34507674", 1688669597.8277369, "b",
    "m", "", 61044952]], "last": "1688671969993150842"}}`` -> the trades and the ``last`` cursor."""
    errors = get(payload, "error", "Trades")
    if errors:
        raise FrameError(f"Trades: {errors}")
    result = get(payload, "result", "Trades")
    last = str(get(result, "last", "Trades.result"))
    rows: Any = next((v for k, v in result.items() if k != "last"), [])
    trades = []
    for index, row in enumerate(items_of(rows, "Trades.result")):
        where = f"Trades.result[{index}]"
        if not isinstance(row, list) or len(row) < 7:
            raise FrameError(f"{where}: expected [price, volume, time, side, type, misc, trade_id]")
        trade_id = integer(row[6], f"{where}[6]")
        trades.append(
            Trade(
                venue_symbol=venue_symbol,
                trade_id=str(trade_id),
                price=number(row[0], f"{where}[0]"),
                size=number(row[1], f"{where}[1]"),
                side=side_of(row[3], f"{where}[3]"),
                timestamp=seconds_ms(row[2], f"{where}[2]"),
                seq=trade_id,
            )
        )
    return trades, last


def _method_reply(message: dict[str, Any]) -> Parsed:
    method = message["method"]
    if method == "pong":
        return Parsed([Notice("pong")])
    if message.get("success") is False:
        return Parsed([Notice("error", f"{method}: {message.get('error')}")])
    return Parsed([Notice("subscribed", f"{method}: {json.dumps(message.get('result'))[:300]}")])


def _first_symbol(message: dict[str, Any]) -> str | None:
    data = message.get("data")
    if isinstance(data, list) and data and isinstance(data[0], dict):
        symbol = data[0].get("symbol")
        return symbol if isinstance(symbol, str) else None
    return None
