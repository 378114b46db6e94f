"""OKX, API v5 public websocket: the ``trades`` and ``bbo-tbt`` channels.

- Subscribe: ``{"op": "subscribe", "args": [{"channel": "trades", "instId": "BTC-USDT"}, ...]}``;
  acknowledged by ``{"event": "subscribe", "arg": {...}, "connId": "..."}``, refused by
  ``{"event": "error", "code": "60012", "msg": "..."}``.
- Trades: ``{"arg": {"channel": "trades", "instId": "BTC-USDT"}, "data": [{"instId": "BTC-USDT",
  "tradeId": "130639474", "px": "42219.9", "sz": "0.12060306", "side": "buy", "ts": "1630048897897",
  "count": "3"}]}``. One message per taker order and price: ``count`` fills aggregated, ``tradeId`` the
  last of them, so the ids it covers are ``tradeId - count + 1``..``tradeId`` (one by one per instrument).
- Top of book: ``bbo-tbt``: ``{"data": [{"asks": [["111.06", "55154", "0", "2"]], "bids": [[...]],
  "ts": "1670324386802", "seqId": 363996337}]}``.
- Keep-alive: the text ``ping`` (answered by the text ``pong``) when nothing came for a while: the server
  closes a connection silent for 30 s.
- Gaps: ``GET /api/v5/market/history-trades?instId=&type=1&after=<tradeId>&limit=100``: single fills
  older than ``after``, newest first (20 requests per 2 s).
"""

from __future__ import annotations

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

PAGE = 100


class Okx(Venue):
    name = "okx"
    ws_url = "wss://ws.okx.com:8443/ws/v5/public"
    rest_url = "https://www.okx.com"
    rest_rate_per_s = 5.0
    rest_burst = 5
    stale_after_s = 30.0
    ping_interval_s = 15.0

    def venue_symbol(self, instrument: Instrument) -> str:
        return f"{instrument.base}-{instrument.quote}"

    def subscribe_frames(self, venue_symbols: list[str]) -> list[str]:
        args = [{"channel": c, "instId": s} for s in venue_symbols for c in ("trades", "bbo-tbt")]
        return [json.dumps({"op": "subscribe", "args": args})]

    def ping_frame(self) -> str | None:
        return "ping"

    def parse(self, frame: str | bytes) -> Parsed:
        if frame in ("pong", b"pong"):  # the answer to the text "ping": not JSON
            return Parsed([Notice("pong")])
        return super().parse(frame)

    def symbol_of(self, message: dict[str, Any]) -> str | None:
        arg = message.get("arg")
        return arg.get("instId") if isinstance(arg, dict) else None

    def parse_message(self, message: dict[str, Any]) -> Parsed:
        if "event" in message:
            return _event(message)
        arg = get(message, "arg", "frame")
        channel = text(arg, "channel", "arg")
        inst_id = text(arg, "instId", "arg")
        data = items_of(get(message, "data", "frame"), "data")
        parsed = Parsed(venue_symbol=inst_id)
        if channel == "trades":
            parse_each(parsed, data, "data", read_trade)
        elif channel == "bbo-tbt":
            parse_each(parsed, data, "data", lambda entry, where: read_bbo(inst_id, entry, where))
        else:
            parsed.items.append(Notice("info", f"channel {channel}"))
        return parsed

    async def fetch_trades(self, rest: Rest, wanted: TradeRange, limit: int) -> list[Trade]:
        if wanted.first is None or wanted.last is None:
            return []
        trades: list[Trade] = []
        after = wanted.last + 1  # pages go back in time from here
        while after > wanted.first and len(trades) < limit:
            params = {"instId": wanted.venue_symbol, "type": "1", "after": str(after), "limit": str(PAGE)}
            page = parse_rest_trades(await rest.get_json("/api/v5/market/history-trades", params))
            if not page:
                break
            trades.extend(t for t in page if t.seq is not None and wanted.first <= t.seq <= wanted.last)
            after = min(t.seq or 0 for t in page)
        return trades


def read_trade(entry: Any, where: str) -> Trade:
    trade_id = integer(get(entry, "tradeId", where), f"{where}.tradeId")
    count = integer(entry.get("count", 1), f"{where}.count")
    if count < 1:
        raise FrameError(f"{where}.count: must be at least 1, got {count}")
    return Trade(
        venue_symbol=text(entry, "instId", where),
        trade_id=str(trade_id),
        price=number(get(entry, "px", where), f"{where}.px"),
        size=number(get(entry, "sz", where), f"{where}.sz"),
        side=side_of(get(entry, "side", where), f"{where}.side"),
        timestamp=integer(get(entry, "ts", where), f"{where}.ts"),
        seq=trade_id,
        span=count,
    )


def read_bbo(inst_id: str, entry: Any, where: str) -> Quote:
    return Quote(inst_id, _best(entry, "bids", where), _best(entry, "asks", where))


def parse_rest_trades(payload: Any) -> list[Trade]:
    """``{"code": "0", "msg": "", "data": [{"instId": "BTC-USDT", "side": "sell", "sz": "0.00001",
    "px": "29963.2", "tradeId": "242720720", "ts": "1654161646974"}]}``, newest first."""
    code = get(payload, "code", "history-trades")
    if code != "0":
        raise FrameError(f"history-trades: code {code}: {payload.get('msg')}")
    trades = []
    for index, row in enumerate(items_of(get(payload, "data", "history-trades"), "data")):
        if not isinstance(row, dict):
            raise FrameError(f"data[{index}]: expected an object")
        trades.append(read_trade({**row, "count": 1}, f"data[{index}]"))  # REST gives single fills
    return trades


def _best(entry: Any, side: str, where: str) -> Any:
    levels = items_of(get(entry, side, where), f"{where}.{side}")
    if not levels:
        return None
    level = levels[0]
    if not isinstance(level, list) or not level:
        raise FrameError(f"{where}.{side}[0]: expected [price, size, ...]")
    return number(level[0], f"{where}.{side}[0][0]")


def _event(message: dict[str, Any]) -> Parsed:
    event = message["event"]
    if event == "error":
        return Parsed([Notice("error", f"{message.get('code')}: {message.get('msg')}")])
    return Parsed([Notice("subscribed", f"{event}: {json.dumps(message.get('arg'))[:200]}")])
