"""The restart benchmark's history is what the services would have stored: the oms's book, ptrc's
positions and exeq's numbering rebuild from it as from a live history (``trader.bench.restart``)."""

from __future__ import annotations

from decimal import Decimal

import msgspec

from trader.bench.restart import order_messages, start_seqs
from trader.bus.streams import EXEC_ID_HEADER
from trader.messages import ExecutionReport, Order, OrderRequest, RiskDecision, VenueOrder
from trader.orders import OrderBook
from trader.portfolio import PositionTracker

TYPES = {
    "order.submit.": OrderRequest,
    "order.risk.": RiskDecision,
    "order.state.": Order,
    "exec.order.": VenueOrder,
    "exec.report.": ExecutionReport,
}


def _decode(subject: str, payload: bytes) -> object:
    kind = next(kind for prefix, kind in TYPES.items() if subject.startswith(prefix))
    return msgspec.json.decode(payload, type=kind)


def test_each_order_is_stored_as_the_live_path_stores_it() -> None:
    messages = order_messages(7, 1_000, "r")
    subjects = [m.subject for m in messages]
    assert subjects == [
        "order.submit.bench-echo",
        "order.risk.bench-echo",
        "order.state.bench-echo",
        "order.state.bench-echo",
        "order.state.bench-echo",
        "exec.order.paper",
        "exec.report.paper",
        "exec.report.paper",
    ]
    decoded = [_decode(m.subject, m.payload) for m in messages]
    states = [d for d in decoded if isinstance(d, Order)]
    assert [(s.status, s.version) for s in states] == [("NEW", 1), ("ACCEPTED", 2), ("FILLED", 3)]
    reports = [d for d in decoded if isinstance(d, ExecutionReport)]
    # Numbered as exeq numbers its reports, so that a replay takes them as its own.
    assert [r.exec_id for r in reports] == ["paper:bench-echo-r-7:1", "paper:bench-echo-r-7:2"]
    assert [m.headers for m in messages[3:5]] == [{EXEC_ID_HEADER: r.exec_id} for r in reports]
    assert len({m.msg_id for m in messages}) == len(messages)


def test_the_history_rebuilds_the_book_and_the_positions() -> None:
    book, tracker = OrderBook(), PositionTracker()
    for i in range(4):
        for message in order_messages(i, 1_000 + i, "r"):
            value = _decode(message.subject, message.payload)
            if isinstance(value, Order):
                book.apply_state(value, (message.headers or {}).get(EXEC_ID_HEADER))
            elif isinstance(value, ExecutionReport):
                tracker.apply(value)
    assert len(book) == 4
    assert book.open_count == 0
    assert [getattr(book.get(f"bench-echo-r-{i}"), "status", None) for i in range(4)] == ["FILLED"] * 4
    [net] = tracker.positions()
    assert net.quantity == Decimal(0)  # buys and sells alternate
    assert len(tracker.applied_exec_ids()) == 4  # the fills; an acknowledgement is no change


def test_start_seqs_are_found_wherever_health_shows_them() -> None:
    health = {"orders": 3, "states": {"start_seq": 41}, "inputs": {"a": {"start_seq": 7}, "b": {}}}
    assert sorted(start_seqs(health)) == [7, 41]
    assert start_seqs({"intake": {"start_seq": None}}) == []
