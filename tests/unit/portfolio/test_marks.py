"""pnl's marks without the bus: the latest position of each subject, marked, and rows only for what
changed since last written."""

from __future__ import annotations

from decimal import Decimal as D

from trader.messages import Position
from trader.portfolio import PnlBook
from trader.portfolio.marks import Marks


def position(quantity: str, average: str, strategy: str | None = None) -> Position:
    return Position(
        account="acc",
        venue="paper",
        symbol="BTCUSDT",
        quantity=D(quantity),
        average_price=D(average),
        realized_pnl=D(0),
        fees=D(0),
        last_exec_id="e1",
        strategy=strategy,
    )


def test_a_subject_keeps_its_latest_position_and_a_row_comes_only_with_a_change() -> None:
    book = PnlBook()
    marks = Marks(book)
    marks.update("position.acc.paper.BTCUSDT", position("1", "100"))
    marks.update("position.acc.paper.BTCUSDT", position("3", "110"))  # the latest of the subject
    (row,) = marks.changed_rows(1_000).values()
    assert (row.position.quantity, row.mark, row.unrealized_pnl, row.timestamp) == (D(3), None, D(0), 1_000)
    marks.written({"position.acc.paper.BTCUSDT": row})
    assert marks.changed_rows(2_000) == {}
    book.update_mark("mock", "BTCUSDT", D(120))  # the paper venue's quotes: the mock feed's
    (row,) = marks.changed_rows(3_000).values()
    assert (row.mark, row.unrealized_pnl) == (D(120), D(30))
