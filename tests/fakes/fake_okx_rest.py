"""A local stand-in for OKX's v5 REST trading API (the endpoints ccxt calls for spot), on 127.0.0.1.

Shapes follow OKX's public API documentation (https://www.okx.com/docs-v5/en/): GET
/api/v5/public/instruments, /api/v5/public/time, POST /api/v5/trade/order and /trade/batch-orders,
POST /api/v5/trade/cancel-order, GET /api/v5/trade/order, /trade/orders-pending, /trade/fills-history
(and /trade/fills), /account/balance. Every body is ``{"code": ..., "msg": ..., "data": [...]}``, numbers
are strings; a refused order is HTTP 200 with ``code`` "1" and the reason in ``data[i].sCode`` /
``sMsg``. Private requests must carry OK-ACCESS-KEY, -PASSPHRASE, -TIMESTAMP and -SIGN, and the signature
is checked (base64 HMAC-SHA256 of timestamp + method + path (+ query, or + body)). One instrument:
BTC-USDT, tick 0.01, lot 0.00001.

As OKX does: a ``clOrdId`` that is not 1 to 32 alphanumerics is refused (sCode 51000, "Parameter clOrdId
error"); the fills endpoints return at most ``limit`` fills (default and most 100), newest first,
``after`` / ``before`` a ``billId`` for older / newer ones.

Balances move as on Binance (``fake_binance_rest``): a fill moves BTC and USDT and its fee leaves the fee
currency; open orders freeze what they may spend (``frozenBal``/``ordFrozen``, ``availBal`` the rest; ``eq``
and ``cashBal`` the total).

The test controls are those of ``fake_binance_rest.FakeBinanceRest``: ``fill``, ``venue_cancel`` (state
``canceled``: OKX has no expired), ``add_open_order``, ``deposit``, ``fail_next`` (5xx or ``DROP``).
"""

from __future__ import annotations

import base64
import hashlib
import hmac
import itertools
import json
import re
from dataclasses import dataclass, field
from decimal import Decimal
from typing import Any

from aiohttp import web

from tests.fakes.fake_binance_rest import DROP, START_MS
from tests.fakes.fake_controls import FakeVenueControls

__all__ = ["DROP", "FakeOkxRest"]

INST_ID = "BTC-USDT"
PARAMS = web.RequestKey("params", dict)  # the query or JSON body (first element of a batch)
BODY = web.RequestKey("body", object)  # the JSON body as sent
LIVE_STATES = ("live", "partially_filled")
CLIENT_ID = re.compile(r"[A-Za-z0-9]{1,32}")  # OKX: case-sensitive alphanumerics, up to 32
BAD_CLIENT_ID = "Parameter clOrdId error "  # OKX's sMsg, trailing space included

INSTRUMENT = {
    "alias": "",
    "auctionEndTime": "",
    "baseCcy": "BTC",
    "category": "1",
    "ctMult": "",
    "ctType": "",
    "ctVal": "",
    "ctValCcy": "",
    "expTime": "",
    "instFamily": "",
    "instId": INST_ID,
    "instType": "SPOT",
    "lever": "10",
    "listTime": "1606468572000",
    "lotSz": "0.00001",
    "maxIcebergSz": "9999999999.0000000000000000",
    "maxLmtAmt": "1000000",
    "maxLmtSz": "9999999999",
    "maxMktAmt": "1000000",
    "maxMktSz": "1000000",
    "maxStopSz": "1000000",
    "maxTriggerSz": "9999999999.0000000000000000",
    "maxTwapSz": "9999999999.0000000000000000",
    "minSz": "0.00001",
    "optType": "",
    "quoteCcy": "USDT",
    "ruleType": "normal",
    "settleCcy": "",
    "state": "live",
    "stk": "",
    "tickSz": "0.01",
    "uly": "",
}


def _ok(data: list[Any]) -> web.Response:
    return web.json_response({"code": "0", "msg": "", "data": data})


def _refused(s_code: str, s_msg: str, **ids: str) -> web.Response:
    """An operation the venue refused: HTTP 200, code 1, the reason per item."""
    item = {"clOrdId": "", "ordId": "", "tag": "", "sCode": s_code, "sMsg": s_msg, **ids}
    return web.json_response({"code": "1", "msg": "All operations failed", "data": [item]})


def _error(code: str, msg: str, status: int = 200) -> web.Response:
    return web.json_response({"code": code, "msg": msg, "data": []}, status=status)


def _s(x: Decimal) -> str:
    return format(x.normalize(), "f")


@dataclass
class FakeOkxOrder:
    order_id: int
    client_id: str
    side: str  # buy | sell
    type: str  # limit | market | post_only | ioc | fok
    quantity: Decimal
    price: Decimal | None
    time: int
    executed: Decimal = Decimal(0)
    quote: Decimal = Decimal(0)
    fee: Decimal = Decimal(0)  # negative: charged
    status: str = "live"
    updated: int = 0

    def json(self) -> dict[str, Any]:
        return {
            "accFillSz": _s(self.executed),
            "algoClOrdId": "",
            "algoId": "",
            "attachAlgoClOrdId": "",
            "attachAlgoOrds": [],
            "avgPx": _s(self.quote / self.executed) if self.executed else "",
            "cTime": str(self.time),
            "cancelSource": "",
            "cancelSourceReason": "",
            "category": "normal",
            "ccy": "",
            "clOrdId": self.client_id,
            "fee": _s(self.fee),
            "feeCcy": "USDT",
            "fillPx": "",
            "fillSz": "0",
            "fillTime": "",
            "instId": INST_ID,
            "instType": "SPOT",
            "isTpLimit": "false",
            "lever": "",
            "linkedAlgoOrd": {"algoId": ""},
            "ordId": str(self.order_id),
            "ordType": self.type,
            "pnl": "0",
            "posSide": "net",
            "px": _s(self.price) if self.price is not None else "",
            "pxType": "",
            "pxUsd": "",
            "pxVol": "",
            "quickMgnType": "",
            "rebate": "0",
            "rebateCcy": "USDT",
            "reduceOnly": "false",
            "side": self.side,
            "slOrdPx": "",
            "slTriggerPx": "",
            "slTriggerPxType": "",
            "source": "",
            "state": self.status,
            "stpId": "",
            "stpMode": "cancel_maker",
            "sz": _s(self.quantity),
            "tag": "",
            "tdMode": "cash",
            "tgtCcy": "base_ccy" if self.type == "market" else "",
            "tpOrdPx": "",
            "tpTriggerPx": "",
            "tpTriggerPxType": "",
            "tradeId": "",
            "uTime": str(self.updated or self.time),
        }


@dataclass
class FakeOkxTrade:
    trade_id: int
    order: FakeOkxOrder
    qty: Decimal
    price: Decimal
    fee: Decimal  # charged: positive here, negative on the wire
    fee_ccy: str
    maker: bool
    time: int

    @property
    def bill_id(self) -> int:
        return self.trade_id + 9_000_000

    def json(self) -> dict[str, Any]:
        return {
            "side": self.order.side,
            "fillSz": _s(self.qty),
            "fillPx": _s(self.price),
            "fillPxVol": "",
            "fillFwdPx": "",
            "fee": _s(-self.fee),
            "fillPnl": "0",
            "ordId": str(self.order.order_id),
            "feeRate": "-0.001",
            "instType": "SPOT",
            "fillPxUsd": "",
            "instId": INST_ID,
            "clOrdId": self.order.client_id,
            "posSide": "net",
            "billId": str(self.bill_id),
            "subType": "1",
            "fillMarkVol": "",
            "tag": "",
            "fillTime": str(self.time),
            "execType": "M" if self.maker else "T",
            "fillIdxPx": "",
            "tradeId": str(self.trade_id),
            "fillMarkPx": "",
            "feeCcy": self.fee_ccy,
            "ts": str(self.time),
        }


@dataclass
class FakeOkxRest(FakeVenueControls[FakeOkxOrder, FakeOkxTrade]):
    api_key: str | None = None  # when set with secret and passphrase, requests must match them
    secret: str | None = None
    passphrase: str | None = None
    balances: dict[str, Decimal] = field(
        default_factory=lambda: {"BTC": Decimal("1"), "USDT": Decimal("100000")}
    )
    last_price: Decimal = Decimal("60000.00")
    orders: dict[int, FakeOkxOrder] = field(default_factory=dict)
    trades: list[FakeOkxTrade] = field(default_factory=list)
    requests: list[tuple[str, str, dict[str, Any]]] = field(default_factory=list)
    failures: list[int] = field(default_factory=list)
    clock: int = START_MS
    _ids: itertools.count[int] = field(default_factory=lambda: itertools.count(680_800_019_749_904_384))
    _trade_ids: itertools.count[int] = field(default_factory=lambda: itertools.count(744_876_980))
    _runner: web.AppRunner | None = None
    port: int = 0

    # Server ------------------------------------------------------------------------------------

    async def start(self) -> str:
        app = web.Application(middlewares=[self._middleware])
        r = app.router
        r.add_get("/api/v5/public/instruments", self._instruments)
        r.add_get("/api/v5/public/time", self._time)
        r.add_post("/api/v5/trade/order", self._new_order)
        r.add_post("/api/v5/trade/batch-orders", self._new_order)
        r.add_post("/api/v5/trade/cancel-order", self._cancel_order)
        r.add_get("/api/v5/trade/order", self._get_order)
        r.add_get("/api/v5/trade/orders-pending", self._open_orders)
        r.add_get("/api/v5/trade/fills-history", self._fills)
        r.add_get("/api/v5/trade/fills", self._fills)
        r.add_get("/api/v5/account/balance", self._balance)
        return await self.serve(app)

    @web.middleware
    async def _middleware(self, request: web.Request, handler: Any) -> web.StreamResponse:
        text = await request.text() if request.can_read_body else ""
        body = json.loads(text) if text else None
        first = body[0] if isinstance(body, list) and body else body
        params: dict[str, Any] = {**request.query, **(first if isinstance(first, dict) else {})}
        request[PARAMS], request[BODY] = params, body
        self.requests.append((request.method, request.path, params))
        if self.failures:
            status = self.failures.pop(0)
            if status == DROP:
                assert request.transport is not None
                request.transport.close()
                raise ConnectionResetError("dropped by the fake")
            return web.Response(status=status, text="<html>service unavailable</html>")
        if not request.path.startswith("/api/v5/public/"):
            refused = self._authenticate(request, text)
            if refused is not None:
                return refused
        self.clock += 1
        return await handler(request)

    def _authenticate(self, request: web.Request, body: str) -> web.Response | None:
        headers = request.headers
        for name in ("OK-ACCESS-KEY", "OK-ACCESS-PASSPHRASE", "OK-ACCESS-TIMESTAMP", "OK-ACCESS-SIGN"):
            if not headers.get(name):
                return _error(
                    "50103" if name == "OK-ACCESS-KEY" else "50113",
                    f"Request header {name} can't be empty.",
                    401,
                )
        if self.api_key is not None and headers["OK-ACCESS-KEY"] != self.api_key:
            return _error("50111", "Invalid OK-ACCESS-KEY.", 401)
        if self.passphrase is not None and headers["OK-ACCESS-PASSPHRASE"] != self.passphrase:
            return _error("50105", "Invalid OK-ACCESS-PASSPHRASE.", 401)
        if self.secret is not None:
            path = request.path_qs if request.method == "GET" else request.path
            payload = headers["OK-ACCESS-TIMESTAMP"] + request.method + path + body
            digest = hmac.new(self.secret.encode(), payload.encode(), hashlib.sha256).digest()
            if base64.b64encode(digest).decode() != headers["OK-ACCESS-SIGN"]:
                return _error("50113", "Invalid Sign.", 401)
        return None

    # Test controls ---------------------------------------------------------------------------------

    def new_orders(self) -> list[dict[str, Any]]:
        """Every order placement as sent."""
        return [
            p for m, path, p in self.requests if m == "POST" and path.endswith(("/order", "/batch-orders"))
        ]

    def venue_cancel(self, client_id: str, status: str = "canceled") -> None:
        order = self.order_by_client_id(client_id)
        order.status, order.updated = status, self.clock

    def add_open_order(self, client_id: str, side: str, qty: str, price: str) -> FakeOkxOrder:
        order = FakeOkxOrder(
            next(self._ids), client_id, side.lower(), "limit", Decimal(qty), Decimal(price), self.clock
        )
        self.orders[order.order_id] = order
        return order

    def _trade(
        self, order: FakeOkxOrder, qty: Decimal, price: Decimal, fee: Decimal, ccy: str, maker: bool
    ) -> FakeOkxTrade:
        self.clock += 1
        trade = FakeOkxTrade(next(self._trade_ids), order, qty, price, fee, ccy, maker, self.clock)
        self.trades.append(trade)
        order.executed += qty
        order.quote += qty * price
        order.fee -= fee if ccy == "USDT" else Decimal(0)
        order.status = "filled" if order.executed >= order.quantity else "partially_filled"
        order.updated = self.clock
        sign = 1 if order.side == "buy" else -1
        self._move("BTC", sign * qty)
        self._move("USDT", -sign * qty * price)
        self._move(ccy, -fee)
        return trade

    def _move(self, ccy: str, amount: Decimal) -> None:
        self.balances[ccy] = self.balances.get(ccy, Decimal(0)) + amount

    def _frozen(self) -> dict[str, Decimal]:
        """What the live orders may spend: a buy its rest at its price in USDT, a sell its rest in BTC."""
        frozen = {"BTC": Decimal(0), "USDT": Decimal(0)}
        for o in self.orders.values():
            if o.status in LIVE_STATES:
                rest = o.quantity - o.executed
                if o.side == "buy":
                    frozen["USDT"] += rest * (o.price if o.price is not None else self.last_price)
                else:
                    frozen["BTC"] += rest
        return frozen

    # Endpoints ---------------------------------------------------------------------------------

    async def _instruments(self, request: web.Request) -> web.Response:
        if request.query.get("instType") != "SPOT":
            return _ok([])
        return _ok([INSTRUMENT])

    async def _time(self, request: web.Request) -> web.Response:
        return _ok([{"ts": str(self.clock)}])

    @staticmethod
    def _bad_client_id(params: dict[str, Any]) -> bool:
        client_id = str(params.get("clOrdId") or "")
        return bool(client_id) and CLIENT_ID.fullmatch(client_id) is None

    def _find(self, params: dict[str, Any]) -> FakeOkxOrder | None:
        if params.get("ordId"):
            return self.orders.get(int(params["ordId"]))
        matches = [o for o in self.orders.values() if o.client_id == params.get("clOrdId")]
        return matches[-1] if matches else None

    async def _new_order(self, request: web.Request) -> web.Response:
        p = request[PARAMS]
        client_id = str(p.get("clOrdId") or "")
        ids = {"clOrdId": client_id, "ts": str(self.clock)}
        if self._bad_client_id(p):
            return _refused("51000", BAD_CLIENT_ID, **ids)
        if p.get("instId") != INST_ID:
            return _refused("51001", "Instrument ID does not exist.", **ids)
        if p.get("tdMode") != "cash":
            return _refused("51000", "Parameter tdMode error", **ids)
        if any(o.client_id == client_id and o.status in LIVE_STATES for o in self.orders.values()):
            return _refused("51016", "Duplicated client order ID", **ids)
        qty, kind, side = Decimal(p["sz"]), p["ordType"], p["side"]
        price = Decimal(p["px"]) if p.get("px") else None
        at = price if price is not None else self.last_price
        needed, ccy = (qty * at, "USDT") if side == "buy" else (qty, "BTC")
        if needed > self.balances.get(ccy, Decimal(0)) - self._frozen().get(ccy, Decimal(0)):
            return _refused("51008", f"Order failed. Insufficient {ccy} balance in account.", **ids)
        order = FakeOkxOrder(next(self._ids), client_id, side, kind, qty, price, self.clock)
        takes = price is not None and (
            price >= self.last_price if side == "buy" else price <= self.last_price
        )
        if kind == "post_only" and takes:
            order.status = "canceled"  # OKX takes the order, then cancels it (cancelSource 31)
        self.orders[order.order_id] = order
        if kind == "market":
            fee = (qty * self.last_price * Decimal("0.001")).quantize(Decimal("0.00000001"))
            self._trade(order, qty, self.last_price, fee, "USDT", maker=False)
        item = {"clOrdId": client_id, "ordId": str(order.order_id), "tag": "", "ts": str(self.clock)}
        return _ok([{**item, "sCode": "0", "sMsg": "Order placed"}])

    async def _cancel_order(self, request: web.Request) -> web.Response:
        if self._bad_client_id(request[PARAMS]):
            return _refused("51000", BAD_CLIENT_ID, clOrdId=str(request[PARAMS]["clOrdId"]))
        order = self._find(request[PARAMS])
        if order is None or order.status not in LIVE_STATES:
            reason = "Order cancellation failed as the order has been filled, canceled or does not exist."
            return _refused("51400", reason, clOrdId=str(request[PARAMS].get("clOrdId") or ""))
        order.status, order.updated = "canceled", self.clock
        item = {"clOrdId": order.client_id, "ordId": str(order.order_id), "ts": str(self.clock)}
        return _ok([{**item, "sCode": "0", "sMsg": ""}])

    async def _get_order(self, request: web.Request) -> web.Response:
        if self._bad_client_id(request[PARAMS]):
            return _error("51000", BAD_CLIENT_ID)
        order = self._find(request[PARAMS])
        if order is None:
            return _error("51603", "Order does not exist")
        return _ok([order.json()])

    async def _open_orders(self, request: web.Request) -> web.Response:
        return _ok([o.json() for o in reversed(self.orders.values()) if o.status in LIVE_STATES])

    async def _fills(self, request: web.Request) -> web.Response:
        p = request[PARAMS]
        if p.get("instType") != "SPOT":
            return _error("51000", "Parameter instType error")
        limit = int(p.get("limit") or 100)
        if not 0 < limit <= 100:
            return _error("51000", "Parameter limit error")
        trades = [t for t in self.trades if not p.get("ordId") or t.order.order_id == int(p["ordId"])]
        if p.get("after"):  # older than that bill id
            trades = [t for t in trades if t.bill_id < int(p["after"])]
        if p.get("before"):  # newer than that bill id
            trades = [t for t in trades if t.bill_id > int(p["before"])]
        return _ok([t.json() for t in reversed(trades)][:limit])  # newest first, as OKX sends them

    async def _balance(self, request: web.Request) -> web.Response:
        frozen = self._frozen()
        details = [
            {
                "availBal": _s(v - frozen.get(ccy, Decimal(0))),
                "availEq": "",
                "cashBal": _s(v),
                "ccy": ccy,
                "crossLiab": "",
                "disEq": "",
                "eq": _s(v),
                "eqUsd": "",
                "fixedBal": "0",
                "frozenBal": _s(frozen.get(ccy, Decimal(0))),
                "imr": "",
                "isoEq": "",
                "ordFrozen": _s(frozen.get(ccy, Decimal(0))),
                "uTime": str(self.clock),
            }
            for ccy, v in self.balances.items()
        ]
        account = {"adjEq": "", "details": details, "imr": "", "totalEq": "", "uTime": str(self.clock)}
        return _ok([account])
