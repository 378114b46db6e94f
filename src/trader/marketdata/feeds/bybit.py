"""Bybit spot, API v5: the ``publicTrade`` and ``orderbook.1`` topics.

- Subscribe: ``{"op": "subscribe", "args": ["publicTrade.BTCUSDT", "orderbook.1.BTCUSDT"], "req_id": "1"}``
  (at most 10 topics a request on spot); acknowledged by ``{"success": true, "op": "subscribe", ...}``.
- Trades: ``{"topic": "publicTrade.BTCUSDT", "type": "snapshot", "ts": 1672304486868, "data": [{"T":
  1672304486865, "s": "BTCUSDT", "S": "Buy", "v": "0.001", "p": "16578.50", "i": "2290000000061666327",
  "BT": false}]}``; ``S`` is the taker's side.
- Top of book: ``orderbook.1.<symbol>``: ``{"data": {"s": "BTCUSDT", "b": [["16493.50", "0.006"]],
  "a": [["16611.00", "0.029"]], "u": 18521288, "seq": 7961638724}}``.
- Keep-alive: ``{"op": "ping"}`` every 20 s (the server drops a silent client), answered by
  ``{"op": "ping", "ret_msg": "pong", ...}`` (spot) or ``{"op": "pong"}``.
- Trade ids are shared by every symbol, so a gap cannot be seen from them: after a reconnect, the trades
  since the last one seen are recovered from ``GET /v5/market/recent-trade?category=spot&symbol=&limit=60``
  (the last 60 on spot), duplicates told apart by id.
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
    items_of,
    number,
    parse_each,
    side_of,
    text,
)
from trader.marketdata.feeds.symbols import Instrument

TOPICS_PER_REQUEST = 10
RECENT_LIMIT = 60


class Bybit(Venue):
    name = "bybit"
    ws_url = "wss://stream.bybit.com/v5/public/spot"
    rest_url = "https://api.bybit.com"
    rest_rate_per_s = 5.0
    rest_burst = 5
    stale_after_s = 45.0  # pongs every 20 s at least
    ping_interval_s = 20.0
    contiguous_ids = False

    def __init__(self) -> None:
        self._req_ids = itertools.count(1)

    def venue_symbol(self, instrument: Instrument) -> str:
        return f"{instrument.base}{instrument.quote}"

    def subscribe_frames(self, venue_symbols: list[str]) -> list[str]:
        topics = [t for s in venue_symbols for t in (f"publicTrade.{s}", f"orderbook.1.{s}")]
        return [
            json.dumps(
                {"op": "subscribe", "args": topics[i : i + TOPICS_PER_REQUEST], "req_id": self._req_id()}
            )
            for i in range(0, len(topics), TOPICS_PER_REQUEST)
        ]

    def ping_frame(self) -> str | None:
        return json.dumps({"op": "ping", "req_id": self._req_id()})

    def symbol_of(self, message: dict[str, Any]) -> str | None:
        topic = message.get("topic")
        return topic.rsplit(".", 1)[-1] if isinstance(topic, str) and "." in topic else None

    def parse_message(self, message: dict[str, Any]) -> Parsed:
        if "op" in message:
            return _op_reply(message)
        topic = text(message, "topic", "frame")
        if topic.startswith("publicTrade."):
            parsed = Parsed(venue_symbol=topic.removeprefix("publicTrade."))
            parse_each(parsed, items_of(get(message, "data", topic), "data"), "data", read_trade)
            return parsed
        if topic.startswith("orderbook.1."):
            data = get(message, "data", topic)
            symbol = text(data, "s", "data")
            return Parsed([Quote(symbol, _best(data, "b"), _best(data, "a"))], venue_symbol=symbol)
        return Parsed([Notice("info", f"topic {topic}")])

    async def fetch_trades(self, rest: Rest, wanted: TradeRange, limit: int) -> list[Trade]:
        params = {"category": "spot", "symbol": wanted.venue_symbol, "limit": str(RECENT_LIMIT)}
        trades = parse_rest_trades(await rest.get_json("/v5/market/recent-trade", params))
        since = wanted.since_ms or 0
        return [t for t in trades if t.timestamp >= since][:limit]

    def _req_id(self) -> str:
        return str(next(self._req_ids))


def read_trade(entry: Any, where: str) -> Trade:
    trade_id = text(entry, "i", where)
    return Trade(
        venue_symbol=text(entry, "s", where),
        trade_id=trade_id,
        price=number(get(entry, "p", where), f"{where}.p"),
        size=number(get(entry, "v", where), f"{where}.v"),
        side=side_of(get(entry, "S", where), f"{where}.S"),
        timestamp=integer(get(entry, "T", where), f"{where}.T"),
    )


def parse_rest_trades(payload: Any) -> list[Trade]:
    """``{"retCode": 0, "result": {"category": "spot", "list": [{"execId": "2100000000007764263",
    "symbol": "BTCUSDT", "price": "16618.49", "size": "0.00012", "side": "Buy", "time": "1672052955758",
    "isBlockTrade": false}]}}``"""
    code = get(payload, "retCode", "recent-trade")
    if code != 0:
        raise FrameError(f"recent-trade: retCode {code}: {payload.get('retMsg')}")
    rows = items_of(get(get(payload, "result", "recent-trade"), "list", "recent-trade.result"), "list")
    trades = []
    for index, row in enumerate(rows):
        where = f"list[{index}]"
        trades.append(
            Trade(
                venue_symbol=text(row, "symbol", where),
                trade_id=text(row, "execId", where),
                price=number(get(row, "price", where), f"{where}.price"),
                size=number(get(row, "size", where), f"{where}.size"),
                side=side_of(get(row, "side", where), f"{where}.side"),
                timestamp=integer(get(row, "time", where), f"{where}.time"),
            )
        )
    return trades


def _best(data: dict[str, Any], side: str) -> Any:
    levels = items_of(data.get(side, []), f"data.{side}")
    if not levels:
        return None  # unchanged
    level = levels[0]
    if not isinstance(level, list) or len(level) < 2:
        raise FrameError(f"data.{side}[0]: expected [price, size]")
    if number(level[1], f"data.{side}[0][1]") == 0:
        return None  # the level went away; the next update names the new best
    return number(level[0], f"data.{side}[0][0]")


def _op_reply(message: dict[str, Any]) -> Parsed:
    op = message["op"]
    if op in ("ping", "pong"):
        return Parsed([Notice("pong")])
    if message.get("success") is False:
        return Parsed([Notice("error", f"{op}: {message.get('ret_msg')}")])
    return Parsed([Notice("subscribed", f"{op}: {message.get('ret_msg', '')}")])
