"""What a test does to a fake venue, the same for every fake, so that tests run against each of them.

A fake keeps ``orders`` (id -> order with ``client_id``), ``failures`` (HTTP statuses to answer next) and
implements ``_trade`` (a fill as the venue records it) and ``_move`` (a balance change)."""

from __future__ import annotations

from decimal import Decimal
from typing import Any, Generic, TypeVar

Order = TypeVar("Order")
Trade = TypeVar("Trade")


class FakeVenueControls(Generic[Order, Trade]):
    orders: dict[Any, Order]
    failures: list[int]

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
