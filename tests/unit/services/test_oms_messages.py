"""What the oms publishes: identities that make a retry a duplicate and a new event a new message."""

from __future__ import annotations

import asyncio
from decimal import Decimal
from typing import cast

import msgspec
import pytest

from trader.bus.read import decode_message, subject_token
from trader.config import ExeqSettings, RoutingSettings, Settings, VenueConfig
from trader.marketdata.decode import InvalidMessage
from trader.messages import (
    CancelRequest,
    ExecutionReport,
    Order,
    OrderRequest,
    RiskDecision,
    TradingState,
    VenueOrder,
)
from trader.orders import IllegalTransition, OrderBook
from trader.runtime.service import Runtime
from trader.services.oms import (
    EXEC_ID_HEADER,
    OrderFlow,
    route_cancel,
    route_new,
    route_replace,
    state_message,
)

REQUEST = OrderRequest(
    client_order_id="s1-0001",
    strategy="s1",
    symbol="BTCUSDT",
    side="buy",
    quantity=Decimal("0.25"),
    type="limit",
    price=Decimal("60000.5"),
    tif="IOC",
    post_only=True,
    algo="twap",
    algo_params={"duration_s": "60"},
    timestamp=1_700_000_000_000,
)


def _venue_order(payload: bytes) -> VenueOrder:
    return msgspec.json.decode(payload, type=VenueOrder)


def test_a_new_order_goes_to_the_router_with_its_terms_and_no_venue_when_none_was_asked() -> None:
    out = route_new(REQUEST, now=1_700_000_000_123)
    sent = _venue_order(out.payload)
    assert out.subject == "exec.route.s1"
    assert out.msg_id == "route:s1-0001:new"
    assert sent.action == "new"
    assert sent.venue == ""
    assert sent.venue_client_id == sent.client_order_id == "s1-0001"
    assert (sent.quantity, sent.price, sent.tif, sent.post_only) == (
        Decimal("0.25"),
        Decimal("60000.5"),
        "IOC",
        True,
    )
    assert (sent.algo, sent.algo_params) == ("twap", {"duration_s": "60"})


def test_a_fixed_venue_is_kept() -> None:
    fixed = msgspec.structs.replace(REQUEST, venue="binance")
    assert _venue_order(route_new(fixed, now=1).payload).venue == "binance"


def test_each_state_and_each_cancel_has_its_own_message_id() -> None:
    book = OrderBook()
    order = book.submit(REQUEST)
    assert order is not None
    first = state_message(order)
    assert first.subject == "order.state.s1"
    assert first.msg_id == "s1-0001:1"
    assert first.headers is None
    report = _report("accepted", 1)
    accepted = book.apply_report(report)
    assert accepted is not None
    second = state_message(accepted, report.exec_id)
    assert second.msg_id == "s1-0001:2"
    assert second.headers == {EXEC_ID_HEADER: "paper:s1-0001:1"}
    pending = book.apply_cancel(CancelRequest(client_order_id="s1-0001", strategy="s1"))
    assert pending is not None
    cancel = route_cancel(pending, "paper", now=5)
    assert cancel.msg_id == "route:s1-0001:cancel:3"
    sent = _venue_order(cancel.payload)
    assert (sent.action, sent.venue, sent.venue_client_id) == ("cancel", "paper", "s1-0001")


def _working(book: OrderBook) -> None:
    assert book.submit(msgspec.structs.replace(REQUEST, tif="GTC", algo=None, algo_params={})) is not None
    accepted = book.apply_report(_report("accepted", 1, venue_order_id="paper-1"))
    assert accepted is not None


def _report(kind: str, n: int, **fields: object) -> ExecutionReport:
    return ExecutionReport(
        exec_id=f"paper:s1-0001:{n}",
        kind=kind,  # type: ignore[arg-type]
        client_order_id="s1-0001",
        strategy="s1",
        account="paper",
        venue="paper",
        symbol="BTCUSDT",
        side="buy",
        **fields,  # type: ignore[arg-type]
    )


def test_a_replace_goes_to_the_router_with_the_new_terms_under_its_own_id() -> None:
    book = OrderBook()
    _working(book)
    pending = book.apply_cancel(
        CancelRequest(client_order_id="s1-0001", strategy="s1", price=Decimal("60001"))
    )
    assert pending is not None
    out = route_replace(pending, "", now=7)
    assert out.subject == "exec.route.s1"
    assert out.msg_id == "route:s1-0001:replace:3"
    sent = _venue_order(out.payload)
    assert (sent.action, sent.venue, sent.venue_client_id, sent.timestamp) == ("replace", "", "s1-0001", 7)
    # Only the price changes: the quantity is the order's total as it is.
    assert (sent.quantity, sent.price, sent.post_only) == (Decimal("0.25"), Decimal("60001"), True)
    replaced = book.apply_report(
        _report("replaced", 2, last_quantity=Decimal("0.25"), last_price=Decimal("60001"))
    )
    assert replaced is not None
    assert (replaced.status, replaced.price, replaced.replace_price) == ("ACCEPTED", Decimal("60001"), None)
    # A second replace, of the quantity only, is another message.
    again = book.apply_cancel(
        CancelRequest(client_order_id="s1-0001", strategy="s1", quantity=Decimal("0.5"))
    )
    assert again is not None
    second = route_replace(again, "paper", now=8)
    assert second.msg_id == "route:s1-0001:replace:5"
    assert (_venue_order(second.payload).quantity, _venue_order(second.payload).price) == (
        Decimal("0.5"),
        Decimal("60001"),
    )


def test_a_replaced_report_with_other_terms_than_asked_is_refused() -> None:
    book = OrderBook()
    _working(book)
    book.apply_cancel(CancelRequest(client_order_id="s1-0001", strategy="s1", price=Decimal("60001")))
    with pytest.raises(IllegalTransition, match="venue replaced to price 60002, asked 60001"):
        book.apply_report(_report("replaced", 2, last_price=Decimal("60002")))
    with pytest.raises(IllegalTransition, match=r"venue replaced to quantity 1, asked 0\.25"):
        book.apply_report(_report("replaced", 2, last_quantity=Decimal("1"), last_price=Decimal("60001")))
    refused = book.apply_report(_report("rejected", 2, reason="replace rejected: post-only"))
    assert refused is not None
    assert (refused.status, refused.price, refused.replace_price) == ("ACCEPTED", Decimal("60000.5"), None)


def test_decimals_travel_exactly() -> None:
    out = route_new(msgspec.structs.replace(REQUEST, quantity=Decimal("0.1")), now=1)
    assert b'"quantity":0.1,' in out.payload


@pytest.mark.parametrize(
    ("payload", "field"),
    [
        (b'{"request": {"quantity": "x"}}', "request"),
        (b"not json", "body"),
    ],
)
def test_decode_errors_name_the_field_at_fault(payload: bytes, field: str) -> None:
    with pytest.raises(InvalidMessage) as caught:
        decode_message(msgspec.json.Decoder(RiskDecision), payload)
    assert caught.value.field.split(".")[0] == field
    assert str(caught.value).startswith(f"{caught.value.field}: ")


def test_decode_errors_name_a_nested_field() -> None:
    payload = (
        b'{"approved": true, "request": {"client_order_id": "a", "strategy": "s", "symbol": "X", '
        b'"side": "buy", "quantity": "oops"}}'
    )
    with pytest.raises(InvalidMessage) as caught:
        decode_message(msgspec.json.Decoder(RiskDecision), payload)
    assert caught.value.field == "request.quantity"


def test_the_strategy_is_the_last_subject_token() -> None:
    assert subject_token("order.risk.mm-eth") == "mm-eth"


def _oms(venues: dict[str, list[str]], fixed: str | None = None) -> OrderFlow:
    run = {name: VenueConfig() for names in venues.values() for name in names}
    settings = Settings(
        routing=RoutingSettings(venues=venues, fixed_venue=fixed), exeq=ExeqSettings(venues=run)
    )
    return OrderFlow(settings, OrderBook(), TradingState(), cast(Runtime, None), asyncio.Lock())


def _accepted_order(oms: OrderFlow, request: OrderRequest) -> Order:
    venue = oms._venue_without_choice(request.symbol, request.venue)
    order = OrderBook().apply_decision(
        RiskDecision(request=msgspec.structs.replace(request, venue=venue or request.venue), approved=True)
    )
    assert order is not None
    return order


def test_with_one_venue_the_order_and_its_cancel_go_straight_to_exeq_at_that_venue() -> None:
    oms = _oms({"*": ["paper"]})
    order = _accepted_order(oms, REQUEST)
    assert order.venue == "paper"  # written into the order: its cancels know where it went
    new = oms._route_new(order, REQUEST, now=5)
    assert new.subject == "exec.order.paper"
    assert _venue_order(new.payload).venue == "paper"
    cancel = oms._route_cancel(order)
    assert cancel.subject == "exec.order.paper"
    assert _venue_order(cancel.payload).venue == "paper"


def test_with_a_choice_of_venues_the_order_goes_to_the_router() -> None:
    oms = _oms({"BTCUSDT": ["a", "b"]})
    order = _accepted_order(oms, REQUEST)
    assert order.venue is None
    new = oms._route_new(order, REQUEST, now=5)
    assert new.subject == "exec.route.s1"
    assert _venue_order(new.payload).venue == ""
    assert oms._route_cancel(order).subject == "exec.route.s1"


def test_a_venue_the_config_fixes_or_the_order_names_leaves_no_choice() -> None:
    fixed = _oms({"BTCUSDT": ["a", "b"]}, fixed="b")
    assert fixed._route_new(_accepted_order(fixed, REQUEST), REQUEST, now=5).subject == "exec.order.b"
    named = msgspec.structs.replace(REQUEST, venue="a")
    oms = _oms({"BTCUSDT": ["a", "b"]})
    assert oms._route_new(_accepted_order(oms, named), named, now=5).subject == "exec.order.a"
    unknown = msgspec.structs.replace(REQUEST, venue="z")  # not configured: the router refuses it
    assert oms._route_new(_accepted_order(oms, unknown), unknown, now=5).subject == "exec.route.s1"
