"""A fake Binance for a whole stack trading "live": its market data and its trading API, on 127.0.0.1.

- ``SteadyBinanceFeed``: Binance's combined websocket stream (``/stream?streams=btcusdt@trade/...``) at
  a steady price, in the wire format of ``fake_exchanges.BinanceEncoder``: a book ticker and a trade
  every ``interval_s``, event times now, trade ids counting on across connections (no gap to fill).
- ``FakeBinanceRest``: the REST trading API ccxt calls (``fake_binance_rest``), its ``last_price`` the
  feed's price, so that a market order fills where the market is and a post-only quote rests.

``LiveBinance`` runs both on an event loop of its own thread, for tests whose own thread blocks on
subprocesses (``trader up``, the CLI); ``call`` runs a function there, where the servers' state lives.
"""

from __future__ import annotations

import asyncio
import contextlib
import itertools
import threading
import time
from collections.abc import Callable
from decimal import Decimal
from typing import Any, TypeVar

from websockets.asyncio.server import ServerConnection, serve
from websockets.exceptions import ConnectionClosed
from websockets.http11 import Request, Response

from tests.fakes.fake_binance_rest import FakeBinanceRest
from tests.fakes.fake_exchanges import BinanceEncoder, TapeTrade

T = TypeVar("T")


class SteadyBinanceFeed:
    """One symbol's trades and top of book at ``price`` (bid and ask a cent either side)."""

    def __init__(
        self, symbol: str = "BTCUSDT", price: Decimal = Decimal("60000.00"), interval_s: float = 0.2
    ):
        self.encoder = BinanceEncoder("binance", symbol, tape=[])
        self.price = price
        self.interval_s = interval_s
        self.connections = 0
        self._ids = itertools.count(1)
        self._server: Any = None

    @property
    def ws_url(self) -> str:
        return f"ws://127.0.0.1:{self._server.sockets[0].getsockname()[1]}/stream"

    @property
    def rest_url(self) -> str:
        return self.ws_url.replace("ws://", "http://").removesuffix("/stream")

    async def start(self) -> None:
        self._server = await serve(self._handle, "127.0.0.1", 0, process_request=self._http)

    async def stop(self) -> None:
        self._server.close()
        await self._server.wait_closed()

    def _http(self, connection: ServerConnection, request: Request) -> Response | None:
        if request.headers.get("Upgrade", "").lower() == "websocket":
            return None
        # REST (gap filling): no trade is ever left out, so there is nothing to fetch.
        response = connection.respond(200, "[]")
        response.headers["Content-Type"] = "application/json"
        return response

    async def _handle(self, ws: ServerConnection) -> None:
        if not self.encoder.subscribed({}, ws.request.path if ws.request else "")[0]:
            await ws.close(1008, "unknown streams")
            return
        self.connections += 1
        with contextlib.suppress(ConnectionClosed):
            for index in itertools.count():
                seq = next(self._ids)
                trade = TapeTrade(
                    index, seq, self.price, Decimal("0.001"), "buy", time.time_ns() // 1_000_000
                )
                await ws.send(self.encoder.quote(trade))
                for frame in self.encoder.trade_frames([trade]):
                    await ws.send(frame)
                await asyncio.sleep(self.interval_s)


class LiveBinance:
    """The feed and the trading API on their own event loop: ``with LiveBinance() as venue: ...``."""

    def __init__(self, price: Decimal = Decimal("60000.00")) -> None:
        self.feed = SteadyBinanceFeed(price=price)
        self.rest = FakeBinanceRest(last_price=price)
        self.loop = asyncio.new_event_loop()
        self._thread = threading.Thread(target=self.loop.run_forever, daemon=True)

    @property
    def rest_url(self) -> str:
        return f"http://127.0.0.1:{self.rest.port}"

    def __enter__(self) -> LiveBinance:
        self._thread.start()
        self._await(self.feed.start())
        self._await(self.rest.start())
        return self

    def __exit__(self, *exc: object) -> None:
        self._await(self.rest.stop())
        self._await(self.feed.stop())
        self.loop.call_soon_threadsafe(self.loop.stop)
        self._thread.join(10)

    def move(self, price: Decimal) -> None:
        """The market moves: the feed trades at ``price`` from now on, and market orders fill there."""
        self.feed.price = self.rest.last_price = price

    def call(self, function: Callable[..., T], *args: Any) -> T:
        """``function(*args)`` run on the servers' loop (their state is changed and read only there)."""

        async def run() -> T:
            return function(*args)

        return self._await(run())

    def _await(self, coroutine: Any) -> Any:
        return asyncio.run_coroutine_threadsafe(coroutine, self.loop).result(10)
