"""The open orders risk counts as exposure, with their sums kept as they change.

A check needs, per request, the unfilled quantity of the account's open orders on one symbol and side
(or of one strategy's only, for its reduce-only orders), and the notional of all of them. Walking
every open order for each request costs O(open orders) per request, which under load (hundreds in
flight) made risk the slowest service of the chain; the sums are kept instead, updated by each
order's change, so a check costs the same however many are open.

An order with a price (its limit, else its stop) adds ``leaves x price`` to its account's priced
notional; one without (a market order) adds its leaves to the account's unpriced quantity of its
symbol, valued at the last trade when a check asks. An order with a cancel-replace pending counts at the
larger of its quantities and of its limits, since the venue may yet leave either in force. Decimal sums
are exact: removing an order takes back exactly what it added.

``OpenOrdersState`` is what a snapshot keeps of them (``trader.runtime.snapshots``, key ``risk-orders``):
the open orders alone, since the sums follow from them and a terminal order leaves no trace; its size
follows the orders open now, not the history.
"""

from __future__ import annotations

from collections import defaultdict
from collections.abc import Callable, Iterator
from decimal import Decimal
from typing import TypeVar

import msgspec

from trader.messages import Order

ZERO = Decimal(0)
K = TypeVar("K")
# Of OpenOrdersState: a snapshot of another version is not read (the order states replayed instead).
OPEN_ORDERS_VERSION = 1


class OpenOrdersState(msgspec.Struct, frozen=True):
    """The open orders as risk last saw them, in the order they were first seen open."""

    orders: list[Order]


def _price(order: Order) -> Decimal | None:
    """Its limit, else its stop; with a replace pending, the higher of the limits asked and in force."""
    if order.replace_price is not None and order.price is not None:
        return max(order.price, order.replace_price)
    return order.price if order.price is not None else order.stop_price


def _leaves(order: Order) -> Decimal:
    """Unfilled quantity; with a replace pending, the larger of what it asks and what the venue works on
    (either may be in force when the venue answers)."""
    quantity = order.quantity
    if order.replace_quantity is not None:
        quantity = max(quantity, order.replace_quantity)
    return quantity - order.filled_quantity


class OpenOrders:
    def __init__(self) -> None:
        self._orders: dict[str, Order] = {}
        # (account, symbol, side) -> leaves; the same per strategy; account -> sum of leaves x price;
        # (account, symbol) -> leaves
        self._leaves: defaultdict[tuple[str, str, str], Decimal] = defaultdict(Decimal)
        self._strategy_leaves: defaultdict[tuple[str, str, str, str], Decimal] = defaultdict(Decimal)
        self._priced: defaultdict[str, Decimal] = defaultdict(Decimal)
        self._unpriced: defaultdict[tuple[str, str], Decimal] = defaultdict(Decimal)

    def __len__(self) -> int:
        return len(self._orders)

    def __contains__(self, client_order_id: str) -> bool:
        return client_order_id in self._orders

    def __iter__(self) -> Iterator[Order]:
        return iter(self._orders.values())

    def get(self, client_order_id: str) -> Order | None:
        return self._orders.get(client_order_id)

    def state(self) -> OpenOrdersState:
        return OpenOrdersState(list(self._orders.values()))

    @classmethod
    def of(cls, state: OpenOrdersState) -> OpenOrders:
        """Open orders as a snapshot left them: the same orders, so the same sums."""
        open_orders = cls()
        for order in state.orders:
            open_orders.put(order)
        return open_orders

    def put(self, order: Order) -> None:
        self.remove(order.client_order_id)
        self._orders[order.client_order_id] = order
        self._count(order, +1)

    def remove(self, client_order_id: str) -> None:
        order = self._orders.pop(client_order_id, None)
        if order is not None:
            self._count(order, -1)

    def same_side_leaves(
        self, account: str, symbol: str, side: str, excluding: str, strategy: str | None = None
    ) -> Decimal:
        """Unfilled quantity of the account's open orders on ``symbol`` and ``side`` (only ``strategy``'s
        when one is named), but ``excluding``."""
        if strategy is None:
            leaves = self._leaves.get((account, symbol, side), ZERO)
        else:
            leaves = self._strategy_leaves.get((account, symbol, side, strategy), ZERO)
        own = self._orders.get(excluding)
        if (
            own is not None
            and (own.account, own.symbol, own.side) == (account, symbol, side)
            and strategy in (None, own.strategy)
        ):
            leaves -= _leaves(own)
        return leaves

    def notional(self, account: str, last_price: Callable[[str], Decimal | None], excluding: str) -> Decimal:
        """The account's open orders at their price (a market order at its symbol's last trade, or
        nothing without one), but ``excluding``."""
        total = self._priced.get(account, ZERO)
        for (owner, symbol), leaves in self._unpriced.items():
            if owner == account and leaves:
                total += leaves * (last_price(symbol) or ZERO)
        own = self._orders.get(excluding)
        if own is not None and own.account == account:
            price = _price(own)
            if price is None:
                price = last_price(own.symbol) or ZERO
            total -= _leaves(own) * price
        return total

    def _count(self, order: Order, sign: int) -> None:
        """Each sum normalized (``1.5`` where adding then taking back ``0.250`` left ``1.500``): a sum is
        then the same whatever orders came and went before, so the open orders a snapshot keeps give
        back exactly the sums of a full replay, down to how a denial prints them."""
        leaves = _leaves(order) * sign
        _add(self._leaves, (order.account, order.symbol, order.side), leaves)
        _add(self._strategy_leaves, (order.account, order.symbol, order.side, order.strategy), leaves)
        price = _price(order)
        if price is None:
            _add(self._unpriced, (order.account, order.symbol), leaves)
        else:
            _add(self._priced, order.account, leaves * price)


def _add(sums: defaultdict[K, Decimal], key: K, amount: Decimal) -> None:
    sums[key] = (sums[key] + amount).normalize()
