"""Risk's verdict on a cancel-replace in the oms's book: applied once per replace id, a denial leaving the
order working as it was, with the reason; every state through the transition table."""

from __future__ import annotations

from decimal import Decimal

import msgspec
import pytest

from trader.messages import CancelRequest, ExecutionReport, Order, OrderRequest, ReplaceDecision
from trader.orders.book import OrderBook
from trader.orders.state import LateRequest, is_legal

D = Decimal


def accepted_book() -> OrderBook:
    book = OrderBook()
    request = OrderRequest(
        client_order_id="o-1",
        strategy="s1",
        symbol="BTCUSDT",
        side="buy",
        quantity=D(1),
        type="limit",
        price=D(100),
        timestamp=1_000,
    )
    book.submit(request)
    book.apply_report(
        ExecutionReport(
            exec_id="e-1",
            kind="accepted",
            client_order_id="o-1",
            strategy="s1",
            account="paper",
            venue="paper",
            symbol="BTCUSDT",
            side="buy",
            timestamp=1_500,
        )
    )
    return book


def verdict(approved: bool, replace_id: str = "o-1:9", quantity: str = "3") -> ReplaceDecision:
    request = CancelRequest(
        client_order_id="o-1",
        strategy="s1",
        quantity=D(quantity),
        reason="replace",
        timestamp=2_000,
        replace_id=replace_id,
    )
    reason = None if approved else "max_order_notional: 300 > 200"
    return ReplaceDecision(request=request, approved=approved, reason=reason, timestamp=2_000)


def current(book: OrderBook) -> Order:
    order = book.get("o-1")
    assert order is not None
    return order


def test_an_approved_replace_is_asked_once_per_replace_id() -> None:
    book = accepted_book()
    [asked] = book.apply_replace(verdict(True))
    assert (asked.status, asked.quantity, asked.replace_quantity, asked.replace_id, asked.version) == (
        "PENDING_CANCEL",
        D(1),
        D(3),
        "o-1:9",
        3,
    )
    assert book.apply_replace(verdict(True)) == []
    # Confirmed by the venue: the same verdict seen again (a redelivery) is still no second replace.
    book.apply_report(
        ExecutionReport(
            exec_id="e-2",
            kind="replaced",
            client_order_id="o-1",
            strategy="s1",
            account="paper",
            venue="paper",
            symbol="BTCUSDT",
            side="buy",
            timestamp=2_500,
        )
    )
    assert (current(book).status, current(book).quantity) == ("ACCEPTED", D(3))
    assert book.apply_replace(verdict(True)) == []
    # Another replace is another id.
    [again] = book.apply_replace(verdict(True, "o-1:12", quantity="2"))
    assert (again.status, again.replace_quantity) == ("PENDING_CANCEL", D(2))


def test_a_denied_replace_leaves_the_order_working_as_it_was_with_the_reason() -> None:
    book = accepted_book()
    before = current(book)
    asked, refused = book.apply_replace(verdict(False))
    assert (asked.status, asked.version, refused.version) == ("PENDING_CANCEL", 3, 4)
    assert is_legal(before.status, asked.status)
    assert is_legal(asked.status, refused.status)
    assert refused == msgspec.structs.replace(
        before,
        version=4,
        updated=2_000,
        reason="replace denied: max_order_notional: 300 > 200",
        replace_id="o-1:9",
    )
    assert current(book) == refused
    assert book.apply_replace(verdict(False)) == []  # a redelivered denial changes nothing


def test_a_verdict_on_an_order_that_ended_is_late() -> None:
    book = accepted_book()
    book.apply_report(
        ExecutionReport(
            exec_id="e-2",
            kind="fill",
            client_order_id="o-1",
            strategy="s1",
            account="paper",
            venue="paper",
            symbol="BTCUSDT",
            side="buy",
            last_quantity=D(1),
            last_price=D(100),
            timestamp=1_800,
        )
    )
    with pytest.raises(LateRequest):
        book.apply_replace(verdict(False))
    with pytest.raises(LateRequest):
        book.apply_replace(verdict(True))
    assert current(book).status == "FILLED"
