"""Bybit v5 linear perpetuals alternative data: the ``tickers`` and ``allLiquidation`` topics.

- Endpoint ``wss://stream.bybit.com/v5/public/linear``; subscribe ``{"op": "subscribe", "args":
  ["tickers.BTCUSDT", "allLiquidation.BTCUSDT"], "req_id": "1"}``, acknowledged by ``{"success": true,
  "op": "subscribe", ...}``; ``{"op": "ping"}`` every 20 s, answered by ``{"op": "pong", ...}``.
- ``tickers.<symbol>``: a snapshot, then deltas holding only the fields that changed: ``{"topic":
  "tickers.BTCUSDT", "type": "snapshot", "data": {"symbol": "BTCUSDT", "markPrice": "17217.33",
  "indexPrice": "17227.36", "openInterest": "68744.761", "openInterestValue": "1183601235.91",
  "nextFundingTime": "1673280000000", "fundingRate": "-0.000212", ...}, "cs": 24987956059, "ts":
  1673272861686}``. ``openInterest`` is in base units; ``fundingRate`` is the rate charged at
  ``nextFundingTime``. A delta's funding rate goes with the next funding time last seen for the symbol
  (the parser remembers it: the only state it keeps).
- ``allLiquidation.<symbol>``: ``{"topic": "allLiquidation.BTCUSDT", "type": "snapshot", "ts":
  1739502303204, "data": [{"T": 1739502302929, "s": "BTCUSDT", "S": "Sell", "v": "0.003", "p":
  "94500"}]}``; ``S`` is the side of the liquidated *position* (``Buy``: a long was closed, by a sell
  order), ``v`` the quantity, ``p`` the price.
- REST, after a reconnect: ``GET /v5/market/tickers?category=linear&symbol=`` (``{"retCode": 0,
  "result": {"list": [{...the ticker fields...}]}, "time": 1673272861686}``). No public REST history of
  liquidations.
"""

from __future__ import annotations

import itertools
import json
from typing import Any

from trader.marketdata.feeds.alt import AltParsed, AltVenue, Observation, observe, optional_number
from trader.marketdata.feeds.base import (
    FrameError,
    Notice,
    Rest,
    get,
    integer,
    items_of,
    number,
    side_of,
    text,
)
from trader.marketdata.feeds.symbols import Instrument

TOPICS_PER_REQUEST = 10
_FIELDS = {"mark_price": "markPrice", "index_price": "indexPrice", "open_interest": "openInterest"}


class BybitAlt(AltVenue):
    name = "bybit"
    ws_url = "wss://stream.bybit.com/v5/public/linear"
    rest_url = "https://api.bybit.com"
    rest_rate_per_s = 5.0
    rest_burst = 5
    stale_after_s = 45.0
    ping_interval_s = 20.0
    streamed = frozenset({"funding", "mark_price", "index_price", "open_interest", "liquidation"})

    def __init__(self) -> None:
        self._req_ids = itertools.count(1)
        self._next_funding: dict[str, int] = {}

    def venue_symbol(self, instrument: Instrument) -> str:
        return f"{instrument.base}{instrument.quote}"

    def subscribe_frames(self, venue_symbols: list[str], kinds: frozenset[str]) -> list[str]:
        topics = []
        for symbol in venue_symbols:
            if kinds - {"liquidation"}:
                topics.append(f"tickers.{symbol}")
            if "liquidation" in kinds:
                topics.append(f"allLiquidation.{symbol}")
        return [
            json.dumps({"op": "subscribe", "args": topics[i : i + TOPICS_PER_REQUEST], "req_id": self._req()})
            for i in range(0, len(topics), TOPICS_PER_REQUEST)
        ]

    def ping_frame(self) -> str | None:
        return json.dumps({"op": "ping", "req_id": self._req()})

    def symbol_of(self, message: dict[str, Any]) -> str | None:
        topic = message.get("topic")
        return topic.rsplit(".", 1)[-1] if isinstance(topic, str) and "." in topic else None

    def parse_message(self, message: dict[str, Any]) -> AltParsed:
        if "op" in message:
            return _op_reply(message)
        topic = text(message, "topic", "frame")
        if topic.startswith("tickers."):
            symbol = topic.removeprefix("tickers.")
            ts = integer(get(message, "ts", "frame"), "frame.ts")
            ticker = self.read_ticker(get(message, "data", "frame"), ts, "data")
            return AltParsed([*ticker], venue_symbol=symbol)
        if topic.startswith("allLiquidation."):
            parsed = AltParsed(venue_symbol=topic.removeprefix("allLiquidation."))
            for index, entry in enumerate(items_of(get(message, "data", "frame"), "data")):
                try:
                    parsed.items.append(read_liquidation(entry, f"data[{index}]"))
                except FrameError as exc:
                    parsed.errors.append(exc.reason)
            return parsed
        return AltParsed([Notice("info", f"topic {topic}")])

    def read_ticker(self, data: Any, ts: int, where: str) -> list[Observation]:
        """A snapshot or a delta: an observation for each kind whose field it holds."""
        symbol = text(data, "symbol", where)
        if (next_time := data.get("nextFundingTime")) not in (None, ""):
            self._next_funding[symbol] = integer(next_time, f"{where}.nextFundingTime")
        found = []
        rate = optional_number(data, "fundingRate", where)
        if rate is not None:
            found.append(observe("funding", symbol, ts, rate, next_time=self._next_funding.get(symbol)))
        for kind, key in _FIELDS.items():
            value = optional_number(data, key, where)
            if value is not None:
                found.append(observe(kind, symbol, ts, value))  # type: ignore[arg-type]
        return found

    async def fetch(self, rest: Rest, venue_symbol: str, kind: str) -> list[Observation]:
        if kind == "liquidation":
            return []
        params = {"category": "linear", "symbol": venue_symbol}
        payload = await rest.get_json("/v5/market/tickers", params)
        code = get(payload, "retCode", "tickers")
        if code != 0:
            raise FrameError(f"tickers: retCode {code}: {payload.get('retMsg')}")
        ts = integer(get(payload, "time", "tickers"), "tickers.time")
        rows = items_of(get(get(payload, "result", "tickers"), "list", "tickers.result"), "list")
        found = []
        for index, row in enumerate(rows):
            found.extend(self.read_ticker(row, ts, f"list[{index}]"))
        return found

    def refill_kinds(self, kinds: frozenset[str]) -> list[str]:
        return ["funding"] if kinds - {"liquidation"} else []  # one ticker answer holds them all

    def _req(self) -> str:
        return str(next(self._req_ids))


def read_liquidation(entry: Any, where: str) -> Observation:
    position_side = side_of(get(entry, "S", where), f"{where}.S")
    quantity = number(get(entry, "v", where), f"{where}.v")
    price = number(get(entry, "p", where), f"{where}.p")
    if quantity <= 0 or price <= 0:
        raise FrameError(f"{where}: a liquidation of {quantity} at {price}")
    return observe(
        "liquidation",
        text(entry, "s", where),
        integer(get(entry, "T", where), f"{where}.T"),
        quantity,
        price=price,
        side="sell" if position_side == "buy" else "buy",  # a long is closed by selling
    )


def _op_reply(message: dict[str, Any]) -> AltParsed:
    op = message["op"]
    if op in ("ping", "pong"):
        return AltParsed([Notice("pong")])
    if message.get("success") is False:
        return AltParsed([Notice("error", f"{op}: {message.get('ret_msg')}")])
    return AltParsed([Notice("subscribed", f"{op}: {message.get('ret_msg', '')}")])
