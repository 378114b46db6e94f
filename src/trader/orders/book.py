"""The oms's in-memory state: every order by ``client_order_id``, changed only through the state machine.

Every method that applies an event returns the changed ``Order`` (to publish) or ``None`` when the
event changed nothing because it was seen before; a refused event raises and changes nothing.
"""

from __future__ import annotations

from collections.abc import Iterable

import msgspec

from trader.messages import (
    CancelRequest,
    ExecutionReport,
    Order,
    OrderRequest,
    ReplaceDecision,
    RiskDecision,
)
from trader.orders import state
from trader.orders.retention import Ended


class DuplicateOrderId(ValueError):
    """A request reuses the ``client_order_id`` of a different order."""


class UnknownOrder(LookupError):
    """An event for an order this book does not hold."""


class ForgottenOrder(UnknownOrder):
    """An event for an order that ended long ago: the book keeps only its id (``forget_closed``)."""


class BookState(msgspec.Struct, frozen=True):
    """What a book holds, as a snapshot keeps it: the latest state of every order held, the ids of the
    orders forgotten (``forgotten_at``: when each ended), and the exec ids of the reports applied to the
    orders held or forgotten (so that a repeat stays one; ``exec_orders``: the order of each, "" when
    not known). Every list is bounded by the retention, not the history (``drop_forgotten``)."""

    orders: list[Order]
    forgotten: list[str]
    exec_ids: list[str]
    forgotten_at: list[int] = []
    exec_orders: list[str] = []


def _terms(order: Order) -> tuple[object, ...]:
    """What an order was asked to be; two requests with the same id must agree on all of it."""
    return (
        order.strategy,
        order.account,
        order.symbol,
        order.side,
        order.type,
        order.quantity,
        order.price,
        order.stop_price,
        order.tif,
        order.post_only,
        order.reduce_only,
        order.venue,
        order.algo,
    )


class OrderBook:
    def __init__(self) -> None:
        self._orders: dict[str, Order] = {}
        # The orders not yet terminal, oldest first: what the kill switch and the probes walk, without
        # walking the whole history.
        self._open: dict[str, Order] = {}
        # The ended orders still held, by the time they ended (their last change): what
        # ``forget_closed`` takes, oldest first.
        self._closed: Ended[str] = Ended()
        # The ids of the orders forgotten: a request repeating one is still a repeat, not a new order.
        self._forgotten: set[str] = set()
        # ... by when they ended: what ``drop_forgotten`` takes, oldest first.
        self._forgotten_at: Ended[str] = Ended()
        # The terms each order was first asked with: a replace changes the order, not what was asked.
        self._asked: dict[str, tuple[object, ...]] = {}
        self._exec_ids: set[str] = set()
        # The exec ids applied to each order held or forgotten: they leave with its id.
        self._exec_of: dict[str, list[str]] = {}

    def __len__(self) -> int:
        return len(self._orders)

    def __contains__(self, client_order_id: object) -> bool:
        return client_order_id in self._orders

    def get(self, client_order_id: str) -> Order | None:
        return self._orders.get(client_order_id)

    def open_orders(self, strategy: str | None = None) -> list[Order]:
        """Orders not yet terminal, oldest first; of one strategy when given."""
        return [order for order in self._open.values() if strategy is None or order.strategy == strategy]

    @property
    def open_count(self) -> int:
        return len(self._open)

    @property
    def forgotten_count(self) -> int:
        return len(self._forgotten)

    def forget_closed(self, ended_before_ms: int, limit: int | None = None) -> int:
        """Drop the orders that ended before ``ended_before_ms`` (by their last change), keeping only
        their ids: the book's memory then follows the orders of a recent window, not of all history.
        A request repeating a forgotten id is still a repeat (no second order); any other event for
        one raises ``ForgottenOrder``. At most ``limit`` at a time; returns how many were forgotten."""
        forgotten = 0
        for client_order_id, ended_ms in self._closed.take_items(ended_before_ms, limit):
            self._orders.pop(client_order_id, None)
            self._asked.pop(client_order_id, None)
            self._forgotten.add(client_order_id)
            self._forgotten_at.add(client_order_id, ended_ms)
            forgotten += 1
        return forgotten

    def drop_forgotten(self, ended_before_ms: int, limit: int | None = None) -> int:
        """Drop the ids of the forgotten orders that ended before ``ended_before_ms``, and the exec ids
        of their reports: past the window in which a repeat of their messages can still be stored, the
        book holds nothing of them (a report for one is then an unknown order's, a dead letter; a
        request repeating one a new order). At most ``limit`` at a time; returns how many."""
        dropped = 0
        for client_order_id in self._forgotten_at.take(ended_before_ms, limit):
            self._forgotten.discard(client_order_id)
            self._exec_ids.difference_update(self._exec_of.pop(client_order_id, ()))
            dropped += 1
        return dropped

    def submit(self, request: OrderRequest, now_ms: int | None = None) -> Order | None:
        """Create the NEW order for an approved request; ``None`` if this request was already submitted."""
        if self._is_duplicate(request):
            return None
        return self._store(state.new_order(request, request.timestamp if now_ms is None else now_ms))

    def apply_decision(self, decision: RiskDecision) -> Order | None:
        """An approval makes a NEW order, a denial a REJECTED one (published as version 2, after the
        NEW it never was on the bus). The first decision for an id wins; a repeat is ``None``."""
        if decision.approved:
            return self.submit(decision.request, decision.timestamp)
        if self._is_duplicate(decision.request):
            return None
        order = state.new_order(decision.request, decision.timestamp)
        reason = decision.reason or "denied by risk"
        return self._store(state.reject_by_risk(order, reason, decision.timestamp))

    def apply_report(self, report: ExecutionReport) -> Order | None:
        """Apply a venue report once: a report whose ``exec_id`` was applied before is ``None``."""
        if report.exec_id in self._exec_ids:
            return None
        changed = state.apply_report(self._order(report.client_order_id), report)
        self._note_exec_id(report.exec_id, report.client_order_id)
        return self._store(changed)

    def apply_cancel(self, request: CancelRequest) -> Order | None:
        """Ask to cancel (or cancel-replace); ``None`` when the very same ask is already pending."""
        order = self._order(request.client_order_id)
        if order.status == "PENDING_CANCEL" and self._same_ask_pending(order, request):
            return None
        return self._store(state.apply_cancel(order, request))

    def apply_replace(self, decision: ReplaceDecision) -> list[Order]:
        """Risk's verdict on a cancel-replace: approved, the replace is asked (-> PENDING_CANCEL); denied,
        it is asked and refused at once (two states). The states to publish, none for a verdict on a
        replace the order has seen (its ``replace_id``) or the very same ask already pending."""
        request = decision.request
        order = self._order(request.client_order_id)
        if request.replace_id is not None and order.replace_id == request.replace_id:
            return []
        if decision.approved:
            if order.status == "PENDING_CANCEL" and self._same_ask_pending(order, request):
                return []
            return [self._store(state.apply_cancel(order, request))]
        asked, refused = state.deny_replace(order, request, decision.reason or "denied by risk")
        self._store(asked)
        return [asked, self._store(refused)]

    def rebuild(
        self,
        orders: Iterable[Order],
        exec_ids: Iterable[str] = (),
        forgotten: Iterable[str] = (),
        *,
        forgotten_at: Iterable[int] = (),
        exec_orders: Iterable[str] = (),
    ) -> None:
        """Start over from published states (the highest version per id wins), after a restart.

        ``exec_ids`` are the reports already applied to those states; pass the ones that may be
        redelivered (the unacknowledged tail of the report stream) so they are not applied twice;
        ``forgotten`` the ids of orders ended long ago (see ``forget_closed``), ``forgotten_at`` when
        each ended (none given: at 0, the first dropped); ``exec_orders`` the order of each exec id
        (none given: kept until the book is rebuilt again).
        A rebuilt order's terms are its current ones, so a redelivered request of an order since
        replaced is refused as a different order: loudly, and without changing anything."""
        latest: dict[str, Order] = {}
        for order in orders:
            known = latest.get(order.client_order_id)
            if known is None or order.version > known.version:
                latest[order.client_order_id] = order
        self._orders = latest
        self._open = {coid: order for coid, order in latest.items() if not order.is_terminal}
        self._closed = Ended((coid, order.updated) for coid, order in latest.items() if order.is_terminal)
        forgotten = list(forgotten)
        at = list(forgotten_at) or [0] * len(forgotten)
        ended = zip(forgotten, at, strict=True)
        self._forgotten_at = Ended((coid, ms) for coid, ms in ended if coid not in latest)
        self._forgotten = set(forgotten) - latest.keys()
        self._asked = {client_order_id: _terms(order) for client_order_id, order in latest.items()}
        self._exec_ids = set()
        self._exec_of = {}
        exec_ids = list(exec_ids)
        for exec_id, coid in zip(exec_ids, list(exec_orders) or [""] * len(exec_ids), strict=True):
            self._note_exec_id(exec_id, coid)

    def apply_state(
        self,
        order: Order,
        exec_id: str | None = None,
        forget_ended_before_ms: int | None = None,
        drop_ended_before_ms: int | None = None,
    ) -> None:
        """One published state, as a restart replays them (``rebuild`` one message at a time): the
        highest version per id wins, ``exec_id`` (the report that made it) counts as applied, and an
        order whose state ended it before ``forget_ended_before_ms`` is kept by its id only, or not at
        all when it ended before ``drop_ended_before_ms`` (see ``drop_forgotten``). A state the book
        already has (its own output read back) changes nothing."""
        coid = order.client_order_id
        if exec_id:
            self._note_exec_id(exec_id, coid)
        if coid in self._forgotten:
            return
        known = self._orders.get(coid)
        if known is not None and order.version <= known.version:
            return
        if (
            forget_ended_before_ms is not None
            and order.is_terminal
            and order.updated < forget_ended_before_ms
        ):
            self._orders.pop(coid, None)
            self._open.pop(coid, None)
            self._closed.discard(coid)
            self._asked.pop(coid, None)
            self._forgotten.add(coid)
            self._forgotten_at.add(coid, order.updated)
            if drop_ended_before_ms is not None and order.updated < drop_ended_before_ms:
                self.drop_forgotten(drop_ended_before_ms)
            return
        self._store(order)
        self._asked[coid] = _terms(order)  # a rebuilt order's terms are its current ones

    def snapshot(self) -> BookState:
        forgotten = self._forgotten_at.items()
        exec_ids = [(exec_id, coid) for coid, ids in self._exec_of.items() for exec_id in ids]
        return BookState(
            list(self._orders.values()),
            [coid for coid, _ in forgotten],
            [exec_id for exec_id, _ in exec_ids],
            forgotten_at=[at for _, at in forgotten],
            exec_orders=[coid for _, coid in exec_ids],
        )

    def restore(self, state: BookState) -> None:
        """Start over from a snapshot (``snapshot``)."""
        self.rebuild(
            state.orders,
            state.exec_ids,
            state.forgotten,
            forgotten_at=state.forgotten_at,
            exec_orders=state.exec_orders,
        )

    def _note_exec_id(self, exec_id: str, client_order_id: str) -> None:
        if exec_id in self._exec_ids:
            return
        self._exec_ids.add(exec_id)
        self._exec_of.setdefault(client_order_id, []).append(exec_id)

    def _order(self, client_order_id: str) -> Order:
        order = self._orders.get(client_order_id)
        if order is None:
            if client_order_id in self._forgotten:
                raise ForgottenOrder(f"order {client_order_id!r} ended long ago and is forgotten")
            raise UnknownOrder(f"no order {client_order_id!r}")
        return order

    def _is_duplicate(self, request: OrderRequest) -> bool:
        if request.client_order_id in self._forgotten:
            return True  # its terms are gone: whatever they were, a second order it is not
        asked = self._asked.get(request.client_order_id)
        if asked is None:
            return False
        if asked != _terms(state.new_order(request, 0)):
            raise DuplicateOrderId(
                f"client_order_id {request.client_order_id!r} is already used by a different order"
            )
        return True

    @staticmethod
    def _same_ask_pending(order: Order, request: CancelRequest) -> bool:
        return (order.replace_quantity, order.replace_price) == (request.quantity, request.price)

    def _store(self, order: Order) -> Order:
        self._orders[order.client_order_id] = order
        if order.is_terminal:
            self._open.pop(order.client_order_id, None)
            self._closed.add(order.client_order_id, order.updated)
        else:
            self._open[order.client_order_id] = order
        self._asked.setdefault(order.client_order_id, _terms(order))
        return order
