"""The oms and cancel-replaces: a replace request is left to risk, and only risk's approval reaches the
venue; a denial (or an approval overtaken by the kill switch) leaves the order working as it was."""

from __future__ import annotations

import asyncio
from decimal import Decimal
from types import SimpleNamespace
from typing import Any

import msgspec
import structlog

from trader.bus.read import Stored
from trader.config import ExeqSettings, RoutingSettings, Settings, VenueConfig
from trader.messages import (
    CancelRequest,
    ExecutionReport,
    Order,
    OrderRequest,
    ReplaceDecision,
    RiskDecision,
    TradingState,
    VenueOrder,
    encode,
)
from trader.orders import OrderBook
from trader.runtime.intake import Received
from trader.services.oms import OrderFlow, Outcome

REQUEST = OrderRequest(
    client_order_id="s1-0001",
    strategy="s1",
    symbol="BTCUSDT",
    side="buy",
    quantity=Decimal(1),
    type="limit",
    price=Decimal(100),
    venue="paper",
    timestamp=1_000,
)


class _Metrics:
    def __init__(self) -> None:
        self.errors: list[str] = []

    def count_error(self, kind: str) -> None:
        self.errors.append(kind)


def _oms(mode: str = "active") -> tuple[OrderFlow, Any]:
    settings = Settings(
        routing=RoutingSettings(venues={"*": ["paper"]}), exeq=ExeqSettings(venues={"paper": VenueConfig()})
    )
    rt = SimpleNamespace(log=structlog.get_logger(), metrics=_Metrics())
    oms = OrderFlow(settings, OrderBook(), TradingState(), rt, asyncio.Lock())  # type: ignore[arg-type]
    oms.book.apply_decision(RiskDecision(request=REQUEST, approved=True, timestamp=1_000))
    oms.book.apply_report(
        ExecutionReport(
            exec_id="e-1",
            kind="accepted",
            client_order_id="s1-0001",
            strategy="s1",
            account="paper",
            venue="paper",
            symbol="BTCUSDT",
            side="buy",
            timestamp=1_500,
        )
    )
    oms.trading = TradingState(mode=mode, reason="operator stop" if mode == "halted" else None)  # type: ignore[arg-type]
    return oms, rt


def _msg(subject: str, message: Any, delivered: int = 1) -> Received[bytes]:
    data = encode(message)
    return Received(Stored(9, subject, data, None, 1_700_000_000_000), data, redelivered=delivered > 1)


def _replace(quantity: str = "5") -> CancelRequest:
    return CancelRequest(
        client_order_id="s1-0001",
        strategy="s1",
        quantity=Decimal(quantity),
        reason="replace",
        timestamp=2_000,
        replace_id="s1-0001:9",
    )


def _published(outcome: Outcome) -> tuple[list[Order], list[VenueOrder]]:
    states = [
        msgspec.json.decode(o.payload, type=Order) for o in outcome.out if o.subject.startswith("order.")
    ]
    routes = [
        msgspec.json.decode(o.payload, type=VenueOrder) for o in outcome.out if o.subject.startswith("exec.")
    ]
    return states, routes


def test_a_replace_request_is_left_to_risk() -> None:
    oms, rt = _oms()
    before = oms.book.get("s1-0001")
    outcome = oms._process(rt, _msg("order.cancel.s1", _replace()))
    assert (outcome.out, outcome.ack, outcome.refused) == ([], "ack", None)
    assert oms.book.get("s1-0001") == before


def test_an_approved_replace_goes_to_the_venue_once() -> None:
    oms, rt = _oms()
    verdict = ReplaceDecision(request=_replace(), approved=True, timestamp=2_000)
    first = oms._process(rt, _msg("order.replace.s1", verdict))
    states, routes = _published(first)
    assert [(s.status, s.replace_quantity, s.replace_id) for s in states] == [
        ("PENDING_CANCEL", Decimal(5), "s1-0001:9")
    ]
    assert [(r.action, r.quantity, r.price) for r in routes] == [("replace", Decimal(5), Decimal(100))]
    assert oms._process(rt, _msg("order.replace.s1", verdict)).out == []
    # Redelivered (the first pass may have died before routing): the same replace, under the same id.
    again = oms._process(rt, _msg("order.replace.s1", verdict, delivered=2))
    assert [o.msg_id for o in again.out] == [first.out[-1].msg_id] == ["route:s1-0001:replace:3"]


def test_a_denied_replace_leaves_the_order_working_and_reaches_no_venue() -> None:
    oms, rt = _oms()
    verdict = ReplaceDecision(
        request=_replace(), approved=False, reason="max_order_notional: 500 > 200", timestamp=2_000
    )
    states, routes = _published(oms._process(rt, _msg("order.replace.s1", verdict)))
    assert routes == []
    assert [(s.status, s.quantity, s.version) for s in states] == [
        ("PENDING_CANCEL", Decimal(1), 3),
        ("ACCEPTED", Decimal(1), 4),
    ]
    assert states[-1].reason == "replace denied: max_order_notional: 500 > 200"
    assert oms._process(rt, _msg("order.replace.s1", verdict, delivered=2)).out == []


def test_an_approval_that_arrives_after_the_kill_switch_is_denied() -> None:
    oms, rt = _oms("halted")
    verdict = ReplaceDecision(request=_replace(), approved=True, timestamp=2_000)
    states, routes = _published(oms._process(rt, _msg("order.replace.s1", verdict)))
    assert routes == []
    assert (states[-1].status, states[-1].quantity, states[-1].reason) == (
        "ACCEPTED",
        Decimal(1),
        "replace denied: halted: operator stop",
    )


def test_a_verdict_without_a_replace_id_or_on_another_strategy_subject_is_a_dead_letter() -> None:
    oms, rt = _oms()
    nameless = ReplaceDecision(request=msgspec.structs.replace(_replace(), replace_id=None), approved=True)
    outcome = oms._process(rt, _msg("order.replace.s1", nameless))
    assert outcome.refused is not None
    assert outcome.refused.reason == "request: no replace_id"
    outcome = oms._process(rt, _msg("order.replace.s2", ReplaceDecision(request=_replace(), approved=True)))
    assert outcome.refused is not None
    assert outcome.refused.reason == "request: 's1' on order.replace.s2"
