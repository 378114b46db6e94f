"""The oms's book from snapshots: for any history of orders and reports, a snapshot of the book taken at
any point, plus the published states after the sequence it covers, gives exactly the book of a full
replay of the states (and a repeated report stays a repeat)."""

from __future__ import annotations

import contextlib
from decimal import Decimal
from typing import Any

from hypothesis import given, settings
from hypothesis import strategies as st

from trader.messages import CancelRequest, ExecutionReport, Order, OrderRequest, ReplaceDecision, RiskDecision
from trader.orders.book import BookState, OrderBook, UnknownOrder
from trader.orders.state import IllegalTransition, LateRefusal, LateRequest, MismatchedEvent
from trader.runtime.snapshots import decode_record, encode_record

D = Decimal
VERSION = 1
COIDS = ["o-1", "o-2", "o-3", "o-4"]
EVENTS = [
    "approve",
    "deny",
    "cancel",
    "replace",
    "replace_denied",
    "accepted",
    "fill",
    "canceled",
    "rejected",
    "replaced",
    "repeat",
]

Published = tuple[Order, str | None]  # a state on order.state.>, and the exec id of its report


def _request(coid: str, n: int) -> OrderRequest:
    return OrderRequest(
        client_order_id=coid,
        strategy="s1",
        symbol="BTCUSDT",
        side="buy",
        quantity=D("4"),
        type="limit",
        price=D("100"),
        tif="GTC",
        timestamp=n,
    )


def _report(coid: str, n: int, kind: str, **terms: Any) -> ExecutionReport:
    return ExecutionReport(
        exec_id=f"e{n}",
        kind=kind,
        client_order_id=coid,
        strategy="s1",
        account="paper",
        venue="paper",
        symbol="BTCUSDT",
        side="buy",
        timestamp=n,
        **terms,
    )


def _event(book: OrderBook, coid: str, event: str, n: int, reports: list[ExecutionReport]) -> list[Published]:
    """One event applied to the live book: the states it publishes."""
    if event in ("approve", "deny"):
        decision = RiskDecision(request=_request(coid, n), approved=event == "approve", timestamp=n)
        order = book.apply_decision(decision)
        return [] if order is None else [(order, None)]
    if event == "cancel":
        order = book.apply_cancel(CancelRequest(client_order_id=coid, strategy="s1", timestamp=n))
        return [] if order is None else [(order, None)]
    if event in ("replace", "replace_denied"):
        ask = CancelRequest(
            client_order_id=coid, strategy="s1", price=D(101 + n), replace_id=f"r{n}", timestamp=n
        )
        verdict = ReplaceDecision(request=ask, approved=event == "replace", reason="no", timestamp=n)
        return [(order, None) for order in book.apply_replace(verdict)]
    if event == "repeat":
        if not reports:
            return []
        report = reports[n % len(reports)]
    elif event == "fill":
        report = _report(coid, n, "fill", last_quantity=D("1"), last_price=D("100"))
    elif event == "replaced":
        known = book.get(coid)  # the venue replaces to the terms asked, when there is a replace asked
        price = known.replace_price if known is not None and known.replace_price is not None else D(100)
        quantity = known.quantity if known is not None else D("4")
        report = _report(coid, n, "replaced", last_quantity=quantity, last_price=price)
    else:
        report = _report(coid, n, event)
    order = book.apply_report(report)
    reports.append(report)
    return [] if order is None else [(order, report.exec_id)]


@st.composite
def histories(draw: st.DrawFn) -> tuple[list[Published], list[tuple[BookState, int]]]:
    """The states a live book published, and snapshots of it taken along the way, each with the number
    of published states it covers (at most those published when it was taken: the oms reads its own
    states back later than it applies them)."""
    book = OrderBook()
    published: list[Published] = []
    snapshots: list[tuple[BookState, int]] = []
    reports: list[ExecutionReport] = []
    for n in range(1, draw(st.integers(0, 60)) + 1):
        coid, event = draw(st.sampled_from(COIDS)), draw(st.sampled_from(EVENTS))
        with contextlib.suppress(UnknownOrder, IllegalTransition, MismatchedEvent, LateRefusal, LateRequest):
            published += _event(book, coid, event, n, reports)
        snapshots.append((book.snapshot(), draw(st.integers(0, len(published)))))
    snapshots.append((book.snapshot(), len(published)))
    return published, snapshots


def _replayed(states: list[Published], book: OrderBook | None = None, cutoff: int | None = None) -> OrderBook:
    book = book if book is not None else OrderBook()
    for order, exec_id in states:
        book.apply_state(order, exec_id, cutoff)
    return book


def _whole(book: OrderBook) -> tuple[object, ...]:
    state = book.snapshot()
    return (
        sorted(state.orders, key=lambda order: order.client_order_id),
        sorted(state.forgotten),
        sorted(state.exec_ids),
        book.open_orders(),
        book._asked,
        dict(book._closed._at),
    )


@settings(max_examples=300, deadline=None)
@given(history=histories(), data=st.data())
def test_a_snapshot_plus_the_tail_is_a_full_replay(
    history: tuple[list[Published], list[tuple[BookState, int]]], data: st.DataObject
) -> None:
    published, snapshots = history
    taken, covers = data.draw(st.sampled_from(snapshots))
    cutoff = data.draw(st.none() | st.integers(0, 70))  # orders that ended before it are forgotten
    stored = encode_record(taken, {"ORDERS": covers}, VERSION, 0)
    loaded = decode_record(stored, BookState, VERSION)
    assert loaded.covers == {"ORDERS": covers}
    restored = OrderBook()
    restored.restore(loaded.state)
    resumed = _replayed(published[covers:], restored, cutoff)
    full = _replayed(published, cutoff=cutoff)
    if cutoff is not None:  # what the oms does once caught up: the snapshot's ended orders go too
        resumed.forget_closed(cutoff)
        full.forget_closed(cutoff)
    assert _whole(resumed) == _whole(full)
    # And both take what comes next the same way: a report applied before is nothing.
    for _order, exec_id in published:
        if exec_id is not None:
            assert exec_id in resumed.snapshot().exec_ids


@settings(max_examples=300, deadline=None)
@given(history=histories(), data=st.data())
def test_with_ids_dropped_too_a_snapshot_plus_the_tail_is_a_full_replay(
    history: tuple[list[Published], list[tuple[BookState, int]]], data: st.DataObject
) -> None:
    """The same with the ids of orders that ended before a second cutoff dropped (``drop_forgotten``,
    as the oms does a retention after it forgets them), during the replay and once caught up: the
    book holds the same, and a report applied before is a repeat or about an order no longer held,
    never applied twice."""
    published, snapshots = history
    taken, covers = data.draw(st.sampled_from(snapshots))
    cutoff = data.draw(st.integers(0, 70))
    drop = data.draw(st.integers(0, cutoff))
    loaded = decode_record(encode_record(taken, {"ORDERS": covers}, VERSION, 0), BookState, VERSION)
    restored = OrderBook()
    restored.restore(loaded.state)
    resumed, full = OrderBook(), OrderBook()
    resumed = restored
    for order, exec_id in published[covers:]:
        resumed.apply_state(order, exec_id, cutoff, drop)
    for order, exec_id in published:
        full.apply_state(order, exec_id, cutoff, drop)
    for book in (resumed, full):  # what the oms does once caught up
        book.forget_closed(cutoff)
        book.drop_forgotten(drop)
    assert _whole(resumed) == _whole(full)
    state = resumed.snapshot()
    assert sorted(state.forgotten) == sorted(resumed._forgotten)
    assert all(at >= drop for at in state.forgotten_at)
    held = {order.client_order_id for order in state.orders} | set(state.forgotten)
    assert set(state.exec_orders) <= held
    for order, exec_id in published:
        if exec_id is not None and exec_id not in state.exec_ids:
            assert order.client_order_id not in held


def test_a_state_read_back_changes_nothing_and_a_newer_one_wins() -> None:
    book = OrderBook()
    new = book.apply_decision(RiskDecision(request=_request("o-1", 1), approved=True, timestamp=1))
    assert new is not None
    accepted = book.apply_report(_report("o-1", 2, "accepted"))
    assert accepted is not None
    book.apply_state(new)  # the oms's own older state, read back late
    assert book.get("o-1") == accepted
    other = OrderBook()
    other.apply_state(new)
    other.apply_state(accepted, "e2")
    assert other.get("o-1") == accepted
    assert other.apply_report(_report("o-1", 2, "accepted")) is None  # e2 was applied


def test_a_state_that_ended_before_the_cutoff_keeps_only_the_id() -> None:
    book = OrderBook()
    denied = book.apply_decision(RiskDecision(request=_request("o-1", 1), approved=False, timestamp=1))
    assert denied is not None
    replayed = OrderBook()
    replayed.apply_state(denied, forget_ended_before_ms=2)
    assert (replayed.get("o-1"), replayed.forgotten_count) == (None, 1)
    # A repeat of its request is still a repeat, not a second order.
    assert (
        replayed.apply_decision(RiskDecision(request=_request("o-1", 1), approved=True, timestamp=3)) is None
    )
