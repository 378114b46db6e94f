r"""A local stand-in for Binance spot's REST trading API (the endpoints ccxt calls), on 127.0.0.1.

Shapes follow Binance's public API documentation (GET /api/v3/exchangeInfo, /api/v3/time,
POST|DELETE|GET /api/v3/order, GET /api/v3/openOrders, /api/v3/account, /api/v3/myTrades); errors are
``{"code": ..., "msg": ...}`` with HTTP 400. Signed requests must carry ``X-MBX-APIKEY``, ``timestamp``
and ``signature`` (accepted, not verified). One symbol: BTCUSDT, tick 0.01, step 0.00001.

As Binance does: a ``newClientOrderId`` / ``origClientOrderId`` outside ``^[\.A-Z\:/a-z0-9_-]{1,36}$`` is
refused (-1100, "Illegal characters found in parameter ..."); ``myTrades`` returns at most ``limit``
trades (default 500, at most 1000), ascending by id: from ``fromId`` when given, else the most recent.

Balances move as Binance moves them: a fill adds the bought asset and takes the paid one (BUY: +qty BTC,
-qty*price USDT; SELL the reverse), and its commission is taken from the commission asset; an open order
locks what it may spend (``locked`` in /api/v3/account, ``free`` the rest; the total is unchanged) and a
new order beyond what is free is refused. ``deposit`` changes a balance behind everyone's back.

The test drives the book: a limit order rests until ``fill`` trades (part of) it; a market order fills at
once at ``last_price``; ``fail_next`` answers the next requests with a 5xx (or ``DROP``s them);
``venue_cancel`` ends an order at the venue (``EXPIRED`` or ``CANCELED``); ``add_open_order`` places an
order nobody sent.
"""

from __future__ import annotations

import itertools
import re
from dataclasses import dataclass, field
from decimal import Decimal
from typing import Any

from aiohttp import web

from tests.fakes.fake_controls import FakeVenueControls

START_MS = 1_764_000_000_000
SYMBOL = "BTCUSDT"
PARAMS = web.RequestKey("params", dict)  # the query and form parameters of a request
DROP = 0  # for fail_next: close the connection instead of answering
CLIENT_ID_RANGE = r"^[\.A-Z\:/a-z0-9_-]{1,36}$"  # Binance's own pattern, as its -1100 message quotes it


@dataclass
class FakeOrder:
    order_id: int
    client_id: str
    side: str  # BUY | SELL
    type: str  # LIMIT | MARKET | LIMIT_MAKER
    quantity: Decimal
    price: Decimal
    tif: str
    time: int
    executed: Decimal = Decimal(0)
    quote: Decimal = Decimal(0)
    status: str = "NEW"

    def json(self) -> dict[str, Any]:
        return {
            "symbol": SYMBOL,
            "orderId": self.order_id,
            "orderListId": -1,
            "clientOrderId": self.client_id,
            "price": f"{self.price:.8f}",
            "origQty": f"{self.quantity:.8f}",
            "executedQty": f"{self.executed:.8f}",
            "cummulativeQuoteQty": f"{self.quote:.8f}",
            "status": self.status,
            "timeInForce": self.tif,
            "type": self.type,
            "side": self.side,
            "stopPrice": "0.00000000",
            "icebergQty": "0.00000000",
            "time": self.time,
            "updateTime": self.time,
            "isWorking": True,
            "workingTime": self.time,
            "origQuoteOrderQty": "0.00000000",
            "selfTradePreventionMode": "EXPIRE_MAKER",
        }


@dataclass
class FakeTrade:
    trade_id: int
    order: FakeOrder
    qty: Decimal
    price: Decimal
    commission: Decimal
    commission_asset: str
    maker: bool
    time: int

    def json(self) -> dict[str, Any]:
        return {
            "symbol": SYMBOL,
            "id": self.trade_id,
            "orderId": self.order.order_id,
            "orderListId": -1,
            "price": f"{self.price:.8f}",
            "qty": f"{self.qty:.8f}",
            "quoteQty": f"{self.qty * self.price:.8f}",
            "commission": f"{self.commission:.8f}",
            "commissionAsset": self.commission_asset,
            "time": self.time,
            "isBuyer": self.order.side == "BUY",
            "isMaker": self.maker,
            "isBestMatch": True,
        }

    def fill_json(self) -> dict[str, Any]:  # the shape in a FULL new-order response
        return {
            "price": f"{self.price:.8f}",
            "qty": f"{self.qty:.8f}",
            "commission": f"{self.commission:.8f}",
            "commissionAsset": self.commission_asset,
            "tradeId": self.trade_id,
        }


EXCHANGE_INFO = {
    "timezone": "UTC",
    "serverTime": START_MS,
    "rateLimits": [
        {"rateLimitType": "REQUEST_WEIGHT", "interval": "MINUTE", "intervalNum": 1, "limit": 6000},
        {"rateLimitType": "ORDERS", "interval": "SECOND", "intervalNum": 10, "limit": 100},
    ],
    "exchangeFilters": [],
    "symbols": [
        {
            "symbol": SYMBOL,
            "status": "TRADING",
            "baseAsset": "BTC",
            "baseAssetPrecision": 8,
            "quoteAsset": "USDT",
            "quotePrecision": 8,
            "quoteAssetPrecision": 8,
            "baseCommissionPrecision": 8,
            "quoteCommissionPrecision": 8,
            "orderTypes": ["LIMIT", "LIMIT_MAKER", "MARKET", "STOP_LOSS_LIMIT", "TAKE_PROFIT_LIMIT"],
            "icebergAllowed": True,
            "ocoAllowed": True,
            "otoAllowed": True,
            "quoteOrderQtyMarketAllowed": True,
            "allowTrailingStop": True,
            "cancelReplaceAllowed": True,
            "isSpotTradingAllowed": True,
            "isMarginTradingAllowed": False,
            "filters": [
                {
                    "filterType": "PRICE_FILTER",
                    "minPrice": "0.01000000",
                    "maxPrice": "1000000.00000000",
                    "tickSize": "0.01000000",
                },
                {
                    "filterType": "LOT_SIZE",
                    "minQty": "0.00001000",
                    "maxQty": "9000.00000000",
                    "stepSize": "0.00001000",
                },
                {
                    "filterType": "NOTIONAL",
                    "minNotional": "5.00000000",
                    "applyMinToMarket": True,
                    "maxNotional": "9000000.00000000",
                    "applyMaxToMarket": False,
                    "avgPriceMins": 5,
                },
            ],
            "permissions": [],
            "permissionSets": [["SPOT"]],
            "defaultSelfTradePreventionMode": "EXPIRE_MAKER",
            "allowedSelfTradePreventionModes": ["NONE", "EXPIRE_TAKER", "EXPIRE_MAKER", "EXPIRE_BOTH"],
        }
    ],
}


def _error(code: int, msg: str, status: int = 400) -> web.Response:
    return web.json_response({"code": code, "msg": msg}, status=status)


@dataclass
class FakeBinanceRest(FakeVenueControls[FakeOrder, FakeTrade]):
    balances: dict[str, Decimal] = field(
        default_factory=lambda: {"BTC": Decimal("1"), "USDT": Decimal("100000")}
    )
    last_price: Decimal = Decimal("60000.00")
    orders: dict[int, FakeOrder] = field(default_factory=dict)
    trades: list[FakeTrade] = field(default_factory=list)
    requests: list[tuple[str, str, dict[str, str]]] = field(default_factory=list)
    failures: list[int] = field(default_factory=list)  # statuses for the next requests
    clock: int = START_MS
    _ids: itertools.count[int] = field(default_factory=lambda: itertools.count(1001))
    _trade_ids: itertools.count[int] = field(default_factory=lambda: itertools.count(5_000_001))
    _runner: web.AppRunner | None = None
    port: int = 0

    # Server ------------------------------------------------------------------------------------

    async def start(self) -> str:
        app = web.Application(middlewares=[self._middleware])
        app.router.add_get("/api/v3/exchangeInfo", self._exchange_info)
        app.router.add_get("/api/v3/time", self._time)
        app.router.add_post("/api/v3/order", self._new_order)
        app.router.add_delete("/api/v3/order", self._cancel_order)
        app.router.add_get("/api/v3/order", self._get_order)
        app.router.add_get("/api/v3/openOrders", self._open_orders)
        app.router.add_get("/api/v3/account", self._account)
        app.router.add_get("/api/v3/myTrades", self._my_trades)
        return await self.serve(app)

    @web.middleware
    async def _middleware(self, request: web.Request, handler: Any) -> web.StreamResponse:
        params = dict(request.query)
        if request.method == "POST" and request.can_read_body:
            params.update({k: str(v) for k, v in (await request.post()).items()})
        request[PARAMS] = params
        self.requests.append((request.method, request.path, params))
        if self.failures:
            status = self.failures.pop(0)
            if status == DROP:  # the connection goes away without an answer
                assert request.transport is not None
                request.transport.close()
                raise ConnectionResetError("dropped by the fake")
            return web.Response(status=status, text="<html>service unavailable</html>")
        if request.path not in ("/api/v3/exchangeInfo", "/api/v3/time"):
            if "X-MBX-APIKEY" not in request.headers:
                return _error(-2014, "API-key format invalid.", 401)
            if "signature" not in params or "timestamp" not in params:
                return _error(-1102, "Mandatory parameter 'signature' was not sent.")
        for name in ("newClientOrderId", "origClientOrderId"):
            if name in params and not re.fullmatch(CLIENT_ID_RANGE, params[name]):
                legal = f"legal range is '{CLIENT_ID_RANGE}'."
                return _error(-1100, f"Illegal characters found in parameter '{name}'; {legal}")
        self.clock += 1
        return await handler(request)

    # Test controls ---------------------------------------------------------------------------------

    def new_orders(self) -> list[dict[str, str]]:
        """Every order placement as sent."""
        return [p for method, path, p in self.requests if method == "POST" and path == "/api/v3/order"]

    def venue_cancel(self, client_id: str, status: str = "EXPIRED") -> None:
        self.order_by_client_id(client_id).status = status

    def add_open_order(self, client_id: str, side: str, qty: str, price: str) -> FakeOrder:
        order = FakeOrder(
            next(self._ids), client_id, side, "LIMIT", Decimal(qty), Decimal(price), "GTC", self.clock
        )
        self.orders[order.order_id] = order
        return order

    def _trade(
        self,
        order: FakeOrder,
        qty: Decimal,
        price: Decimal,
        commission: Decimal,
        commission_asset: str,
        maker: bool,
    ) -> FakeTrade:
        self.clock += 1
        trade = FakeTrade(
            next(self._trade_ids), order, qty, price, commission, commission_asset, maker, self.clock
        )
        self.trades.append(trade)
        order.executed += qty
        order.quote += qty * price
        order.status = "FILLED" if order.executed >= order.quantity else "PARTIALLY_FILLED"
        sign = 1 if order.side == "BUY" else -1
        self._move("BTC", sign * qty)
        self._move("USDT", -sign * qty * price)
        self._move(commission_asset, -commission)
        return trade

    def _move(self, asset: str, amount: Decimal) -> None:
        self.balances[asset] = self.balances.get(asset, Decimal(0)) + amount

    def _locked(self) -> dict[str, Decimal]:
        """What the open orders may spend: a BUY its rest at its price in USDT, a SELL its rest in BTC."""
        locked = {"BTC": Decimal(0), "USDT": Decimal(0)}
        for o in self.orders.values():
            if o.status in ("NEW", "PARTIALLY_FILLED"):
                rest = o.quantity - o.executed
                if o.side == "BUY":
                    locked["USDT"] += rest * o.price
                else:
                    locked["BTC"] += rest
        return locked

    # Endpoints ---------------------------------------------------------------------------------

    async def _exchange_info(self, request: web.Request) -> web.Response:
        return web.json_response({**EXCHANGE_INFO, "serverTime": self.clock})

    async def _time(self, request: web.Request) -> web.Response:
        return web.json_response({"serverTime": self.clock})

    def _find(self, params: dict[str, str]) -> FakeOrder | None:
        if "orderId" in params:
            return self.orders.get(int(params["orderId"]))
        client_id = params.get("origClientOrderId")
        matches = [o for o in self.orders.values() if o.client_id == client_id]
        return matches[-1] if matches else None

    async def _new_order(self, request: web.Request) -> web.Response:
        p = request[PARAMS]
        if p.get("symbol") != SYMBOL:
            return _error(-1121, "Invalid symbol.")
        client_id = p.get("newClientOrderId") or f"fake-{self.clock}"
        if any(
            o.client_id == client_id and o.status in ("NEW", "PARTIALLY_FILLED") for o in self.orders.values()
        ):
            return _error(-2010, "Duplicate order sent.")
        qty = Decimal(p["quantity"])
        kind = p["type"]
        price = Decimal(p["price"]) if "price" in p else self.last_price
        needed, asset = (qty * price, "USDT") if p["side"] == "BUY" else (qty, "BTC")
        if needed > self.balances.get(asset, Decimal(0)) - self._locked().get(asset, Decimal(0)):
            return _error(-2010, "Account has insufficient balance for requested action.")
        if kind == "LIMIT_MAKER" and (
            (p["side"] == "BUY" and price >= self.last_price)
            or (p["side"] == "SELL" and price <= self.last_price)
        ):
            return _error(-2010, "Order would immediately match and take.")
        order = FakeOrder(
            next(self._ids), client_id, p["side"], kind, qty, price, p.get("timeInForce", "GTC"), self.clock
        )
        self.orders[order.order_id] = order
        fills = []
        if kind == "MARKET":
            fee = (qty * self.last_price * Decimal("0.001")).quantize(Decimal("0.00000001"))
            fills.append(self._trade(order, qty, self.last_price, fee, "USDT", maker=False))
        body = {**order.json(), "transactTime": self.clock, "fills": [t.fill_json() for t in fills]}
        return web.json_response(body)

    async def _cancel_order(self, request: web.Request) -> web.Response:
        order = self._find(request[PARAMS])
        if order is None or order.status not in ("NEW", "PARTIALLY_FILLED"):
            return _error(-2011, "Unknown order sent.")
        order.status = "CANCELED"
        return web.json_response({**order.json(), "origClientOrderId": order.client_id})

    async def _get_order(self, request: web.Request) -> web.Response:
        order = self._find(request[PARAMS])
        if order is None:
            return _error(-2013, "Order does not exist.")
        return web.json_response(order.json())

    async def _open_orders(self, request: web.Request) -> web.Response:
        live = [o.json() for o in self.orders.values() if o.status in ("NEW", "PARTIALLY_FILLED")]
        return web.json_response(live)

    async def _account(self, request: web.Request) -> web.Response:
        return web.json_response(
            {
                "makerCommission": 10,
                "takerCommission": 10,
                "buyerCommission": 0,
                "sellerCommission": 0,
                "commissionRates": {
                    "maker": "0.00100000",
                    "taker": "0.00100000",
                    "buyer": "0",
                    "seller": "0",
                },
                "canTrade": True,
                "canWithdraw": True,
                "canDeposit": True,
                "brokered": False,
                "requireSelfTradePrevention": False,
                "preventSor": False,
                "updateTime": self.clock,
                "accountType": "SPOT",
                "balances": self._balances_json(),
                "permissions": ["SPOT"],
                "uid": 354937868,
            }
        )

    def _balances_json(self) -> list[dict[str, str]]:
        locked = self._locked()
        return [
            {
                "asset": a,
                "free": f"{v - locked.get(a, Decimal(0)):.8f}",
                "locked": f"{locked.get(a, Decimal(0)):.8f}",
            }
            for a, v in self.balances.items()
        ]

    async def _my_trades(self, request: web.Request) -> web.Response:
        p = request[PARAMS]
        limit = int(p.get("limit", 500))
        if not 0 < limit <= 1000:
            return _error(-1130, "Data sent for parameter 'limit' is not valid.")
        trades = [t for t in self.trades if "orderId" not in p or t.order.order_id == int(p["orderId"])]
        if "fromId" in p:  # trades with id >= fromId, the first `limit` of them
            trades = [t for t in trades if t.trade_id >= int(p["fromId"])][:limit]
        else:  # the most recent `limit`
            trades = trades[-limit:]
        return web.json_response([t.json() for t in trades])
