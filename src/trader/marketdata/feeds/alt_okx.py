"""OKX v5 perpetual swaps alternative data: the ``funding-rate``, ``mark-price``, ``index-tickers``,
``open-interest`` and ``liquidation-orders`` channels of the public websocket.

- Subscribe ``{"op": "subscribe", "args": [{"channel": "funding-rate", "instId": "BTC-USDT-SWAP"},
  {"channel": "index-tickers", "instId": "BTC-USDT"}, {"channel": "liquidation-orders", "instType":
  "SWAP"}, ...]}``; keep-alive: the text ``ping``, answered by ``pong``.
- ``funding-rate``: ``{"arg": {...}, "data": [{"instId": "BTC-USDT-SWAP", "fundingRate": "0.0001875",
  "fundingTime": "1700726400000", "nextFundingRate": "", "nextFundingTime": "1700755200000", "ts":
  "1700724675402", ...}]}``: ``fundingRate`` is charged at ``fundingTime``; ``nextFundingRate`` (the
  predicted one) is empty where OKX no longer publishes it.
- ``mark-price``: ``{"data": [{"instId": "BTC-USDT-SWAP", "markPx": "42310.6", "ts": "1630049139746"}]}``.
- ``index-tickers`` (the index named ``BTC-USDT``): ``{"data": [{"instId": "BTC-USDT", "idxPx":
  "42310.6", "ts": "1597026383085", ...}]}``.
- ``open-interest``: ``{"data": [{"instId": "BTC-USDT-SWAP", "oi": "5000", "oiCcy": "50", "oiUsd":
  "2100000", "ts": "1597026383085"}]}``: ``oiCcy`` is in base units.
- ``liquidation-orders`` (every swap; the configured ones are kept): ``{"arg": {"channel":
  "liquidation-orders", "instType": "SWAP"}, "data": [{"instId": "BTC-USDT-SWAP", "details": [{"side":
  "sell", "posSide": "long", "bkPx": "42000.1", "sz": "13", "ts": "1692266434010", ...}]}]}``: ``sz`` is
  in contracts, turned into base units with the contract's ``ctVal`` (``GET
  /api/v5/public/instruments?instType=SWAP&instId=``, asked once at start); ``side`` is the liquidation
  order's.
- REST (20 requests per 2 s each): ``/api/v5/public/funding-rate``, ``/api/v5/public/mark-price``,
  ``/api/v5/market/index-tickers``, ``/api/v5/public/open-interest`` (the channels' rows under
  ``{"code": "0", "data": [...]}``) and ``/api/v5/public/liquidation-orders?instType=SWAP&instFamily=
  &state=filled`` (the liquidations of the last days: a reconnect recovers those it missed).
"""

from __future__ import annotations

import json
from decimal import Decimal
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

CHANNELS = {
    "funding": "funding-rate",
    "mark_price": "mark-price",
    "index_price": "index-tickers",
    "open_interest": "open-interest",
}


def index_of(inst_id: str) -> str:
    """``BTC-USDT-SWAP`` -> ``BTC-USDT``: the index the swap follows."""
    return inst_id.removesuffix("-SWAP")


class OkxAlt(AltVenue):
    name = "okx"
    ws_url = "wss://ws.okx.com:8443/ws/v5/public"
    rest_url = "https://www.okx.com"
    rest_rate_per_s = 5.0
    rest_burst = 5
    stale_after_s = 30.0
    ping_interval_s = 15.0
    streamed = frozenset({"funding", "mark_price", "index_price", "open_interest", "liquidation"})

    def __init__(self, contract_values: dict[str, Decimal] | None = None) -> None:
        self.contract_values: dict[str, Decimal] = dict(contract_values or {})
        self._swaps: set[str] = set()

    def venue_symbol(self, instrument: Instrument) -> str:
        return f"{instrument.base}-{instrument.quote}-SWAP"

    def subscribe_frames(self, venue_symbols: list[str], kinds: frozenset[str]) -> list[str]:
        self._swaps = set(venue_symbols)
        args: list[dict[str, str]] = []
        for symbol in venue_symbols:
            for kind, channel in CHANNELS.items():
                if kind in kinds:
                    inst_id = index_of(symbol) if kind == "index_price" else symbol
                    args.append({"channel": channel, "instId": inst_id})
        if "liquidation" in kinds:
            args.append({"channel": "liquidation-orders", "instType": "SWAP"})
        return [json.dumps({"op": "subscribe", "args": args})]

    def ping_frame(self) -> str | None:
        return "ping"

    def parse(self, frame: str | bytes) -> AltParsed:
        if frame in ("pong", b"pong"):
            return AltParsed([Notice("pong")])
        return super().parse(frame)

    def symbol_of(self, message: dict[str, Any]) -> str | None:
        arg = message.get("arg")
        inst_id = arg.get("instId") if isinstance(arg, dict) else None
        if isinstance(inst_id, str) and arg.get("channel") == "index-tickers":  # type: ignore[union-attr]
            return f"{inst_id}-SWAP"
        return inst_id if isinstance(inst_id, str) else None

    def parse_message(self, message: dict[str, Any]) -> AltParsed:
        if "event" in message:
            return _event(message)
        channel = text(get(message, "arg", "frame"), "channel", "arg")
        data = items_of(get(message, "data", "frame"), "data")
        parsed = AltParsed(venue_symbol=self.symbol_of(message))
        for index, entry in enumerate(data):
            try:
                parsed.items.extend(self.read(channel, entry, f"data[{index}]"))
            except FrameError as exc:
                parsed.errors.append(exc.reason)
        if not data and channel not in (*CHANNELS.values(), "liquidation-orders"):
            parsed.items.append(Notice("info", f"channel {channel}"))
        return parsed

    def read(self, channel: str, entry: Any, where: str) -> list[Observation]:
        if channel == "funding-rate":
            return [read_funding(entry, where)]
        if channel == "mark-price":
            inst_id = text(entry, "instId", where)
            return [
                observe("mark_price", inst_id, _ts(entry, where), number(get(entry, "markPx", where), where))
            ]
        if channel == "index-tickers":
            swap = f"{text(entry, 'instId', where)}-SWAP"
            return [
                observe("index_price", swap, _ts(entry, where), number(get(entry, "idxPx", where), where))
            ]
        if channel == "open-interest":
            inst_id = text(entry, "instId", where)
            oi = number(get(entry, "oiCcy", where), f"{where}.oiCcy")
            return [observe("open_interest", inst_id, _ts(entry, where), oi)]
        if channel == "liquidation-orders":
            return self.read_liquidations(entry, where)
        raise FrameError(f"arg.channel: {channel!r} is not a channel this feed subscribes to")

    def read_liquidations(self, entry: Any, where: str) -> list[Observation]:
        inst_id = text(entry, "instId", where)
        if self._swaps and inst_id not in self._swaps:
            return []  # the channel gives every swap's; only the configured ones are wanted
        size = self.contract_values.get(inst_id)
        found = []
        for index, detail in enumerate(items_of(get(entry, "details", where), f"{where}.details")):
            at = f"{where}.details[{index}]"
            contracts = number(get(detail, "sz", at), f"{at}.sz")
            price = number(get(detail, "bkPx", at), f"{at}.bkPx")
            if contracts <= 0 or price <= 0:
                raise FrameError(f"{at}: a liquidation of {contracts} at {price}")
            found.append(
                observe(
                    "liquidation",
                    inst_id,
                    _ts(detail, at),
                    contracts * size if size is not None else contracts,
                    unit=None if size is not None else "contracts",
                    price=price,
                    side=side_of(get(detail, "side", at), f"{at}.side"),
                )
            )
        return found

    async def prepare(self, rest: Rest, venue_symbols: list[str]) -> None:
        for symbol in venue_symbols:
            if symbol in self.contract_values:
                continue
            payload = _data(
                await rest.get_json("/api/v5/public/instruments", {"instType": "SWAP", "instId": symbol}),
                "instruments",
            )
            for row in payload:
                if isinstance(row, dict) and row.get("instId") == symbol:
                    self.contract_values[symbol] = number(
                        get(row, "ctVal", "instruments"), "instruments.ctVal"
                    )

    async def fetch(self, rest: Rest, venue_symbol: str, kind: str) -> list[Observation]:
        if kind == "liquidation":
            params = {"instType": "SWAP", "instFamily": index_of(venue_symbol), "state": "filled"}
            rows = _data(await rest.get_json("/api/v5/public/liquidation-orders", params), kind)
            found = []
            for i, row in enumerate(rows):
                if isinstance(row, dict) and row.get("instId") == venue_symbol:
                    found.extend(self.read_liquidations(row, f"liquidation-orders[{i}]"))
            return found
        if kind not in REST:
            return []
        path, params = REST[kind](venue_symbol)
        rows = _data(await rest.get_json(path, params), kind)
        channel = CHANNELS[kind]
        return [o for i, row in enumerate(rows) for o in self.read(channel, row, f"{channel}[{i}]")]


# kind -> the REST path and parameters giving the latest of it, in the rows its channel pushes
REST = {
    "funding": lambda s: ("/api/v5/public/funding-rate", {"instId": s}),
    "mark_price": lambda s: ("/api/v5/public/mark-price", {"instType": "SWAP", "instId": s}),
    "index_price": lambda s: ("/api/v5/market/index-tickers", {"instId": index_of(s)}),
    "open_interest": lambda s: ("/api/v5/public/open-interest", {"instType": "SWAP", "instId": s}),
}


def read_funding(entry: Any, where: str) -> Observation:
    return observe(
        "funding",
        text(entry, "instId", where),
        _ts(entry, where),
        number(get(entry, "fundingRate", where), f"{where}.fundingRate"),
        predicted=optional_number(entry, "nextFundingRate", where),
        next_time=integer(get(entry, "fundingTime", where), f"{where}.fundingTime"),
    )


def _ts(entry: Any, where: str) -> int:
    return integer(get(entry, "ts", where), f"{where}.ts")


def _data(payload: Any, where: str) -> list[Any]:
    code = get(payload, "code", where)
    if code != "0":
        raise FrameError(f"{where}: code {code}: {payload.get('msg')}")
    return items_of(get(payload, "data", where), f"{where}.data")


def _event(message: dict[str, Any]) -> AltParsed:
    event = message["event"]
    if event == "error":
        return AltParsed([Notice("error", f"{message.get('code')}: {message.get('msg')}")])
    return AltParsed([Notice("subscribed", f"{event}: {json.dumps(message.get('arg'))[:200]}")])
