"""Binance USD-M futures alternative data: ``<symbol>@markPrice@1s`` and ``<symbol>@forceOrder`` over the
combined-stream endpoint, open interest over REST.

- Streams named in the URL: ``wss://fstream.binance.com/stream?streams=btcusdt@markPrice@1s/btcusdt@forceOrder``.
- Mark price, index price and funding, every second: ``{"stream": "btcusdt@markPrice@1s", "data": {"e":
  "markPriceUpdate", "E": 1562305380000, "s": "BTCUSDT", "p": "11794.15000000", "i": "11784.62659091",
  "P": "11784.25641265", "r": "0.00038167", "T": 1562306400000}}``: ``p`` mark, ``i`` index, ``r`` the
  funding rate charged at ``T`` (Binance gives no separate predicted rate).
- Liquidations: ``{"stream": "btcusdt@forceOrder", "data": {"e": "forceOrder", "E": 1568014460893, "o":
  {"s": "BTCUSDT", "S": "SELL", "o": "LIMIT", "f": "IOC", "q": "0.014", "p": "9910", "ap": "9910",
  "X": "FILLED", "l": "0.014", "z": "0.014", "T": 1568014460893}}``; ``S`` is the liquidation order's
  side, ``ap`` its average price (``p`` the order's price while nothing filled). Binance pushes at most
  one liquidation per symbol a second, and has no public REST history of them.
- Open interest is not streamed: ``GET /fapi/v1/openInterest?symbol=BTCUSDT`` (weight 1 of 2400 a
  minute) gives ``{"openInterest": "10659.509", "symbol": "BTCUSDT", "time": 1589437530011}``.
- After a reconnect: ``GET /fapi/v1/premiumIndex?symbol=`` (weight 1) gives the mark, index and funding
  of now: ``{"symbol": "BTCUSDT", "markPrice": "11793.63104562", "indexPrice": "11781.80495970",
  "lastFundingRate": "0.00038246", "nextFundingTime": 1597392000000, "time": 1597370495002, ...}``.
- Keep-alive: the server pings every 3 minutes; websockets answers.
"""

from __future__ import annotations

from typing import Any

from trader.marketdata.feeds.alt import AltParsed, AltVenue, Observation, observe
from trader.marketdata.feeds.base import FrameError, Notice, Rest, get, integer, number, side_of, text
from trader.marketdata.feeds.symbols import Instrument

STREAMS = {"mark": "markPrice@1s", "liquidation": "forceOrder"}
PREMIUM_INDEX = frozenset({"funding", "mark_price", "index_price"})  # one REST answer holds the three


class BinanceAlt(AltVenue):
    name = "binance"
    ws_url = "wss://fstream.binance.com/stream"
    rest_url = "https://fapi.binance.com"
    rest_rate_per_s = 5.0  # weight 1 each: 300 of the 2400 a minute
    rest_burst = 5
    stale_after_s = 30.0  # the mark price comes every second
    streamed = frozenset({"funding", "mark_price", "index_price", "liquidation"})
    polled = {"open_interest": 10.0}

    def venue_symbol(self, instrument: Instrument) -> str:
        return f"{instrument.base}{instrument.quote}"

    def connect_url(self, base_url: str, venue_symbols: list[str], kinds: frozenset[str]) -> str:
        wanted = []
        if kinds & {"funding", "mark_price", "index_price"}:
            wanted.append(STREAMS["mark"])
        if "liquidation" in kinds:
            wanted.append(STREAMS["liquidation"])
        streams = "/".join(f"{s.lower()}@{w}" for s in venue_symbols for w in wanted)
        return f"{base_url}?streams={streams}"

    def subscribe_frames(self, venue_symbols: list[str], kinds: frozenset[str]) -> list[str]:
        return []  # named in the URL: a reconnect subscribes again by itself

    def symbol_of(self, message: dict[str, Any]) -> str | None:
        stream = message.get("stream")
        return stream.split("@")[0].upper() if isinstance(stream, str) else None

    def parse_message(self, message: dict[str, Any]) -> AltParsed:
        if "result" in message and "id" in message:
            return AltParsed([Notice("subscribed", f"id {message['id']}")])
        if "code" in message and "msg" in message:
            return AltParsed([Notice("error", f"{message['code']}: {message['msg']}")])
        stream = text(message, "stream", "frame")
        data = get(message, "data", "frame")
        symbol = stream.split("@")[0].upper()
        if stream.endswith("@" + STREAMS["mark"]) or stream.endswith("@markPrice"):
            return AltParsed([*read_mark(data, "data")], venue_symbol=symbol)
        if stream.endswith("@" + STREAMS["liquidation"]):
            return AltParsed([read_liquidation(data, "data")], venue_symbol=symbol)
        return AltParsed([Notice("info", f"stream {stream}")])

    async def fetch(self, rest: Rest, venue_symbol: str, kind: str) -> list[Observation]:
        if kind == "open_interest":
            payload = await rest.get_json("/fapi/v1/openInterest", {"symbol": venue_symbol})
            return [read_open_interest(payload, "openInterest")]
        if kind in PREMIUM_INDEX:
            payload = await rest.get_json("/fapi/v1/premiumIndex", {"symbol": venue_symbol})
            return read_premium_index(payload, "premiumIndex")
        return []

    def refill_kinds(self, kinds: frozenset[str]) -> list[str]:
        return sorted(kinds & {"open_interest"}) + (["funding"] if kinds & PREMIUM_INDEX else [])


def read_mark(data: Any, where: str) -> list[Observation]:
    if get(data, "e", where) != "markPriceUpdate":
        raise FrameError(f"{where}.e: expected 'markPriceUpdate', got {data.get('e')!r}")
    symbol = text(data, "s", where)
    ts = integer(get(data, "E", where), f"{where}.E")
    mark = number(get(data, "p", where), f"{where}.p")
    index = number(get(data, "i", where), f"{where}.i")
    rate = number(get(data, "r", where), f"{where}.r")
    next_time = integer(get(data, "T", where), f"{where}.T")
    return [
        observe("funding", symbol, ts, rate, next_time=next_time),
        observe("mark_price", symbol, ts, mark),
        observe("index_price", symbol, ts, index),
    ]


def read_liquidation(data: Any, where: str) -> Observation:
    if get(data, "e", where) != "forceOrder":
        raise FrameError(f"{where}.e: expected 'forceOrder', got {data.get('e')!r}")
    order = get(data, "o", where)
    at = f"{where}.o"
    average = number(get(order, "ap", at), f"{at}.ap")
    price = average if average > 0 else number(get(order, "p", at), f"{at}.p")
    quantity = number(get(order, "q", at), f"{at}.q")
    if quantity <= 0 or price <= 0:
        raise FrameError(f"{at}: a liquidation of {quantity} at {price}")
    return observe(
        "liquidation",
        text(order, "s", at),
        integer(get(order, "T", at), f"{at}.T"),
        quantity,
        price=price,
        side=side_of(get(order, "S", at), f"{at}.S"),
    )


def read_open_interest(payload: Any, where: str) -> Observation:
    return observe(
        "open_interest",
        text(payload, "symbol", where),
        integer(get(payload, "time", where), f"{where}.time"),
        number(get(payload, "openInterest", where), f"{where}.openInterest"),
    )


def read_premium_index(payload: Any, where: str) -> list[Observation]:
    symbol = text(payload, "symbol", where)
    ts = integer(get(payload, "time", where), f"{where}.time")
    return [
        observe(
            "funding",
            symbol,
            ts,
            number(get(payload, "lastFundingRate", where), f"{where}.lastFundingRate"),
            next_time=integer(get(payload, "nextFundingTime", where), f"{where}.nextFundingTime"),
        ),
        observe("mark_price", symbol, ts, number(get(payload, "markPrice", where), f"{where}.markPrice")),
        observe("index_price", symbol, ts, number(get(payload, "indexPrice", where), f"{where}.indexPrice")),
    ]
