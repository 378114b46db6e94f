"""Local stand-ins for Binance, Coinbase, Kraken, Bybit and OKX: websocket and REST on one port each.

Each speaks its venue's wire format as the public API documentation shows it (the shapes are in the
docstrings of ``trader.marketdata.feeds.<venue>``): subscribe acknowledgements, pongs, heartbeats,
trades, top of book, and the REST trade history that fills gaps. What a connection sends follows a
script over a "tape" of true trades, so that a test knows exactly which trades the gateway must publish once:

- connection 1: a quote, trades, a broken frame, a repeated trade, a corrupted copy of a trade, two
  trades out of order, then trades 15.. with 12..14 left out (a gap only REST can fill), then the
  connection drops without a close frame;
- connection 2: a replay of trades already sent (Kraken's snapshot, Coinbase's last match, plus repeated
  frames), then trades 22.. (20 and 21 happened while disconnected), then keep-alive frames;
- OKX only: connection 2 falls silent after its trades (a stale stream), connection 3 brings the rest.
- Binance only: connection 3 (after the gateway restarted) brings trades 37.., 35 and 36 left out.

Bybit's trade ids are shared across symbols (no gap shows in them), so its connection 1 leaves nothing
out and only the reconnect window (20, 21) must come from REST.
"""

from __future__ import annotations

import asyncio
import itertools
import json
import random
import threading
from collections.abc import Iterable
from dataclasses import dataclass, field
from decimal import Decimal
from http import HTTPStatus
from typing import Any
from urllib.parse import parse_qs, urlsplit

import msgspec
from websockets.asyncio.server import ServerConnection, serve
from websockets.http11 import Request, Response

START_MS = 1_764_000_000_000  # 2025-11-24T16:00:00Z
TAPE_LENGTH = 35
BROKEN_JSON = '{"this is": not json'
_numbers = msgspec.json.Encoder(decimal_format="number")


@dataclass(frozen=True)
class TapeTrade:
    index: int
    seq: int
    price: Decimal
    size: Decimal
    side: str  # the taker's
    ts: int  # epoch ms

    @property
    def trade_id(self) -> str:
        return str(self.seq)


def make_tape(first_id: int, id_step: int = 1, seed: int = 1, length: int = TAPE_LENGTH) -> list[TapeTrade]:
    rng = random.Random(seed)
    price = Decimal("60000.00")
    tape = []
    for index in range(length):
        price += Decimal(rng.randint(-500, 500)) / 100
        size = Decimal(rng.randint(1, 500_000)) / 100_000_000 * 1000  # up to 5, 5 places
        side = rng.choice(["buy", "sell"])
        tape.append(
            TapeTrade(index, first_id + index * id_step, price, size.normalize(), side, START_MS + index * 7)
        )
    return tape


def _maker(side: str) -> str:
    return "sell" if side == "buy" else "buy"


def _iso(ms: int) -> str:
    from datetime import UTC, datetime

    return datetime.fromtimestamp(ms / 1000, tz=UTC).strftime("%Y-%m-%dT%H:%M:%S.") + f"{ms % 1000:03d}123Z"


# Venue encoders: the wire format -------------------------------------------------------------------


@dataclass
class Encoder:
    """One venue's frames and REST answers for one symbol."""

    venue: str
    venue_symbol: str
    tape: list[TapeTrade]
    contiguous: bool = True
    last_sent: int = 0

    def subscribed(self, frame: dict[str, Any] | str, path: str) -> tuple[bool, list[str]]:
        """Whether this client frame (or, for the URL-named streams, the path) subscribes to the symbol,
        and the replies to send."""
        raise NotImplementedError

    def reply(self, frame: str) -> list[str]:
        """Answers to the client's other frames (pings)."""
        return []

    def trade_frames(self, trades: list[TapeTrade]) -> list[str]:
        raise NotImplementedError

    def corrupt(self, trade: TapeTrade) -> str:
        """The trade's frame with its price garbled."""
        return self.trade_frames([trade])[0].replace(_price_text(self, trade), '"abc"', 1)

    def quote(self, trade: TapeTrade) -> str:
        raise NotImplementedError

    def keepalive(self) -> str:
        return self.quote(self.tape[min(self.last_sent, len(self.tape) - 1)])

    def on_connect(self, connection: int, sent: list[TapeTrade]) -> list[str]:
        """What the venue sends by itself right after a subscription (a snapshot, the last match)."""
        return []

    def rest(self, path: str, params: dict[str, str]) -> tuple[int, Any]:
        raise NotImplementedError


def _price_text(encoder: Encoder, trade: TapeTrade) -> str:
    return str(trade.price) if encoder.venue == "kraken" else f'"{trade.price}"'


class BinanceEncoder(Encoder):
    def subscribed(self, frame: dict[str, Any] | str, path: str) -> tuple[bool, list[str]]:
        streams = parse_qs(urlsplit(path).query).get("streams", [""])[0].split("/")
        lower = self.venue_symbol.lower()
        return f"{lower}@trade" in streams and f"{lower}@bookTicker" in streams, []

    def trade_frames(self, trades: list[TapeTrade]) -> list[str]:
        return [
            json.dumps(
                {
                    "stream": f"{self.venue_symbol.lower()}@trade",
                    "data": {
                        "e": "trade",
                        "E": t.ts + 1,
                        "s": self.venue_symbol,
                        "t": t.seq,
                        "p": str(t.price),
                        "q": str(t.size),
                        "T": t.ts,
                        "m": t.side == "sell",
                        "M": True,
                    },
                }
            )
            for t in trades
        ]

    def quote(self, trade: TapeTrade) -> str:
        data = {
            "u": 400900217 + trade.index,
            "s": self.venue_symbol,
            "b": str(trade.price - Decimal("0.01")),
            "B": "31.21000000",
            "a": str(trade.price + Decimal("0.01")),
            "A": "40.66000000",
        }
        return json.dumps({"stream": f"{self.venue_symbol.lower()}@bookTicker", "data": data})

    def rest(self, path: str, params: dict[str, str]) -> tuple[int, Any]:
        if path != "/api/v3/historicalTrades" or params.get("symbol") != self.venue_symbol:
            return 400, {"code": -1121, "msg": "Invalid symbol."}
        start, limit = int(params["fromId"]), min(int(params.get("limit", "500")), 1000)
        rows = [t for t in self.tape if t.seq >= start][:limit]
        return 200, [
            {
                "id": t.seq,
                "price": str(t.price),
                "qty": str(t.size),
                "quoteQty": str(t.price * t.size),
                "time": t.ts,
                "isBuyerMaker": t.side == "sell",
                "isBestMatch": True,
            }
            for t in rows
        ]


class CoinbaseEncoder(Encoder):
    sequence = itertools.count(50_000)

    def subscribed(self, frame: dict[str, Any] | str, path: str) -> tuple[bool, list[str]]:
        if not isinstance(frame, dict) or frame.get("type") != "subscribe":
            return False, []
        ok = self.venue_symbol in frame.get("product_ids", []) and {"matches", "ticker", "heartbeat"} <= set(
            frame.get("channels", [])
        )
        channels = [{"name": c, "product_ids": [self.venue_symbol]} for c in frame.get("channels", [])]
        return ok, [json.dumps({"type": "subscriptions", "channels": channels})]

    def _match(self, t: TapeTrade, kind: str = "match") -> dict[str, Any]:
        return {
            "type": kind,
            "trade_id": t.seq,
            "maker_order_id": "ac928c66-ca53-498f-9c13-a110027a60e8",
            "taker_order_id": "132fb6ae-456b-4654-b4e0-d681ac05cea1",
            "side": _maker(t.side),
            "size": str(t.size),
            "price": str(t.price),
            "product_id": self.venue_symbol,
            "sequence": next(self.sequence),
            "time": _iso(t.ts),
        }

    def trade_frames(self, trades: list[TapeTrade]) -> list[str]:
        return [json.dumps(self._match(t)) for t in trades]

    def quote(self, trade: TapeTrade) -> str:
        return json.dumps(
            {
                "type": "ticker",
                "sequence": next(self.sequence),
                "product_id": self.venue_symbol,
                "price": str(trade.price),
                "best_bid": str(trade.price - Decimal("0.01")),
                "best_bid_size": "0.5",
                "best_ask": str(trade.price + Decimal("0.01")),
                "best_ask_size": "0.7",
                "side": trade.side,
                "time": _iso(trade.ts),
                "trade_id": trade.seq,
                "last_size": str(trade.size),
            }
        )

    def keepalive(self) -> str:
        last = self.tape[self.last_sent - 1].seq if self.last_sent else 0
        return json.dumps(
            {
                "type": "heartbeat",
                "sequence": next(self.sequence),
                "last_trade_id": last,
                "product_id": self.venue_symbol,
                "time": _iso(START_MS),
            }
        )

    def on_connect(self, connection: int, sent: list[TapeTrade]) -> list[str]:
        return [json.dumps(self._match(sent[-1], "last_match"))] if sent else []

    def rest(self, path: str, params: dict[str, str]) -> tuple[int, Any]:
        if path != f"/products/{self.venue_symbol}/trades":
            return 404, {"message": "NotFound"}
        after, limit = int(params.get("after", 10**18)), min(int(params.get("limit", "100")), 1000)
        rows = sorted((t for t in self.tape if t.seq < after), key=lambda t: -t.seq)[:limit]
        return 200, [
            {
                "time": _iso(t.ts),
                "trade_id": t.seq,
                "price": str(t.price),
                "size": str(t.size),
                "side": _maker(t.side),
            }
            for t in rows
        ]


class KrakenEncoder(Encoder):
    rest_pair = "XBTUSD"
    rest_key = "XXBTZUSD"

    def subscribed(self, frame: dict[str, Any] | str, path: str) -> tuple[bool, list[str]]:
        if not isinstance(frame, dict) or frame.get("method") != "subscribe":
            return False, []
        params = frame.get("params", {})
        channel = params.get("channel")
        ok = self.venue_symbol in params.get("symbol", [])
        ack = {
            "method": "subscribe",
            "result": {
                "channel": channel,
                "snapshot": params.get("snapshot", True),
                "symbol": self.venue_symbol,
            },
            "success": ok,
            "time_in": "2023-09-25T09:04:31.742599Z",
            "time_out": "2023-09-25T09:04:31.742648Z",
            "req_id": frame.get("req_id"),
        }
        if not ok:
            ack["error"] = "Currency pair not supported"
        return ok and channel == "trade", [json.dumps(ack)]

    def reply(self, frame: str) -> list[str]:
        message = json.loads(frame)
        if message.get("method") == "ping":
            return [
                json.dumps(
                    {"method": "pong", "req_id": message.get("req_id"), "time_in": "x", "time_out": "y"}
                )
            ]
        return []

    def _trade(self, t: TapeTrade) -> dict[str, Any]:
        return {
            "symbol": self.venue_symbol,
            "side": t.side,
            "price": t.price,
            "qty": t.size,
            "ord_type": "market",
            "trade_id": t.seq,
            "timestamp": _iso(t.ts),
        }

    def trade_frames(self, trades: list[TapeTrade], kind: str = "update") -> list[str]:
        return [
            _numbers.encode({"channel": "trade", "type": kind, "data": [self._trade(t)]}).decode()
            for t in trades
        ]

    def on_connect(self, connection: int, sent: list[TapeTrade]) -> list[str]:
        # The trade channel's snapshot: the latest trades, here all at once in one frame.
        snapshot = {"channel": "trade", "type": "snapshot", "data": [self._trade(t) for t in sent[-5:]]}
        return [_numbers.encode(snapshot).decode()]

    def quote(self, trade: TapeTrade) -> str:
        data = {
            "symbol": self.venue_symbol,
            "bid": trade.price - Decimal("0.1"),
            "bid_qty": Decimal("0.5"),
            "ask": trade.price + Decimal("0.1"),
            "ask_qty": Decimal("1.25"),
            "last": trade.price,
            "volume": Decimal("1234.5"),
            "vwap": trade.price,
            "low": trade.price,
            "high": trade.price,
            "change": Decimal("0"),
            "change_pct": Decimal("0"),
        }
        return _numbers.encode({"channel": "ticker", "type": "update", "data": [data]}).decode()

    def keepalive(self) -> str:
        return json.dumps({"channel": "heartbeat"})

    def rest(self, path: str, params: dict[str, str]) -> tuple[int, Any]:
        if path != "/0/public/Trades" or params.get("pair") != self.rest_pair:
            return 200, {"error": ["EQuery:Unknown asset pair"]}
        since = int(params.get("since", "0"))
        since_ns = since * 1_000_000_000 if since < 10**12 else since
        count = min(int(params.get("count", "1000")), 1000)
        rows = [t for t in self.tape if t.ts * 1_000_000 > since_ns][:count]
        last = str(rows[-1].ts * 1_000_000) if rows else str(since_ns)
        result = [[str(t.price), str(t.size), Decimal(t.ts) / 1000, t.side[0], "m", "", t.seq] for t in rows]
        return 200, {"error": [], "result": {self.rest_key: result, "last": last}}


class BybitEncoder(Encoder):
    def subscribed(self, frame: dict[str, Any] | str, path: str) -> tuple[bool, list[str]]:
        if not isinstance(frame, dict) or frame.get("op") != "subscribe":
            return False, []
        args = frame.get("args", [])
        ok = f"publicTrade.{self.venue_symbol}" in args and f"orderbook.1.{self.venue_symbol}" in args
        ack = {
            "success": ok,
            "ret_msg": "subscribe" if ok else "error:handler not found",
            "conn_id": "cejreaspqfh3sjdnldmg-p",
            "req_id": frame.get("req_id", ""),
            "op": "subscribe",
        }
        return ok, [json.dumps(ack)]

    def reply(self, frame: str) -> list[str]:
        message = json.loads(frame)
        if message.get("op") == "ping":
            pong = {
                "success": True,
                "ret_msg": "pong",
                "conn_id": "0970e817-426e-429a-a679-ff7f55e0b16a",
                "req_id": message.get("req_id", ""),
                "op": "ping",
            }
            return [json.dumps(pong)]
        return []

    def _trade(self, t: TapeTrade) -> dict[str, Any]:
        return {
            "T": t.ts,
            "s": self.venue_symbol,
            "S": "Buy" if t.side == "buy" else "Sell",
            "v": str(t.size),
            "p": str(t.price),
            "L": "PlusTick",
            "i": t.trade_id,
            "BT": False,
        }

    def trade_frames(self, trades: list[TapeTrade]) -> list[str]:
        return [
            json.dumps(
                {
                    "topic": f"publicTrade.{self.venue_symbol}",
                    "type": "snapshot",
                    "ts": t.ts + 3,
                    "data": [self._trade(t)],
                }
            )
            for t in trades
        ]

    def quote(self, trade: TapeTrade) -> str:
        data = {
            "s": self.venue_symbol,
            "b": [[str(trade.price - Decimal("0.01")), "0.006"]],
            "a": [[str(trade.price + Decimal("0.01")), "0.029"]],
            "u": 18521288 + trade.index,
            "seq": 7961638724 + trade.index,
        }
        topic = f"orderbook.1.{self.venue_symbol}"
        return json.dumps({"topic": topic, "type": "snapshot", "ts": trade.ts, "data": data, "cts": trade.ts})

    def rest(self, path: str, params: dict[str, str]) -> tuple[int, Any]:
        if path != "/v5/market/recent-trade" or params.get("symbol") != self.venue_symbol:
            return 200, {
                "retCode": 10001,
                "retMsg": "params error",
                "result": {},
                "retExtInfo": {},
                "time": 0,
            }
        limit = min(int(params.get("limit", "60")), 60)
        rows = sorted(self.tape, key=lambda t: -t.ts)[:limit]
        listed = [
            {
                "execId": t.trade_id,
                "symbol": self.venue_symbol,
                "price": str(t.price),
                "size": str(t.size),
                "side": "Buy" if t.side == "buy" else "Sell",
                "time": str(t.ts),
                "isBlockTrade": False,
            }
            for t in rows
        ]
        result = {"category": "spot", "list": listed}
        return 200, {"retCode": 0, "retMsg": "OK", "result": result, "retExtInfo": {}, "time": START_MS}


class OkxEncoder(Encoder):
    def subscribed(self, frame: dict[str, Any] | str, path: str) -> tuple[bool, list[str]]:
        if not isinstance(frame, dict) or frame.get("op") != "subscribe":
            return False, []
        args = frame.get("args", [])
        wanted = [
            {"channel": "trades", "instId": self.venue_symbol},
            {"channel": "bbo-tbt", "instId": self.venue_symbol},
        ]
        ok = all(w in args for w in wanted)
        replies = [json.dumps({"event": "subscribe", "arg": a, "connId": "a4d3ae55"}) for a in args]
        if not ok:
            replies = [
                json.dumps(
                    {"event": "error", "code": "60012", "msg": "Invalid request", "connId": "a4d3ae55"}
                )
            ]
        return ok, replies

    def reply(self, frame: str) -> list[str]:
        return ["pong"] if frame == "ping" else []

    def trade_frames(self, trades: list[TapeTrade]) -> list[str]:
        return [
            json.dumps(
                {
                    "arg": {"channel": "trades", "instId": self.venue_symbol},
                    "data": [
                        {
                            "instId": self.venue_symbol,
                            "tradeId": t.trade_id,
                            "px": str(t.price),
                            "sz": str(t.size),
                            "side": t.side,
                            "ts": str(t.ts),
                            "count": "1",
                        }
                    ],
                }
            )
            for t in trades
        ]

    def quote(self, trade: TapeTrade) -> str:
        data = {
            "asks": [[str(trade.price + Decimal("0.1")), "55154", "0", "2"]],
            "bids": [[str(trade.price - Decimal("0.1")), "57745", "0", "2"]],
            "ts": str(trade.ts),
            "seqId": 363996337 + trade.index,
        }
        return json.dumps({"arg": {"channel": "bbo-tbt", "instId": self.venue_symbol}, "data": [data]})

    def rest(self, path: str, params: dict[str, str]) -> tuple[int, Any]:
        if path != "/api/v5/market/history-trades" or params.get("instId") != self.venue_symbol:
            return 200, {"code": "51001", "msg": "Instrument ID does not exist", "data": []}
        after, limit = int(params.get("after", 10**18)), min(int(params.get("limit", "100")), 100)
        rows = sorted((t for t in self.tape if t.seq < after), key=lambda t: -t.seq)[:limit]
        data = [
            {
                "instId": self.venue_symbol,
                "side": t.side,
                "sz": str(t.size),
                "px": str(t.price),
                "tradeId": t.trade_id,
                "ts": str(t.ts),
            }
            for t in rows
        ]
        return 200, {"code": "0", "msg": "", "data": data}


# Scripts ---------------------------------------------------------------------------------------------


def _standard_scripts(stale: bool) -> dict[int, list[tuple[Any, ...]]]:
    second_tail: list[tuple[Any, ...]] = [("trades", range(22, 30))]
    scripts: dict[int, list[tuple[Any, ...]]] = {
        1: [
            ("quote", 0),
            ("trades", range(0, 6)),
            ("raw", BROKEN_JSON),
            ("trades", range(6, 10)),
            ("trades", [5]),  # a repeated frame
            ("corrupt", 10),
            ("trades", [11, 10]),  # out of order: 10 is late, within the grace period
            ("trades", range(15, 20)),  # 12..14 left out: a gap for REST to fill
            ("drop",),
        ],
        2: [("trades", [17, 18, 19]), *second_tail],  # 20 and 21 happened while disconnected
    }
    if stale:
        scripts[2] += [("silence",)]
        scripts[3] = [("trades", range(30, TAPE_LENGTH)), ("keepalive",)]
    else:
        scripts[2] += [("trades", range(30, TAPE_LENGTH)), ("keepalive",)]
    return scripts


def _bybit_scripts() -> dict[int, list[tuple[Any, ...]]]:
    scripts = _standard_scripts(stale=False)
    scripts[1] = [
        step if step != ("trades", range(15, 20)) else ("trades", range(12, 20)) for step in scripts[1]
    ]
    scripts[2] = [("trades", [18, 19]), ("trades", range(22, TAPE_LENGTH)), ("keepalive",)]
    return scripts


# Servers ---------------------------------------------------------------------------------------------


@dataclass
class FakeExchange:
    """One venue on 127.0.0.1: websocket at ``ws_url``, REST at ``rest_url`` (the same port)."""

    encoder: Encoder
    scripts: dict[int, list[tuple[Any, ...]]]
    port: int = 0
    connections: int = 0
    client_frames: list[str] = field(default_factory=list)
    rest_calls: list[tuple[str, dict[str, str]]] = field(default_factory=list)
    dead_sent: list[str] = field(default_factory=list)
    pace_s: float = 0.003
    _server: Any = None
    _sent: list[TapeTrade] = field(default_factory=list)

    @property
    def ws_url(self) -> str:
        return f"ws://127.0.0.1:{self.port}/ws"

    @property
    def rest_url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    @property
    def venue(self) -> str:
        return self.encoder.venue

    def expected_trades(self) -> list[TapeTrade]:
        """The trades of the first two or three connections (Binance has more, for after a restart)."""
        return self.encoder.tape[:TAPE_LENGTH]

    def expected_dead(self) -> list[str]:
        """The frames that must end in the dead letters, as they were sent."""
        return list(self.dead_sent)

    async def start(self) -> None:
        self._server = await serve(self._handle, "127.0.0.1", self.port, process_request=self._http)
        self.port = self._server.sockets[0].getsockname()[1]

    async def stop(self) -> None:
        if self._server is not None:
            self._server.close()
            await self._server.wait_closed()

    def _http(self, connection: ServerConnection, request: Request) -> Response | None:
        if request.headers.get("Upgrade", "").lower() == "websocket":
            return None
        parts = urlsplit(request.path)
        params = {k: v[0] for k, v in parse_qs(parts.query).items()}
        self.rest_calls.append((parts.path, params))
        status, body = self.encoder.rest(parts.path, params)
        response = connection.respond(HTTPStatus(status), _numbers.encode(body).decode())
        response.headers["Content-Type"] = "application/json"
        return response

    async def _handle(self, ws: ServerConnection) -> None:
        self.connections += 1
        number = self.connections
        subscribed = asyncio.Event()
        path = ws.request.path if ws.request else ""
        if self.encoder.subscribed({}, path)[0]:
            subscribed.set()  # the streams are named in the URL
        silent = asyncio.Event()
        reader = asyncio.create_task(self._read(ws, path, subscribed, silent))
        try:
            await asyncio.wait_for(subscribed.wait(), timeout=5)
            for frame in self.encoder.on_connect(number, self._sent):
                await ws.send(frame)
            await self._play(ws, self.scripts.get(number, [("keepalive",)]), silent)
        except Exception:
            pass
        finally:
            reader.cancel()

    async def _read(
        self, ws: ServerConnection, path: str, subscribed: asyncio.Event, silent: asyncio.Event
    ) -> None:
        async for frame in ws:
            text = frame if isinstance(frame, str) else frame.decode()
            self.client_frames.append(text)
            if silent.is_set():
                continue  # a stale stream answers nothing, not even pings
            try:
                message: dict[str, Any] | str = json.loads(text)
            except json.JSONDecodeError:
                message = text
            ok, replies = self.encoder.subscribed(message, path)
            if not replies:
                replies = self.encoder.reply(text)
            for reply in replies:
                await ws.send(reply)
            if ok:
                subscribed.set()

    async def _play(
        self, ws: ServerConnection, script: Iterable[tuple[Any, ...]], silent: asyncio.Event
    ) -> None:
        tape = self.encoder.tape
        for step in script:
            kind = step[0]
            if kind == "trades":
                for index in step[1]:
                    for frame in self.encoder.trade_frames([tape[index]]):
                        await ws.send(frame)
                    self._sent.append(tape[index])
                    self.encoder.last_sent = max(self.encoder.last_sent, index + 1)
                    await asyncio.sleep(self.pace_s)
            elif kind == "quote":
                await ws.send(self.encoder.quote(tape[step[1]]))
            elif kind == "raw":
                self.dead_sent.append(step[1])
                await ws.send(step[1])
            elif kind == "corrupt":
                self.dead_sent.append(self.encoder.corrupt(tape[step[1]]))
                await ws.send(self.dead_sent[-1])
            elif kind == "drop":
                await asyncio.sleep(0.2)
                ws.transport.abort()  # no close frame: the network went away
                return
            elif kind == "wait":  # send nothing more, but answer pings
                await ws.wait_closed()
                return
            elif kind == "silence":
                silent.set()
                await ws.wait_closed()
                return
            elif kind == "keepalive":
                while True:
                    await ws.send(self.encoder.keepalive())
                    await asyncio.sleep(0.3)


def build_exchanges(okx_stale: bool = True) -> dict[str, FakeExchange]:
    """The five venues, each with its own tape of 35 trades."""
    encoders = {
        "binance": BinanceEncoder(
            "binance", "BTCUSDT", make_tape(28_457_000, seed=1, length=TAPE_LENGTH + 5)
        ),
        "coinbase": CoinbaseEncoder("coinbase", "BTC-USD", make_tape(370_843_401, seed=2)),
        "kraken": KrakenEncoder("kraken", "BTC/USD", make_tape(61_044_952, seed=3)),
        # Bybit's ids are shared by all symbols: a symbol's own go up in steps.
        "bybit": BybitEncoder(
            "bybit", "BTCUSDT", make_tape(2_290_000_000_036_455_162, 7, seed=4), contiguous=False
        ),
        "okx": OkxEncoder("okx", "BTC-USDT", make_tape(130_639_474, seed=5)),
    }
    scripts = {name: _standard_scripts(stale=False) for name in encoders}
    scripts["okx"] = _standard_scripts(stale=okx_stale)
    scripts["bybit"] = _bybit_scripts()
    # After the gateway restarts: trades 35 and 36 happened while it was down.
    scripts["binance"][3] = [("trades", range(TAPE_LENGTH + 2, TAPE_LENGTH + 5)), ("keepalive",)]
    return {name: FakeExchange(encoder, scripts[name]) for name, encoder in encoders.items()}


# The symbols the gateway is configured with, in each venue's own spelling where it has one.
CONFIGURED_SYMBOLS = {
    "binance": "BTCUSDT",
    "coinbase": "BTC-USD",
    "kraken": "XBT/USD",
    "bybit": "BTCUSDT",
    "okx": "BTC-USDT",
}
UNIFIED = {
    "binance": "BTCUSDT",
    "coinbase": "BTCUSD",
    "kraken": "BTCUSD",
    "bybit": "BTCUSDT",
    "okx": "BTCUSDT",
}


class ExchangesThread:
    """The fake exchanges on their own event loop, for tests whose own loop blocks (subprocesses)."""

    def __init__(self, exchanges: dict[str, FakeExchange]) -> None:
        self.exchanges = exchanges
        self.loop = asyncio.new_event_loop()
        self._thread = threading.Thread(target=self.loop.run_forever, daemon=True)

    def __enter__(self) -> ExchangesThread:
        self._thread.start()
        for exchange in self.exchanges.values():
            asyncio.run_coroutine_threadsafe(exchange.start(), self.loop).result(10)
        return self

    def __exit__(self, *exc: object) -> None:
        for exchange in self.exchanges.values():
            asyncio.run_coroutine_threadsafe(exchange.stop(), self.loop).result(10)
        self.loop.call_soon_threadsafe(self.loop.stop)
        self._thread.join(10)
