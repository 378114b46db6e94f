# ruff: noqa: E501  (the venues' frames read best one to a line)
"""Local stand-ins for the derivatives data of Binance USD-M, Bybit v5 linear and OKX v5 swaps: websocket and
REST on one port each, in each venue's documented wire format (the shapes are in the docstrings of
``trader.marketdata.feeds.alt_<venue>``).

Each connection plays a script of ``Step``s: observations (funding with mark and index prices, open
interest, liquidations), a frame sent twice, an observation older than one already sent, malformed frames,
an abrupt disconnect, then (connection 2) the last frame again and more, then keep-alive. The fake writes
down what each valid frame and REST answer means, as ``<venue>:<identity>`` -> value: what the feed must
publish exactly once. REST calls are recorded with their time, to check the rate limit.
"""

from __future__ import annotations

import asyncio
import json
import time
from dataclasses import dataclass, field
from decimal import Decimal
from http import HTTPStatus
from typing import Any
from urllib.parse import parse_qs, urlsplit

from websockets.asyncio.server import ServerConnection, serve
from websockets.http11 import Request, Response

START_MS = 1_764_000_000_000
NEXT_FUNDING = START_MS + 8 * 3_600_000
CONTRACT_VALUE = Decimal("0.01")  # OKX BTC-USDT-SWAP: 0.01 BTC a contract
BROKEN = '{"this is": not json'


@dataclass(frozen=True)
class Step:
    """``mark`` (funding rate, mark and index at ``ts``), ``oi``, ``liq`` (``side`` is the liquidation
    order's), ``again`` (the last frame once more), ``raw`` (a malformed frame), ``bad`` (a frame with a
    value that is no number), ``drop``, ``keepalive``, ``marks`` (``value`` marks from number ``ts`` on)."""

    kind: str
    ts: int = 0
    value: Decimal = Decimal(0)
    price: Decimal = Decimal(0)
    side: str = "sell"


def mark(i: int, ts: int | None = None) -> Step:
    return Step("mark", START_MS + 1000 * i if ts is None else ts, Decimal("0.0001") + Decimal(i) / 100_000,
                Decimal("60000.5") + i)  # fmt: skip


def script() -> dict[int, list[Step]]:
    """Connection 1: data, a repeat, one out of order, bad frames, a drop. Connection 2: a replay, more."""
    return {
        1: [
            mark(0), Step("oi", START_MS + 10, Decimal("68744.761")),
            Step("liq", START_MS + 20, Decimal("0.03"), Decimal("59990.1"), "sell"),
            mark(1), Step("again"), mark(3), mark(2),  # 2 after 3: out of order
            Step("raw", 0, Decimal(0)),  # broken JSON
            Step("liq", START_MS + 21, Decimal("0.05"), Decimal("59980"), "buy"),
            Step("bad"),  # well-formed, a value that is not a number
            mark(4), Step("drop"),
        ],
        2: [mark(4), mark(5), Step("oi", START_MS + 5010, Decimal("68750")), mark(6), Step("keepalive")],
    }  # fmt: skip


@dataclass
class FakeAltExchange:
    venue: str
    scripts: dict[int, list[Step]] = field(default_factory=script)
    port: int = 0
    connections: int = 0
    pace_s: float = 0.01
    expected: dict[str, Decimal] = field(default_factory=dict)  # msg id -> value
    dead_sent: list[str] = field(default_factory=list)
    client_frames: list[str] = field(default_factory=list)
    rest_calls: list[tuple[float, str, dict[str, str]]] = field(default_factory=list)
    rest_ts: int = START_MS + 100_000
    _server: Any = None
    _ticker_sent: bool = False

    @property
    def ws_url(self) -> str:
        return f"ws://127.0.0.1:{self.port}/ws"

    @property
    def rest_url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    @property
    def venue_symbol(self) -> str:
        return "BTC-USDT-SWAP" if self.venue == "okx" else "BTCUSDT"

    async def start(self) -> None:
        self._server = await serve(self._handle, "127.0.0.1", self.port, process_request=self._http)
        self.port = self._server.sockets[0].getsockname()[1]

    async def stop(self) -> None:
        if self._server is not None:
            self._server.close()
            await self._server.wait_closed()

    # What a frame means ---------------------------------------------------------------------------

    def _expect(self, kind: str, ts: int, value: Decimal, suffix: str = "") -> None:
        self.expected[f"{self.venue}:{kind}:{self.venue_symbol}:{ts}{suffix}"] = value

    def _expect_mark(self, step: Step) -> None:
        self._expect("funding", step.ts, step.value)
        self._expect("mark_price", step.ts, step.price)
        self._expect("index_price", step.ts, step.price + Decimal("0.25"))

    def _expect_liq(self, step: Step) -> None:
        self._expect("liquidation", step.ts, step.value, f":{step.side}:{step.price}:{step.value}")

    # The venues' frames ---------------------------------------------------------------------------

    def frames(self, step: Step) -> list[str]:
        """The frames of one step, in the venue's wire format; the expectations written down."""
        encode = {"binance": self._binance, "bybit": self._bybit, "okx": self._okx}[self.venue]
        if step.kind == "mark":
            self._expect_mark(step)
        elif step.kind == "liq":
            self._expect_liq(step)
        elif step.kind == "oi" and self.venue != "binance":  # Binance streams no open interest
            self._expect("open_interest", step.ts, step.value)
        return encode(step)

    def _binance(self, step: Step) -> list[str]:
        if step.kind == "mark":
            data = {"e": "markPriceUpdate", "E": step.ts, "s": "BTCUSDT", "p": str(step.price),
                    "i": str(step.price + Decimal("0.25")), "P": str(step.price), "r": str(step.value),
                    "T": NEXT_FUNDING}  # fmt: skip
            return [json.dumps({"stream": "btcusdt@markPrice@1s", "data": data})]
        if step.kind == "liq":
            order = {"s": "BTCUSDT", "S": step.side.upper(), "o": "LIMIT", "f": "IOC", "q": str(step.value),
                     "p": str(step.price - 5), "ap": str(step.price), "X": "FILLED", "l": str(step.value),
                     "z": str(step.value), "T": step.ts}  # fmt: skip
            return [
                json.dumps(
                    {"stream": "btcusdt@forceOrder", "data": {"e": "forceOrder", "E": step.ts, "o": order}}
                )
            ]
        if step.kind == "bad":
            bad = {
                "e": "markPriceUpdate",
                "E": START_MS,
                "s": "BTCUSDT",
                "p": "lots",
                "i": "1",
                "r": "0",
                "T": 1,
            }
            return [json.dumps({"stream": "btcusdt@markPrice@1s", "data": bad})]
        return []

    def _bybit(self, step: Step) -> list[str]:
        if step.kind == "mark":
            data = {"symbol": "BTCUSDT", "markPrice": str(step.price), "indexPrice": str(step.price + Decimal("0.25")),
                    "fundingRate": str(step.value)}  # fmt: skip
            kind = "delta"
            if not self._ticker_sent:
                data.update(nextFundingTime=str(NEXT_FUNDING), lastPrice=str(step.price))
                kind, self._ticker_sent = "snapshot", True
            return [
                json.dumps({"topic": "tickers.BTCUSDT", "type": kind, "data": data, "cs": 1, "ts": step.ts})
            ]
        if step.kind == "oi":
            data = {"symbol": "BTCUSDT", "openInterest": str(step.value)}
            return [
                json.dumps(
                    {"topic": "tickers.BTCUSDT", "type": "delta", "data": data, "cs": 2, "ts": step.ts}
                )
            ]
        if step.kind == "liq":
            position = "Buy" if step.side == "sell" else "Sell"  # Bybit names the liquidated position's side
            entry = {"T": step.ts, "s": "BTCUSDT", "S": position, "v": str(step.value), "p": str(step.price)}
            return [
                json.dumps(
                    {"topic": "allLiquidation.BTCUSDT", "type": "snapshot", "ts": step.ts, "data": [entry]}
                )
            ]
        if step.kind == "bad":
            entry = {"T": START_MS, "s": "BTCUSDT", "S": "Buy", "v": "lots", "p": "1"}
            return [
                json.dumps({"topic": "allLiquidation.BTCUSDT", "type": "snapshot", "ts": 1, "data": [entry]})
            ]
        return []

    def _okx(self, step: Step) -> list[str]:
        swap = "BTC-USDT-SWAP"
        if step.kind == "mark":
            funding = {"instId": swap, "instType": "SWAP", "fundingRate": str(step.value),
                       "fundingTime": str(NEXT_FUNDING), "nextFundingRate": "", "method": "current_period",
                       "nextFundingTime": str(NEXT_FUNDING + 8 * 3_600_000), "ts": str(step.ts)}  # fmt: skip
            return [
                json.dumps({"arg": {"channel": "funding-rate", "instId": swap}, "data": [funding]}),
                json.dumps({"arg": {"channel": "mark-price", "instId": swap},
                            "data": [{"instType": "SWAP", "instId": swap, "markPx": str(step.price), "ts": str(step.ts)}]}),
                json.dumps({"arg": {"channel": "index-tickers", "instId": "BTC-USDT"},
                            "data": [{"instId": "BTC-USDT", "idxPx": str(step.price + Decimal("0.25")), "ts": str(step.ts)}]}),
            ]  # fmt: skip
        if step.kind == "oi":
            data = {"instId": swap, "instType": "SWAP", "oi": str(step.value / CONTRACT_VALUE), "oiCcy": str(step.value),
                    "oiUsd": "1", "ts": str(step.ts)}  # fmt: skip
            return [json.dumps({"arg": {"channel": "open-interest", "instId": swap}, "data": [data]})]
        if step.kind == "liq":
            return [json.dumps({"arg": {"channel": "liquidation-orders", "instType": "SWAP"}, "data": [
                {"instId": swap, "instFamily": "BTC-USDT", "instType": "SWAP", "uly": "BTC-USDT", "details": [
                    {"bkLoss": "0", "bkPx": str(step.price), "ccy": "", "posSide": "long" if step.side == "sell" else "short",
                     "side": step.side, "sz": str(step.value / CONTRACT_VALUE), "ts": str(step.ts)}]},
                {"instId": "ETH-USDT-SWAP", "instType": "SWAP", "details": [  # not configured: left out
                    {"bkPx": "3000", "side": "buy", "sz": "1", "ts": str(step.ts)}]},
            ]})]  # fmt: skip
        if step.kind == "bad":
            data = {"instId": swap, "markPx": "lots", "ts": str(START_MS)}
            return [json.dumps({"arg": {"channel": "mark-price", "instId": swap}, "data": [data]})]
        return []

    # REST -----------------------------------------------------------------------------------------

    def rest(self, path: str, params: dict[str, str]) -> tuple[int, Any]:
        """The venue's answer; each is a new observation at a later time (what was true at that moment)."""
        self.rest_ts += 1
        ts = self.rest_ts
        rate, price, oi = Decimal("0.00042"), Decimal("61000.5"), Decimal("70000.125")
        if self.venue == "binance":
            if path == "/fapi/v1/openInterest":
                self._expect("open_interest", ts, oi)
                return 200, {"openInterest": str(oi), "symbol": params["symbol"], "time": ts}
            if path == "/fapi/v1/premiumIndex":
                self._expect_mark(Step("mark", ts, rate, price))
                return 200, {"symbol": params["symbol"], "markPrice": str(price), "indexPrice": str(price + Decimal("0.25")),
                             "lastFundingRate": str(rate), "nextFundingTime": NEXT_FUNDING, "time": ts}  # fmt: skip
        if self.venue == "bybit" and path == "/v5/market/tickers":
            self._expect_mark(Step("mark", ts, rate, price))
            self._expect("open_interest", ts, oi)
            row = {"symbol": "BTCUSDT", "markPrice": str(price), "indexPrice": str(price + Decimal("0.25")),
                   "fundingRate": str(rate), "nextFundingTime": str(NEXT_FUNDING), "openInterest": str(oi)}  # fmt: skip
            return 200, {
                "retCode": 0,
                "retMsg": "OK",
                "result": {"category": "linear", "list": [row]},
                "time": ts,
            }
        if self.venue == "okx":
            return 200, {"code": "0", "msg": "", "data": self._okx_rest(path, ts, rate, price, oi)}
        return 404, {"code": -1, "msg": f"no {path}"}

    def _okx_rest(self, path: str, ts: int, rate: Decimal, price: Decimal, oi: Decimal) -> list[Any]:
        swap = "BTC-USDT-SWAP"
        if path == "/api/v5/public/instruments":
            return [{"instId": swap, "instType": "SWAP", "ctVal": str(CONTRACT_VALUE), "ctValCcy": "BTC"}]
        if path == "/api/v5/public/funding-rate":
            self._expect("funding", ts, rate)
            return [
                {"instId": swap, "fundingRate": str(rate), "fundingTime": str(NEXT_FUNDING), "ts": str(ts)}
            ]
        if path == "/api/v5/public/mark-price":
            self._expect("mark_price", ts, price)
            return [{"instId": swap, "markPx": str(price), "ts": str(ts)}]
        if path == "/api/v5/market/index-tickers":
            self._expect("index_price", ts, price + Decimal("0.25"))
            return [{"instId": "BTC-USDT", "idxPx": str(price + Decimal("0.25")), "ts": str(ts)}]
        if path == "/api/v5/public/open-interest":
            self._expect("open_interest", ts, oi)
            return [{"instId": swap, "oi": "1", "oiCcy": str(oi), "ts": str(ts)}]
        if path == "/api/v5/public/liquidation-orders":  # the one the drop hid, and one seen live again
            missed = Step("liq", START_MS + 4500, Decimal("0.07"), Decimal("59000"), "buy")
            seen = Step("liq", START_MS + 20, Decimal("0.03"), Decimal("59990.1"), "sell")
            self._expect_liq(missed)
            details = [{"bkPx": str(s.price), "side": s.side, "sz": str(s.value / CONTRACT_VALUE), "ts": str(s.ts)}
                       for s in (missed, seen)]  # fmt: skip
            return [{"instId": swap, "instFamily": "BTC-USDT", "details": details}]
        return []

    def _http(self, connection: ServerConnection, request: Request) -> Response | None:
        if request.headers.get("Upgrade", "").lower() == "websocket":
            return None
        parts = urlsplit(request.path)
        params = {k: v[0] for k, v in parse_qs(parts.query).items()}
        self.rest_calls.append((time.monotonic(), parts.path, params))
        status, body = self.rest(parts.path, params)
        response = connection.respond(HTTPStatus(status), json.dumps(body))
        response.headers["Content-Type"] = "application/json"
        return response

    # Websocket ------------------------------------------------------------------------------------

    async def _handle(self, ws: ServerConnection) -> None:
        self.connections += 1
        reader = asyncio.create_task(self._read(ws))
        last: list[str] = []
        try:
            for step in self.scripts.get(self.connections, [Step("keepalive")]):
                if step.kind == "drop":
                    await asyncio.sleep(0.1)
                    ws.transport.abort()  # no close frame: the network went away
                    return
                if step.kind == "keepalive":
                    await ws.wait_closed()
                    return
                if step.kind == "marks":  # a long stream: marks ts.. ts+value, paced
                    for i in range(step.ts, step.ts + int(step.value)):
                        for frame in self.frames(mark(i)):
                            await ws.send(frame)
                        await asyncio.sleep(self.pace_s)
                    continue
                if step.kind == "raw":
                    frames = [BROKEN]
                elif step.kind == "again":
                    frames = last
                else:
                    frames = self.frames(step)
                if step.kind in ("raw", "bad"):
                    self.dead_sent.extend(frames)
                for frame in frames:
                    await ws.send(frame)
                last = frames
                await asyncio.sleep(self.pace_s)
        except Exception:
            pass
        finally:
            reader.cancel()

    async def _read(self, ws: ServerConnection) -> None:
        async for frame in ws:
            text = frame if isinstance(frame, str) else frame.decode()
            self.client_frames.append(text)
            if text == "ping":
                await ws.send("pong")
                continue
            message = json.loads(text)
            if message.get("op") == "ping":
                await ws.send(
                    json.dumps({"op": "pong", "args": [str(int(time.time() * 1000))], "conn_id": "c"})
                )
            elif message.get("op") == "subscribe" and self.venue == "bybit":
                await ws.send(json.dumps({"success": True, "ret_msg": "", "conn_id": "c", "op": "subscribe"}))
            elif message.get("op") == "subscribe":
                for arg in message["args"]:
                    await ws.send(json.dumps({"event": "subscribe", "arg": arg, "connId": "c"}))
