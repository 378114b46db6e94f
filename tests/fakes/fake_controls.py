"""What a test does to a fake venue, the same for every fake, so that tests run against each of them.

A fake keeps ``orders`` (id -> order with ``client_id``), ``failures`` (HTTP statuses to answer next) and
implements ``_trade`` (a fill as the venue records it) and ``_move`` (a balance change)."""

from __future__ import annotations

from decimal import Decimal
from typing import Any, Generic, TypeVar

from aiohttp import web

Order = TypeVar("Order")
Trade = TypeVar("Trade")


class FakeVenueControls(Generic[Order, Trade]):
    orders: dict[Any, Order]
    failures: list[int]
    port: int
    _runner: web.AppRunner | None

    async def serve(self, app: web.Application) -> str:
        """Serve ``app`` on a free port of 127.0.0.1; its base URL."""
        self._runner = web.AppRunner(app, access_log=None)
        await self._runner.setup()
        site = web.TCPSite(self._runner, "127.0.0.1", 0)
        await site.start()
        self.port = site._server.sockets[0].getsockname()[1]  # type: ignore[union-attr]
        return f"http://127.0.0.1:{self.port}"

    async def stop(self) -> None:
        if self._runner is not None:
            await self._runner.cleanup()

    def _trade(
        self, order: Order, qty: Decimal, price: Decimal, commission: Decimal, asset: str, maker: bool
    ) -> Trade:
        raise NotImplementedError

    def _move(self, asset: str, amount: Decimal) -> None:
        raise NotImplementedError

    def fail_next(self, *statuses: int) -> None:
        self.failures.extend(statuses)

    def order_by_client_id(self, client_id: str) -> Order:
        return next(o for o in reversed(self.orders.values()) if o.client_id == client_id)  # type: ignore[attr-defined]

    def fill(
        self,
        client_id: str,
        qty: str,
        price: str,
        commission: str,
        asset: str = "USDT",
        maker: bool = True,
    ) -> Trade:
        """A trade of the order at the venue, its commission taken from ``asset``."""
        order = self.order_by_client_id(client_id)
        return self._trade(order, Decimal(qty), Decimal(price), Decimal(commission), asset, maker)

    def deposit(self, asset: str, amount: str) -> None:
        """A deposit (a withdrawal when negative): nothing any order did."""
        self._move(asset, Decimal(amount))
