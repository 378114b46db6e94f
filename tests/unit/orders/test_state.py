"""The order state machine: worked examples, and random event sequences that never break it."""

from __future__ import annotations

import contextlib
import itertools
from decimal import Decimal
from typing import Any

import pytest
from hypothesis import assume, given, settings
from hypothesis import strategies as st

from trader.messages import TERMINAL_STATUSES, CancelRequest, ExecutionReport, Order, OrderRequest
from trader.orders.state import (
    TERMINAL,
    TRANSITIONS,
    IllegalTransition,
    LateRefusal,
    LateRequest,
    MismatchedEvent,
    apply_cancel,
    apply_report,
    new_order,
    reject_by_risk,
)

D = Decimal
_exec_ids = itertools.count()


def request(**changes: Any) -> OrderRequest:
    terms: dict[str, Any] = {
        "client_order_id": "o-1",
        "strategy": "s1",
        "symbol": "BTCUSDT",
        "side": "buy",
        "quantity": D("4"),
        "type": "limit",
        "price": D("100"),
        "timestamp": 1_000,
    }
    return OrderRequest(**{**terms, **changes})


def report(order: Order, kind: str, **changes: Any) -> ExecutionReport:
    terms: dict[str, Any] = {
        "exec_id": f"x-{next(_exec_ids)}",
        "kind": kind,
        "client_order_id": order.client_order_id,
        "strategy": order.strategy,
        "account": order.account,
        "venue": "binance",
        "symbol": order.symbol,
        "side": order.side,
        "timestamp": order.updated + 1,
    }
    return ExecutionReport(**{**terms, **changes})


def fill(order: Order, quantity: str, price: str, fee: str = "0") -> ExecutionReport:
    return report(order, "fill", last_quantity=D(quantity), last_price=D(price), fee=D(fee))


def cancel(order: Order, **changes: Any) -> CancelRequest:
    return CancelRequest(client_order_id=order.client_order_id, strategy=order.strategy, **changes)


def accepted() -> Order:
    order = new_order(request(), 1_000)
    return apply_report(order, report(order, "accepted", venue_order_id="v-1"))


def test_the_table_has_every_status_and_terminal_ones_have_no_way_out() -> None:
    assert set(TRANSITIONS) == {
        "NEW",
        "ACCEPTED",
        "REJECTED",
        "PARTIALLY_FILLED",
        "FILLED",
        "PENDING_CANCEL",
        "CANCELED",
        "EXPIRED",
    }
    assert {status for status, targets in TRANSITIONS.items() if not targets} == TERMINAL == TERMINAL_STATUSES
    assert all(targets <= set(TRANSITIONS) for targets in TRANSITIONS.values())


def test_a_new_order_copies_the_request() -> None:
    order = new_order(request(tif="IOC", reduce_only=True, venue="binance"), 1_234)
    assert (order.status, order.version, order.created, order.updated) == ("NEW", 1, 1_234, 1_234)
    assert (order.quantity, order.price, order.tif, order.reduce_only, order.venue) == (
        D("4"),
        D("100"),
        "IOC",
        True,
        "binance",
    )
    assert order.filled_quantity == 0
    assert order.average_price is None


def test_accept_then_partial_fills_then_filled_with_exact_average_and_fees() -> None:
    order = accepted()
    assert (order.status, order.version, order.venue_order_id) == ("ACCEPTED", 2, "v-1")
    order = apply_report(order, fill(order, "1", "100", "0.10"))
    assert (order.status, order.filled_quantity, order.average_price) == ("PARTIALLY_FILLED", D(1), D(100))
    order = apply_report(order, fill(order, "2", "103", "0.20"))
    assert (order.status, order.filled_quantity, order.average_price) == ("PARTIALLY_FILLED", D(3), D(102))
    order = apply_report(order, fill(order, "1", "98.5", "-0.05"))
    assert order.status == "FILLED"
    assert order.filled_quantity == order.quantity == D(4)
    assert order.average_price == D("101.125")  # (100 + 206 + 98.5) / 4
    assert order.fees == D("0.25")
    assert order.version == 5
    assert order.leaves_quantity == 0


def test_an_overfill_is_refused() -> None:
    order = apply_report(accepted(), fill(accepted(), "3", "100"))
    with pytest.raises(IllegalTransition, match=r"overfill: 5 > 4") as refused:
        apply_report(order, fill(order, "2", "100"))
    assert refused.value.from_status == "PARTIALLY_FILLED"


@pytest.mark.parametrize(("quantity", "price"), [("0", "100"), ("-1", "100"), ("1", "0")])
def test_a_fill_without_a_positive_quantity_and_price_is_refused(quantity: str, price: str) -> None:
    order = accepted()
    with pytest.raises(IllegalTransition, match="positive quantity and price"):
        apply_report(order, fill(order, quantity, price))


def test_a_fill_on_a_canceled_order_is_refused() -> None:
    order = accepted()
    order = apply_report(order, report(order, "canceled"))
    assert (order.status, order.reason) == ("CANCELED", "canceled by venue")
    with pytest.raises(IllegalTransition, match="on a CANCELED order") as refused:
        apply_report(order, fill(order, "1", "100"))
    assert (refused.value.from_status, refused.value.to_status) == ("CANCELED", "PARTIALLY_FILLED")


def test_a_fill_while_the_cancel_is_pending_moves_on_and_the_cancel_still_lands() -> None:
    order = apply_cancel(accepted(), cancel(accepted(), reason="strategy stop"))
    assert (order.status, order.reason) == ("PENDING_CANCEL", "strategy stop")
    order = apply_report(order, fill(order, "1", "100"))
    assert order.status == "PARTIALLY_FILLED"
    order = apply_report(order, report(order, "canceled"))
    assert (order.status, order.filled_quantity, order.reason) == ("CANCELED", D(1), "strategy stop")


def test_a_fill_completing_the_order_while_the_cancel_is_pending_fills_it() -> None:
    order = apply_cancel(accepted(), cancel(accepted()))
    order = apply_report(order, fill(order, "4", "100"))
    assert order.status == "FILLED"
    with pytest.raises(IllegalTransition, match="nothing left to cancel"):
        apply_report(order, report(order, "canceled"))


def test_expired_keeps_what_was_filled_and_says_what_was_not() -> None:
    order = apply_report(accepted(), fill(accepted(), "1.5", "100"))
    order = apply_report(order, report(order, "expired"))
    assert (order.status, order.filled_quantity) == ("EXPIRED", D("1.5"))
    assert order.reason == "expired with 2.5 unfilled"


def working_orders() -> list[Order]:
    new, working = new_order(request(), 1_000), accepted()
    partly = apply_report(working, fill(working, "1", "100"))
    return [
        new,
        working,
        partly,
        apply_cancel(working, cancel(working)),
        apply_cancel(partly, cancel(partly)),
    ]


@pytest.mark.parametrize("kind", ["expired", "canceled"])
def test_any_working_order_can_expire_or_be_canceled_by_the_venue(kind: str) -> None:
    for order in working_orders():
        ended = apply_report(order, report(order, kind))
        assert ended.status == kind.upper()
        assert (ended.filled_quantity, ended.version) == (order.filled_quantity, order.version + 1)


def test_risk_denial_rejects_a_new_order_only() -> None:
    order = reject_by_risk(new_order(request(), 1), "max_order_notional: 400 > 100", 2)
    assert (order.status, order.reason, order.version) == ("REJECTED", "max_order_notional: 400 > 100", 2)
    with pytest.raises(IllegalTransition):
        reject_by_risk(accepted(), "late", 3)


def test_venue_rejection_of_a_new_order() -> None:
    order = new_order(request(), 1)
    order = apply_report(order, report(order, "rejected", reason="insufficient balance"))
    assert (order.status, order.reason) == ("REJECTED", "insufficient balance")


def test_a_refused_cancel_returns_the_order_to_work() -> None:
    order = apply_cancel(accepted(), cancel(accepted()))
    order = apply_report(order, report(order, "rejected", reason="unknown order"))
    assert (order.status, order.reason) == ("ACCEPTED", "cancel refused: unknown order")


def test_a_cancel_refused_after_the_order_filled_is_a_late_refusal_that_changes_nothing() -> None:
    # The race every venue has: the order fills while its cancel (or replace) is on the way.
    order = apply_cancel(accepted(), cancel(accepted()))
    order = apply_report(order, fill(order, "4", "100"))
    assert order.status == "FILLED"
    with pytest.raises(LateRefusal, match="refused after the order ended"):
        apply_report(order, report(order, "rejected", reason="replace rejected: order has ended"))
    working = accepted()  # a rejection of a working order with nothing pending stays an illegal event
    with pytest.raises(IllegalTransition) as raised:
        apply_report(working, report(working, "rejected"))
    assert not isinstance(raised.value, LateRefusal)


def test_cancel_before_the_ack_then_rejected_is_a_rejected_order() -> None:
    order = new_order(request(), 1)
    order = apply_cancel(order, cancel(order))
    order = apply_report(order, report(order, "rejected"))
    assert order.status == "REJECTED"


def test_an_ack_of_an_order_whose_cancel_is_pending_keeps_the_cancel_pending() -> None:
    order = new_order(request(), 1)
    order = apply_cancel(order, cancel(order))
    order = apply_report(order, report(order, "accepted", venue_order_id="v-9"))
    assert (order.status, order.venue_order_id, order.version) == ("PENDING_CANCEL", "v-9", 3)


def test_cancel_twice_or_too_late_is_refused() -> None:
    pending = apply_cancel(accepted(), cancel(accepted()))
    with pytest.raises(IllegalTransition, match="already pending"):
        apply_cancel(pending, cancel(pending))
    filled = apply_report(accepted(), fill(accepted(), "4", "100"))
    with pytest.raises(IllegalTransition, match="too late to cancel"):
        apply_cancel(filled, cancel(filled))


def test_a_cancel_or_replace_after_the_order_ended_is_a_late_request_not_a_fault() -> None:
    filled = apply_report(accepted(), fill(accepted(), "4", "100"))
    for late in (cancel(filled), cancel(filled, price=D("101")), cancel(filled, quantity=D("9"))):
        with pytest.raises(LateRequest, match=r"too late to (cancel|replace): the order had ended"):
            apply_cancel(filled, late)
    pending = apply_cancel(accepted(), cancel(accepted()))
    with pytest.raises(IllegalTransition) as refused:
        apply_cancel(pending, cancel(pending))
    assert not isinstance(refused.value, LateRequest)  # the order still lives: a fault upstream


def test_cancel_replace_is_pending_until_the_venue_confirms() -> None:
    order = apply_report(accepted(), fill(accepted(), "1", "100"))
    order = apply_cancel(order, cancel(order, quantity=D("6"), price=D("99")))
    assert (order.status, order.quantity, order.price) == ("PENDING_CANCEL", D(4), D(100))
    assert (order.replace_quantity, order.replace_price) == (D(6), D(99))
    order = apply_report(order, report(order, "replaced", venue_order_id="v-2"))
    assert (order.status, order.quantity, order.price, order.venue_order_id) == (
        "PARTIALLY_FILLED",
        D(6),
        D(99),
        "v-2",
    )
    assert (order.replace_quantity, order.replace_price) == (None, None)
    assert order.leaves_quantity == D(5)


def test_a_refused_replace_keeps_the_old_terms() -> None:
    order = apply_cancel(accepted(), cancel(accepted(), price=D("101")))
    order = apply_report(order, report(order, "rejected", reason="would cross"))
    assert (order.status, order.price, order.replace_price) == ("ACCEPTED", D(100), None)


def test_replace_rules() -> None:
    partly = apply_report(accepted(), fill(accepted(), "2", "100"))
    with pytest.raises(IllegalTransition, match="must exceed filled 2"):
        apply_cancel(partly, cancel(partly, quantity=D("2")))
    new = new_order(request(), 1)
    with pytest.raises(IllegalTransition, match="only an order the venue works on"):
        apply_cancel(new, cancel(new, quantity=D("5")))
    market = apply_report(
        new_order(request(type="market", price=None), 1),
        report(new_order(request(type="market", price=None), 1), "accepted"),
    )
    with pytest.raises(IllegalTransition, match="market order cannot take limit price"):
        apply_cancel(market, cancel(market, price=D("5")))
    with pytest.raises(IllegalTransition, match="none was requested"):
        apply_report(accepted(), report(accepted(), "replaced"))


def test_a_replace_down_to_what_filled_meanwhile_fills_the_order() -> None:
    order = apply_cancel(accepted(), cancel(accepted(), quantity=D("3")))
    order = apply_report(order, fill(order, "3", "100"))
    order = apply_report(order, report(order, "replaced"))
    assert (order.status, order.quantity, order.filled_quantity) == ("FILLED", D(3), D(3))


def test_a_report_for_another_order_is_refused() -> None:
    order = accepted()
    with pytest.raises(MismatchedEvent):
        apply_report(order, report(order, "fill", side="sell", last_quantity=D(1), last_price=D(1)))
    with pytest.raises(MismatchedEvent):
        apply_cancel(order, CancelRequest(client_order_id="o-1", strategy="other"))


def test_a_late_ack_after_a_fill_is_refused() -> None:
    order = apply_report(new_order(request(), 1), fill(new_order(request(), 1), "1", "100"))
    with pytest.raises(IllegalTransition, match="already worked on"):
        apply_report(order, report(order, "accepted"))


def test_every_transition_in_the_table_is_reachable_and_no_other() -> None:
    new = new_order(request(), 1_000)
    working = accepted()
    partly = apply_report(working, fill(working, "1", "100"))
    sources = [
        new,
        working,
        partly,
        apply_cancel(working, cancel(working)),
        apply_cancel(new, cancel(new)),
        apply_cancel(working, cancel(working, quantity=D("6"))),
        apply_report(partly, fill(partly, "3", "100")),
        apply_report(working, report(working, "canceled")),
        apply_report(new, report(new, "rejected")),
        apply_report(working, report(working, "expired")),
    ]
    events = [
        lambda o: apply_report(o, report(o, "accepted")),
        lambda o: apply_report(o, report(o, "rejected")),
        lambda o: apply_report(o, fill(o, "1", "100")),
        lambda o: apply_report(o, fill(o, str(o.leaves_quantity), "100")),
        lambda o: apply_report(o, report(o, "canceled")),
        lambda o: apply_report(o, report(o, "expired")),
        lambda o: apply_report(o, report(o, "replaced")),
        lambda o: apply_cancel(o, cancel(o)),
        lambda o: apply_cancel(o, cancel(o, quantity=D("6"))),
        lambda o: reject_by_risk(o, "denied", 2_000),
    ]
    reached: set[tuple[str, str]] = set()
    for source in sources:
        for event in events:
            with contextlib.suppress(IllegalTransition):
                reached.add((source.status, event(source).status))
    assert reached == {(start, end) for start, ends in TRANSITIONS.items() for end in ends}


# Random sequences --------------------------------------------------------------------------------

ORDER_QUANTITY = D("10")
quantities = st.integers(min_value=1, max_value=12).map(lambda n: D(n) / 2)  # 0.5 .. 6
prices = st.integers(min_value=9_000, max_value=11_000).map(lambda n: D(n) / 100)
fees = st.integers(min_value=-5, max_value=20).map(lambda n: D(n) / 100)
events = st.one_of(
    st.sampled_from(["accepted", "rejected", "canceled", "expired", "replaced", "cancel", "deny"]).map(
        lambda kind: (kind,)
    ),
    st.tuples(st.just("fill"), quantities, prices, fees),
    st.tuples(st.just("replace"), st.integers(min_value=1, max_value=30).map(lambda n: D(n) / 2)),
)


def apply_event(order: Order, event: tuple[Any, ...]) -> Order:
    kind = event[0]
    if kind == "fill":
        _, quantity, price, fee = event
        return apply_report(order, report(order, "fill", last_quantity=quantity, last_price=price, fee=fee))
    if kind == "cancel":
        return apply_cancel(order, cancel(order))
    if kind == "replace":
        return apply_cancel(order, cancel(order, quantity=event[1]))
    if kind == "deny":
        return reject_by_risk(order, "denied", order.updated + 1)
    return apply_report(order, report(order, kind))


@settings(max_examples=300, deadline=None)
@given(st.lists(events, min_size=1, max_size=25))
def test_random_events_never_break_the_state_machine(sequence: list[tuple[Any, ...]]) -> None:
    order = new_order(request(quantity=ORDER_QUANTITY), 1_000)
    applied_fills: list[tuple[Decimal, Decimal, Decimal]] = []
    for event in sequence:
        changed = attempt(order, event)
        if isinstance(changed, IllegalTransition):
            assert changed.from_status == order.status
            assert not fill_must_apply(order, event), f"a fill that fits was refused: {changed}"
            continue
        assert order.status not in TERMINAL, "a terminal order changed"
        assert changed.status in TRANSITIONS[order.status], f"{order.status} -> {changed.status}"
        assert changed.version == order.version + 1
        if event[0] == "fill":
            applied_fills.append(event[1:])
        order = changed
        check_invariants(order, applied_fills)


def attempt(order: Order, event: tuple[Any, ...]) -> Order | IllegalTransition:
    """The changed order, or the refusal (the order is immutable: a refusal leaves it as it was)."""
    try:
        return apply_event(order, event)
    except IllegalTransition as refused:
        return refused


def fill_must_apply(order: Order, event: tuple[Any, ...]) -> bool:
    return event[0] == "fill" and not order.is_terminal and order.filled_quantity + event[1] <= order.quantity


def check_invariants(order: Order, fills: list[tuple[Decimal, Decimal, Decimal]]) -> None:
    filled = sum((quantity for quantity, _, _ in fills), D(0))
    assert order.filled_quantity == filled
    assert 0 <= order.filled_quantity <= order.quantity
    assert order.fees == sum((fee for _, _, fee in fills), D(0))
    assert (order.status == "FILLED") == (order.filled_quantity == order.quantity)
    if order.status in ("NEW", "ACCEPTED"):
        assert order.filled_quantity == 0
    if order.status == "PARTIALLY_FILLED":
        assert 0 < order.filled_quantity < order.quantity
    if fills:
        assert order.average_price is not None
        mean = sum((quantity * price for quantity, price, _ in fills), D(0)) / filled
        assert abs(order.average_price - mean) < D("1e-20")
    else:
        assert order.average_price is None


@settings(max_examples=150, deadline=None)
@given(st.lists(events, max_size=10), st.lists(events, min_size=1, max_size=10))
def test_a_canceled_order_never_fills_or_changes_again(
    before: list[tuple[Any, ...]], after: list[tuple[Any, ...]]
) -> None:
    order = new_order(request(quantity=ORDER_QUANTITY), 1_000)
    for event in [*before, ("canceled",)]:
        outcome = attempt(order, event)
        order = order if isinstance(outcome, IllegalTransition) else outcome
    assume(order.status == "CANCELED")
    for event in [*after, ("fill", D(1), D(100), D(0))]:
        with pytest.raises(IllegalTransition):
            apply_event(order, event)
