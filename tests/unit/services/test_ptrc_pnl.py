"""ptrc's subjects and ids, and pnl's bookkeeping of what to write, without the bus."""

from __future__ import annotations

from decimal import Decimal as D

import pytest

from trader.marketdata.decode import InvalidMessage
from trader.messages import ExecutionReport, Position
from trader.portfolio import PnlBook, PositionTracker
from trader.portfolio.marks import Marks
from trader.services.pnl import snapshot_message
from trader.services.ptrc import apply_report, position_message, subject_of


def fill(exec_id: str, side: str, quantity: str, price: str, strategy: str = "s1") -> ExecutionReport:
    return ExecutionReport(
        exec_id=exec_id,
        kind="fill",
        client_order_id="o1",
        strategy=strategy,
        account="acc",
        venue="paper",
        symbol="BTCUSDT",
        side=side,  # type: ignore[arg-type]
        last_quantity=D(quantity),
        last_price=D(price),
        fee=D("0.1"),
    )


def test_net_and_strategy_positions_go_to_subjects_that_cannot_collide() -> None:
    tracker = PositionTracker()
    net, mine = apply_report(tracker, fill("paper:o1:2", "buy", "1", "100"))
    assert subject_of(net) == "position.acc.paper.BTCUSDT"
    assert subject_of(mine) == "position.acc.paper.BTCUSDT.s1"
    assert position_message(net).msg_id == "acc:paper:BTCUSDT:paper:o1:2"
    assert position_message(mine).msg_id == "acc:paper:BTCUSDT:paper:o1:2/s1"
    # Even an account named like a strategy keeps four tokens for its net position.
    other = Position(
        account="s1",
        venue="paper",
        symbol="BTCUSDT",
        quantity=D(1),
        average_price=D(1),
        realized_pnl=D(0),
        fees=D(0),
    )
    assert len(subject_of(other).split(".")) == 4


def test_positions_follow_fills_once_each() -> None:
    tracker = PositionTracker()
    apply_report(tracker, fill("e1", "buy", "2", "100"))
    assert apply_report(tracker, fill("e1", "buy", "2", "100")) == []  # a repeat
    net, _ = apply_report(tracker, fill("e2", "sell", "3", "110"))  # through zero
    assert (net.quantity, net.average_price, net.realized_pnl, net.fees) == (D(-1), D(110), D(20), D("0.2"))
    not_fill = ExecutionReport(
        exec_id="e3",
        kind="accepted",
        client_order_id="o1",
        strategy="s1",
        account="acc",
        venue="paper",
        symbol="BTCUSDT",
        side="buy",
    )
    assert apply_report(tracker, not_fill) == []


def test_a_fill_without_a_price_is_refused_for_the_dead_letters() -> None:
    report = ExecutionReport(
        exec_id="e1",
        kind="fill",
        client_order_id="o1",
        strategy="s1",
        account="acc",
        venue="paper",
        symbol="BTCUSDT",
        side="buy",
        last_quantity=D(1),
    )
    with pytest.raises(InvalidMessage) as refused:
        apply_report(PositionTracker(), report)
    assert refused.value.field == "fill"


def test_marks_write_positions_only_when_they_or_their_mark_change() -> None:
    tracker = PositionTracker()
    net, mine = apply_report(tracker, fill("e1", "buy", "2", "100"))
    book = PnlBook()
    marks = Marks(book)
    marks.update(subject_of(net), net)
    marks.update(subject_of(mine), mine)
    rows = marks.changed_rows(1_000)
    assert set(rows) == {subject_of(net), subject_of(mine)}
    assert rows[subject_of(net)].mark is None
    assert rows[subject_of(net)].unrealized_pnl == 0
    marks.written(rows)
    assert marks.changed_rows(2_000) == {}
    book.update_mark("mock", "BTCUSDT", D(105))
    rows = marks.changed_rows(3_000)
    assert rows[subject_of(net)].unrealized_pnl == D(10)
    marks.written(rows)
    total = book.total_snapshot(3_000)
    assert (total.unrealized, total.fees, total.total) == (D(10), D("0.1"), D("9.9"))
    message = snapshot_message(total)
    assert (message.subject, message.msg_id) == ("pnl.total", "total:3000")
