"""Binance spot: ``<symbol>@trade`` and ``<symbol>@bookTicker`` over the combined-stream endpoint.

- Streams named in the URL: ``/stream?streams=btcusdt@trade/btcusdt@bookTicker``.
- Trades: ``{"stream": "btcusdt@trade", "data": {"e": "trade", "E": ..., "s": "BTCUSDT", "t": 12345,
  "p": "0.001", "q": "100", "T": 1672515782136, "m": true, ...}}``; ``t`` goes up by one per symbol,
  ``m`` (the buyer is the maker) means the aggressor sold.
- Top of book: ``{"stream": "btcusdt@bookTicker", "data": {"u": 400900217, "s": "BNBUSDT", "b": "25.35",
  "B": "31.21", "a": "25.36", "A": "40.66"}}``.
- Keep-alive: the server pings every 20 s and the client's pong is automatic (websockets answers pings).
- Gaps: ``GET /api/v3/historicalTrades?symbol=&fromId=&limit=`` (up to 1000 a call, weight 25 of the
  6000 a minute an IP may use).
"""

from __future__ import annotations

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
    items_of,
    number,
    text,
)
from trader.marketdata.feeds.symbols import Instrument

PAGE = 1000


class Binance(Venue):
    name = "binance"
    ws_url = "wss://stream.binance.com:9443/stream"
    rest_url = "https://api.binance.com"
    rest_rate_per_s = 2.0  # historicalTrades weighs 25: 2/s is 3000 of the 6000 weight a minute
    stale_after_s = 60.0  # the server pings every 20 s, and a quiet symbol may not trade for a while

    def venue_symbol(self, instrument: Instrument) -> str:
        return f"{instrument.base}{instrument.quote}"

    def connect_url(self, base_url: str, venue_symbols: list[str]) -> str:
        # The combined-stream endpoint names its streams in the URL: a reconnect resubscribes by itself.
        streams = "/".join(f"{s.lower()}@{kind}" for s in venue_symbols for kind in ("trade", "bookTicker"))
        return f"{base_url}?streams={streams}"

    def subscribe_frames(self, venue_symbols: list[str]) -> list[str]:
        return []

    def symbol_of(self, message: dict[str, Any]) -> str | None:
        data = message.get("data")
        if isinstance(data, dict) and isinstance(data.get("s"), str):
            return data["s"]
        stream = message.get("stream")
        return stream.split("@")[0].upper() if isinstance(stream, str) else None

    def parse_message(self, message: dict[str, Any]) -> Parsed:
        if "result" in message and "id" in message:
            return Parsed([Notice("subscribed", f"id {message['id']}")])
        if "code" in message and "msg" in message:
            return Parsed([Notice("error", f"{message['code']}: {message['msg']}")])
        stream = text(message, "stream", "frame")
        data = get(message, "data", "frame")
        if stream.endswith("@trade"):
            trade = read_trade(data, "data")
            return Parsed([trade], venue_symbol=trade.venue_symbol)
        if stream.endswith("@bookTicker"):
            symbol = text(data, "s", "data")
            quote = Quote(
                symbol, number(get(data, "b", "data"), "data.b"), number(get(data, "a", "data"), "data.a")
            )
            return Parsed([quote], venue_symbol=symbol)
        return Parsed([Notice("info", f"stream {stream}")])

    async def fetch_trades(self, rest: Rest, wanted: TradeRange, limit: int) -> list[Trade]:
        if wanted.first is None or wanted.last is None:
            return []
        trades: list[Trade] = []
        next_id = wanted.first
        while next_id <= wanted.last and len(trades) < limit:
            count = min(PAGE, wanted.last - next_id + 1)
            params = {"symbol": wanted.venue_symbol, "fromId": str(next_id), "limit": str(count)}
            page = parse_rest_trades(
                wanted.venue_symbol, await rest.get_json("/api/v3/historicalTrades", params)
            )
            if not page:
                break
            trades.extend(t for t in page if t.seq is not None and t.seq <= wanted.last)
            next_id = max(t.seq or 0 for t in page) + 1
        return trades


def read_trade(data: Any, where: str) -> Trade:
    if get(data, "e", where) != "trade":
        raise FrameError(f"{where}.e: expected 'trade', got {data.get('e')!r}")
    trade_id = integer(get(data, "t", where), f"{where}.t")
    buyer_is_maker = get(data, "m", where)
    if not isinstance(buyer_is_maker, bool):
        raise FrameError(f"{where}.m: expected a boolean, got {buyer_is_maker!r}")
    return Trade(
        venue_symbol=text(data, "s", where),
        trade_id=str(trade_id),
        price=number(get(data, "p", where), f"{where}.p"),
        size=number(get(data, "q", where), f"{where}.q"),
        side="sell" if buyer_is_maker else "buy",
        timestamp=integer(get(data, "T", where), f"{where}.T"),
        seq=trade_id,
    )


def parse_rest_trades(venue_symbol: str, payload: Any) -> list[Trade]:
    """``[{"id": 28457, "price": "4.00000100", "qty": "12.00000000", "quoteQty": "48.000012",
    "time": 1499865549590, "isBuyerMaker": true, "isBestMatch": true}]``"""
    trades = []
    for index, row in enumerate(items_of(payload, "historicalTrades")):
        where = f"historicalTrades[{index}]"
        trade_id = integer(get(row, "id", where), f"{where}.id")
        trades.append(
            Trade(
                venue_symbol=venue_symbol,
                trade_id=str(trade_id),
                price=number(get(row, "price", where), f"{where}.price"),
                size=number(get(row, "qty", where), f"{where}.qty"),
                side="sell" if get(row, "isBuyerMaker", where) is True else "buy",
                timestamp=integer(get(row, "time", where), f"{where}.time"),
                seq=trade_id,
            )
        )
    return trades
