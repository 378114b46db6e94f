"""pnl's marks: the positions as last published, marked, and which changed since last written.

Pure: the pnl service (``trader.services.pnl``) feeds it the latest position of each subject and each
tick's price (through the ``PnlBook``), and writes the rows it gives to QuestDB.
"""

from __future__ import annotations

from dataclasses import dataclass
from decimal import Decimal

from trader.messages import Position
from trader.portfolio.pnl import PnlBook, unrealized_pnl


@dataclass(frozen=True, slots=True)
class PositionRow:
    """A position as marked at one snapshot."""

    position: Position
    mark: Decimal | None
    unrealized_pnl: Decimal
    timestamp: int  # the snapshot's time, epoch ms


class Marks:
    """The positions as last published, and which of them changed since last written."""

    def __init__(self, book: PnlBook) -> None:
        self.book = book
        self.latest: dict[str, Position] = {}  # by subject
        self._written: dict[str, tuple[Position, Decimal | None]] = {}

    def update(self, subject: str, position: Position) -> None:
        self.latest[subject] = position
        self.book.update_position(position)

    def changed_rows(self, now: int) -> dict[str, PositionRow]:
        """By subject, the positions whose quantity, cost or mark changed since last written."""
        rows = {}
        for subject, position in self.latest.items():
            mark = self.book.mark_of(position)
            if self._written.get(subject) != (position, mark):
                unrealized = unrealized_pnl(position, mark) if mark is not None else Decimal(0)
                rows[subject] = PositionRow(position, mark, unrealized, now)
        return rows

    def written(self, rows: dict[str, PositionRow]) -> None:
        for subject, row in rows.items():
            self._written[subject] = (row.position, row.mark)
