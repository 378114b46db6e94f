"""The oms's book: idempotent submits and reports, refusals that change nothing, restart recovery."""

from __future__ import annotations

import contextlib
from decimal import Decimal
from typing import Any

import msgspec
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from trader.messages import CancelRequest, ExecutionReport, Order, OrderRequest, RiskDecision
from trader.orders.book import DuplicateOrderId, ForgottenOrder, OrderBook, UnknownOrder
from trader.orders.state import IllegalTransition, LateRefusal, LateRequest, MismatchedEvent

D = Decimal


def request(client_order_id: str = "o-1", **changes: Any) -> OrderRequest:
    terms: dict[str, Any] = {
        "client_order_id": client_order_id,
        "strategy": "s1",
        "symbol": "BTCUSDT",
        "side": "buy",
        "quantity": D("2"),
        "type": "limit",
        "price": D("100"),
        "timestamp": 1_000,
    }
    return OrderRequest(**{**terms, **changes})


def report(exec_id: str, kind: str, client_order_id: str = "o-1", **changes: Any) -> ExecutionReport:
    terms: dict[str, Any] = {
        "exec_id": exec_id,
        "kind": kind,
        "client_order_id": client_order_id,
        "strategy": "s1",
        "account": "paper",
        "venue": "binance",
        "symbol": "BTCUSDT",
        "side": "buy",
        "timestamp": 2_000,
    }
    return ExecutionReport(**{**terms, **changes})


def fill(exec_id: str, quantity: str, price: str = "100", client_order_id: str = "o-1") -> ExecutionReport:
    return report(exec_id, "fill", client_order_id, last_quantity=D(quantity), last_price=D(price))


def order_of(book: OrderBook, client_order_id: str) -> Order:
    order = book.get(client_order_id)
    assert order is not None
    return order


def test_submit_is_idempotent_per_client_order_id() -> None:
    book = OrderBook()
    first = book.submit(request())
    assert first is not None
    assert (first.status, first.version, first.created) == ("NEW", 1, 1_000)
    assert book.submit(request()) is None
    assert len(book) == 1
    assert book.get("o-1") == first


def test_a_different_request_with_a_used_id_is_refused() -> None:
    book = OrderBook()
    book.submit(request())
    with pytest.raises(DuplicateOrderId, match="'o-1' is already used by a different order"):
        book.submit(request(quantity=D("3")))
    with pytest.raises(DuplicateOrderId):
        book.apply_decision(RiskDecision(request=request(side="sell"), approved=False, reason="x"))
    assert order_of(book, "o-1").quantity == D("2")


def test_decisions_make_new_or_rejected_orders_and_the_first_one_wins() -> None:
    book = OrderBook()
    approved = book.apply_decision(RiskDecision(request=request("a"), approved=True, timestamp=5))
    denied = book.apply_decision(
        RiskDecision(request=request("b"), approved=False, reason="halted: operator", timestamp=6)
    )
    assert approved is not None
    assert denied is not None
    assert (approved.status, approved.version, approved.created) == ("NEW", 1, 5)
    assert (denied.status, denied.version, denied.reason) == ("REJECTED", 2, "halted: operator")
    assert book.apply_decision(RiskDecision(request=request("b"), approved=False, reason="again")) is None
    assert book.apply_decision(RiskDecision(request=request("a"), approved=False, reason="late")) is None
    assert order_of(book, "a").status == "NEW"
    assert [order.client_order_id for order in book.open_orders()] == ["a"]


def test_a_report_seen_twice_is_applied_once() -> None:
    book = OrderBook()
    book.submit(request())
    book.apply_report(report("x-1", "accepted"))
    changed = book.apply_report(fill("x-2", "1"))
    assert changed is not None
    assert (changed.status, changed.filled_quantity, changed.version) == ("PARTIALLY_FILLED", D(1), 3)
    assert book.apply_report(fill("x-2", "1")) is None
    assert book.get("o-1") == changed
    done = book.apply_report(fill("x-3", "1"))
    assert done is not None
    assert done.status == "FILLED"
    assert book.open_orders() == []


def test_a_refused_report_changes_nothing_and_is_not_remembered() -> None:
    book = OrderBook()
    book.submit(request())
    before = book.get("o-1")
    with pytest.raises(IllegalTransition, match="overfill"):
        book.apply_report(fill("x-1", "3"))
    assert book.get("o-1") == before
    with pytest.raises(IllegalTransition):  # refused again, not silently skipped as "seen"
        book.apply_report(fill("x-1", "3"))


def test_events_for_unknown_orders_are_refused() -> None:
    book = OrderBook()
    with pytest.raises(UnknownOrder, match="no order 'nope'"):
        book.apply_report(fill("x-1", "1", client_order_id="nope"))
    with pytest.raises(UnknownOrder):
        book.apply_cancel(CancelRequest(client_order_id="nope", strategy="s1"))


def test_cancel_is_idempotent_while_pending() -> None:
    book = OrderBook()
    book.submit(request())
    book.apply_report(report("x-1", "accepted"))
    pending = book.apply_cancel(CancelRequest(client_order_id="o-1", strategy="s1"))
    assert pending is not None
    assert pending.status == "PENDING_CANCEL"
    assert book.apply_cancel(CancelRequest(client_order_id="o-1", strategy="s1")) is None
    canceled = book.apply_report(report("x-2", "canceled"))
    assert canceled is not None
    assert canceled.status == "CANCELED"
    with pytest.raises(IllegalTransition, match="too late to cancel"):
        book.apply_cancel(CancelRequest(client_order_id="o-1", strategy="s1"))


def test_open_orders_by_strategy() -> None:
    book = OrderBook()
    book.submit(request("a"))
    book.submit(request("b", strategy="s2"))
    book.submit(request("c"))
    book.apply_report(report("x-1", "rejected", "c"))
    assert [o.client_order_id for o in book.open_orders()] == ["a", "b"]
    assert [o.client_order_id for o in book.open_orders("s2")] == ["b"]


def test_rebuild_keeps_the_latest_version_and_the_applied_exec_ids() -> None:
    live = OrderBook()
    live.submit(request("a"))
    live.submit(request("b"))
    history = [live.get("a"), live.get("b")]
    history.append(live.apply_report(report("x-1", "accepted", "a")))
    history.append(live.apply_report(fill("x-2", "1", client_order_id="a")))
    history.append(live.apply_report(fill("x-3", "2", client_order_id="b")))

    restarted = OrderBook()
    restarted.rebuild(reversed([order for order in history if order is not None]), exec_ids=["x-2", "x-3"])
    assert restarted.get("a") == live.get("a")
    assert restarted.get("b") == live.get("b")
    assert restarted.apply_report(fill("x-2", "1", client_order_id="a")) is None  # redelivered
    assert restarted.submit(request("a")) is None  # redelivered request
    changed = restarted.apply_report(fill("x-4", "1", client_order_id="a"))
    assert changed is not None
    assert (changed.status, changed.version) == ("FILLED", 4)
    assert [o.client_order_id for o in restarted.open_orders()] == []


def test_orders_ended_before_the_cutoff_are_forgotten_but_their_ids_stay_taken() -> None:
    book = OrderBook()
    for coid in ("old", "recent", "working"):
        book.submit(request(coid), now_ms=1_000)
        book.apply_report(report(f"{coid}-1", "accepted", coid, timestamp=1_500))
    book.apply_report(report("old-2", "canceled", "old", timestamp=2_000))
    book.apply_report(fill("recent-2", "2", client_order_id="recent"))  # at 2_000 too
    assert book.forget_closed(ended_before_ms=2_000) == 0  # ended at 2_000: not before it
    assert book.forget_closed(ended_before_ms=2_001, limit=1) == 1  # a few at a time: no long pause
    assert book.forget_closed(ended_before_ms=2_001) == 1
    assert (len(book), book.forgotten_count, book.open_count) == (1, 2, 1)
    assert [o.client_order_id for o in book.open_orders()] == ["working"]
    assert book.get("old") is None
    # The same request again, or another under the same id: a repeat, never a second order.
    assert book.submit(request("old")) is None
    assert book.apply_decision(RiskDecision(request=request("recent", quantity=D(9)), approved=True)) is None
    assert book.apply_decision(RiskDecision(request=request("old"), approved=False)) is None
    # A report applied before is still a quiet repeat; anything else about them is refused.
    assert book.apply_report(fill("recent-2", "2", client_order_id="recent")) is None
    with pytest.raises(ForgottenOrder):
        book.apply_report(fill("recent-9", "1", client_order_id="recent"))
    with pytest.raises(ForgottenOrder):
        book.apply_cancel(CancelRequest(client_order_id="old", strategy="s1"))
    with pytest.raises(UnknownOrder):  # a ForgottenOrder is an UnknownOrder, of its own kind
        book.apply_cancel(CancelRequest(client_order_id="never", strategy="s1"))
    assert book.forget_closed(ended_before_ms=10**15) == 0  # the working order stays


def test_a_rebuilt_book_forgets_by_the_time_orders_ended() -> None:
    book = OrderBook()
    for coid, ended in (("b", 3_000), ("a", 2_000), ("c", 4_000)):
        book.submit(request(coid), now_ms=1_000)
        book.apply_report(report(f"{coid}-1", "canceled", coid, timestamp=ended))
    restarted = OrderBook()
    # "z" was forgotten while the history was read: an id only.
    restarted.rebuild([order_of(book, coid) for coid in ("b", "a", "c")], [], forgotten=["z"])
    assert restarted.forget_closed(ended_before_ms=3_500) == 2
    assert [coid for coid in ("a", "b", "c") if restarted.get(coid) is not None] == ["c"]
    assert restarted.forgotten_count == 3
    assert restarted.submit(request("z")) is None
    with pytest.raises(ForgottenOrder):
        restarted.apply_report(report("z-1", "accepted", "z"))


def test_the_ids_of_forgotten_orders_and_their_exec_ids_leave_once_dropped() -> None:
    book = OrderBook()
    for coid, ended in (("a", 2_000), ("b", 3_000)):
        book.submit(request(coid), now_ms=1_000)
        book.apply_report(report(f"{coid}-1", "accepted", coid, timestamp=1_500))
        book.apply_report(report(f"{coid}-2", "canceled", coid, timestamp=ended))
    assert book.forget_closed(ended_before_ms=10_000) == 2
    assert book.drop_forgotten(ended_before_ms=2_000) == 0  # ended at 2_000: not before it
    assert book.drop_forgotten(ended_before_ms=2_500) == 1
    state = book.snapshot()
    assert (state.forgotten, state.forgotten_at) == (["b"], [3_000])
    assert sorted(zip(state.exec_ids, state.exec_orders, strict=True)) == [("b-1", "b"), ("b-2", "b")]
    # "b" is still an id taken, its reports repeats; "a" is gone: nothing of it is held.
    assert book.submit(request("b")) is None
    assert book.apply_report(report("b-2", "canceled", "b", timestamp=3_000)) is None
    with pytest.raises(UnknownOrder) as refused:
        book.apply_report(report("a-2", "canceled", "a", timestamp=2_000))
    assert not isinstance(refused.value, ForgottenOrder)
    assert book.forgotten_count == 1
    restored = OrderBook()
    restored.restore(state)
    assert restored.snapshot() == state
    assert restored.drop_forgotten(ended_before_ms=3_001) == 1
    assert restored.snapshot() == type(state)([], [], [], [], [])


def test_a_replayed_state_that_ended_before_the_drop_cutoff_leaves_nothing() -> None:
    book = OrderBook()
    book.submit(request("a"), now_ms=1_000)
    accepted = book.apply_report(report("a-1", "accepted", "a", timestamp=1_500))
    canceled = book.apply_report(report("a-2", "canceled", "a", timestamp=2_000))
    assert accepted is not None
    assert canceled is not None
    replayed = OrderBook()
    replayed.apply_state(msgspec.structs.replace(canceled, version=1, status="NEW"))
    replayed.apply_state(accepted, "a-1", 5_000, 2_500)
    replayed.apply_state(canceled, "a-2", 5_000, 2_500)
    assert (len(replayed), replayed.forgotten_count, replayed.snapshot().exec_ids) == (0, 0, [])
    kept = OrderBook()
    kept.apply_state(accepted, "a-1", 5_000, 1_000)
    kept.apply_state(canceled, "a-2", 5_000, 1_000)
    assert (len(kept), kept.forgotten_count, sorted(kept.snapshot().exec_ids)) == (0, 1, ["a-1", "a-2"])


EVENTS = st.lists(
    st.tuples(
        st.sampled_from(["o-1", "o-2", "o-3"]),
        st.sampled_from(["approve", "deny", "accepted", "fill", "canceled", "expired", "cancel", "forget"]),
    ),
    max_size=40,
)


@settings(max_examples=200, deadline=None)
@given(EVENTS)
def test_the_open_orders_are_the_orders_not_terminal_oldest_first(events: list[tuple[str, str]]) -> None:
    """The index of open orders agrees with the whole book after any sequence of events, refused ones
    included, and after a rebuild from the latest states."""
    book = OrderBook()
    for n, (coid, event) in enumerate(events):
        with contextlib.suppress(UnknownOrder, IllegalTransition, MismatchedEvent, LateRefusal, LateRequest):
            if event == "forget":  # every ended order: the open ones must stay as they are
                book.forget_closed(ended_before_ms=10**15)
            elif event in ("approve", "deny"):
                book.apply_decision(RiskDecision(request=request(coid), approved=event == "approve"))
            elif event == "cancel":
                book.apply_cancel(CancelRequest(client_order_id=coid, strategy="s1"))
            elif event == "fill":
                book.apply_report(fill(f"e{n}", "1", client_order_id=coid))
            else:
                book.apply_report(report(f"e{n}", event, coid))
        expected = sorted(
            (order for order in everything_of(book) if not order.is_terminal),
            key=lambda o: first_seen(events, o),
        )
        assert book.open_orders() == expected
        assert book.open_count == len(expected)
    restarted = OrderBook()  # from the latest states, in the order the history has them
    restarted.rebuild(sorted(everything_of(book), key=lambda o: first_seen(events, o)), [])
    assert restarted.open_orders() == book.open_orders()


def first_seen(events: list[tuple[str, str]], order: Order) -> int:
    return next(
        i
        for i, (coid, event) in enumerate(events)
        if coid == order.client_order_id and event in ("approve", "deny")
    )


def everything_of(book: OrderBook) -> list[Order]:
    return [order for coid in ("o-1", "o-2", "o-3") if (order := book.get(coid)) is not None]
