"""Positions marked to market: PnL per strategy and in total.

A strategy's PnL comes from its own positions (``Position.strategy`` set), the total from the net
positions of the accounts. The two agree on ``total`` (PnL is additive over fills), but not always on
how it splits into realized and unrealized: two strategies holding opposite positions are both open,
while the account is flat and has realized the difference.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable
from decimal import Decimal

from trader.messages import PnlSnapshot, Position
from trader.portfolio.positions import PositionKey, StrategyPositionKey

TOTAL_SCOPE = "total"
ZERO = Decimal(0)

MarkLookup = Callable[[Position], Decimal | None]


def unrealized_pnl(position: Position, mark: Decimal) -> Decimal:
    if position.quantity == 0 or position.average_price is None:
        return ZERO
    return position.quantity * (mark - position.average_price)


def pnl_snapshot(scope: str, positions: Iterable[Position], mark_of: MarkLookup, now_ms: int) -> PnlSnapshot:
    """Sum the positions' PnL; a position without a mark yet is marked at its own average price."""
    realized = unrealized = fees = exposure = ZERO
    for position in positions:
        mark = mark_of(position)
        if mark is None:
            mark = position.average_price if position.average_price is not None else ZERO
        realized += position.realized_pnl
        unrealized += unrealized_pnl(position, mark)
        fees += position.fees
        exposure += abs(position.quantity) * mark
    return PnlSnapshot(
        scope=scope,
        realized=realized,
        unrealized=unrealized,
        fees=fees,
        total=realized + unrealized - fees,
        gross_exposure=exposure,
        timestamp=now_ms,
    )


class PnlBook:
    """The latest positions and prices; snapshots on demand.

    With ``quote_venue`` (an execution venue's market-data venue: ``Settings.quote_venue_of``) a position
    is marked only at its venue's quotes, so the mock feed never marks a live venue's position; without
    it, at its venue's own trades, else any venue's."""

    def __init__(self, quote_venue: Callable[[str], str] | None = None) -> None:
        self._quote_venue = quote_venue
        self._net: dict[PositionKey, Position] = {}
        self._by_strategy: dict[StrategyPositionKey, Position] = {}
        self._venue_marks: dict[tuple[str, str], Decimal] = {}
        self._symbol_marks: dict[str, Decimal] = {}

    def update_position(self, position: Position) -> None:
        key = (position.account, position.venue, position.symbol)
        if position.strategy is None:
            self._net[key] = position
        else:
            self._by_strategy[(position.strategy, *key)] = position

    def update_mark(self, venue: str, symbol: str, price: Decimal) -> None:
        """The latest trade price; it marks that venue's positions, and any venue's without its own."""
        self._venue_marks[(venue, symbol)] = price
        self._symbol_marks[symbol] = price

    def mark_of(self, position: Position) -> Decimal | None:
        if self._quote_venue is not None:
            return self._venue_marks.get((self._quote_venue(position.venue), position.symbol))
        mark = self._venue_marks.get((position.venue, position.symbol))
        return mark if mark is not None else self._symbol_marks.get(position.symbol)

    def strategies(self) -> list[str]:
        return sorted({strategy for strategy, *_ in self._by_strategy})

    def strategy_snapshot(self, strategy: str, now_ms: int) -> PnlSnapshot:
        positions = (p for (owner, *_), p in self._by_strategy.items() if owner == strategy)
        return pnl_snapshot(strategy, positions, self.mark_of, now_ms)

    def total_snapshot(self, now_ms: int) -> PnlSnapshot:
        return pnl_snapshot(TOTAL_SCOPE, self._net.values(), self.mark_of, now_ms)

    def snapshots(self, now_ms: int) -> list[PnlSnapshot]:
        """One per strategy (by name), then the total."""
        per_strategy = [self.strategy_snapshot(strategy, now_ms) for strategy in self.strategies()]
        return [*per_strategy, self.total_snapshot(now_ms)]
