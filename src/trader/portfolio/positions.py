"""Positions from fills, at average cost.

A position is the signed net quantity of one (account, venue, symbol), the average price of what is
open, the PnL realized by reducing it and the fees paid. Each fill is kept twice: in the net position
of the account, and in the strategy's own position of the same key, so that a strategy's PnL is its
own fills' PnL even when another strategy trades the same symbol the other way.
"""

from __future__ import annotations

from collections.abc import Iterable
from decimal import Decimal
from typing import NamedTuple

from trader.messages import ExecutionReport, Position
from trader.orders.retention import Ended
from trader.orders.state import weighted_average

PositionKey = tuple[str, str, str]  # account, venue, symbol
StrategyPositionKey = tuple[str, str, str, str]  # strategy, account, venue, symbol

ZERO = Decimal(0)


class PositionChange(NamedTuple):
    """The two positions one fill changed: the account's net one and the strategy's."""

    net: Position
    strategy: Position


def flat_position(account: str, venue: str, symbol: str, strategy: str | None = None) -> Position:
    return Position(
        account=account,
        venue=venue,
        symbol=symbol,
        quantity=ZERO,
        average_price=None,
        realized_pnl=ZERO,
        fees=ZERO,
        strategy=strategy,
    )


def signed_quantity(fill: ExecutionReport) -> Decimal:
    return fill.last_quantity if fill.side == "buy" else -fill.last_quantity


def apply_fill(position: Position, fill: ExecutionReport) -> Position:
    """The position after one fill: a fill in the position's direction moves the average price; one
    against it realizes (price - average) on what it closes, and what goes beyond zero opens a new
    position at the fill price."""
    if fill.kind != "fill" or fill.last_price is None or fill.last_quantity <= 0:
        raise ValueError(f"report {fill.exec_id} is not a fill with a positive quantity and a price")
    before, change, price = position.quantity, signed_quantity(fill), fill.last_price
    after = before + change
    realized = position.realized_pnl
    average: Decimal | None
    if before == 0 or (before > 0) == (change > 0):
        average = weighted_average(position.average_price, abs(before), price, abs(change))
    else:
        opened_at = position.average_price if position.average_price is not None else price
        closed = min(abs(before), abs(change))
        direction = 1 if before > 0 else -1
        realized += (price - opened_at) * closed * direction
        average = _average_after_reduce(before, after, opened_at, price)
    return Position(
        account=position.account,
        venue=position.venue,
        symbol=position.symbol,
        quantity=after,
        average_price=average,
        realized_pnl=realized,
        fees=position.fees + fill.fee,
        strategy=position.strategy,
        last_exec_id=fill.exec_id,
        timestamp=max(position.timestamp, fill.timestamp),
    )


def _average_after_reduce(
    before: Decimal, after: Decimal, opened_at: Decimal, price: Decimal
) -> Decimal | None:
    if after == 0:
        return None
    if (after > 0) == (before > 0):
        return opened_at  # reducing does not change what the rest was opened at
    return price  # flipped through zero: the remainder is opened by this fill


class PositionTracker:
    """Net and per-strategy positions, built from fills; each ``exec_id`` is applied once.

    ``exec_id_window_ms``: the exec ids kept are those of fills made within this long of the latest
    fill applied (by the fills' own times: what is kept depends on the fills applied, not on when, so
    a snapshot plus the fills after it keeps what a replay of them all keeps); a repeat of a fill older
    than that is not told from a new one. A repeat is a second stored copy of a report, which a
    publisher retrying past JetStream's duplicate window can store minutes after the first, never
    hours (see ``trader.orders.retention``). None: every exec id is kept."""

    def __init__(self, exec_id_window_ms: int | None = None) -> None:
        self._net: dict[PositionKey, Position] = {}
        self._by_strategy: dict[StrategyPositionKey, Position] = {}
        self._exec_ids: set[str] = set()
        self._window_ms = exec_id_window_ms
        self._exec_at: Ended[str] = Ended()  # with a window: the exec ids kept, by their fill's time
        self._latest_ms = 0  # the latest fill time applied

    def apply(self, report: ExecutionReport) -> PositionChange | None:
        """Apply a fill; ``None`` for a report that is not a fill or was applied before."""
        if report.kind != "fill" or report.exec_id in self._exec_ids:
            return None
        key = (report.account, report.venue, report.symbol)
        strategy_key = (report.strategy, *key)
        net = apply_fill(self._net.get(key) or flat_position(*key), report)
        mine = apply_fill(self._by_strategy.get(strategy_key) or flat_position(*key, report.strategy), report)
        self._net[key], self._by_strategy[strategy_key] = net, mine
        self._exec_ids.add(report.exec_id)
        if self._window_ms is not None:
            self._exec_at.add(report.exec_id, report.timestamp)
            self._latest_ms = max(self._latest_ms, report.timestamp)
            self._exec_ids.difference_update(self._exec_at.take(self._latest_ms - self._window_ms))
        return PositionChange(net, mine)

    def net(self, account: str, venue: str, symbol: str) -> Position | None:
        return self._net.get((account, venue, symbol))

    def strategy_position(self, strategy: str, account: str, venue: str, symbol: str) -> Position | None:
        return self._by_strategy.get((strategy, account, venue, symbol))

    def positions(self) -> list[Position]:
        """Every net position, flat ones included (they still carry realized PnL and fees)."""
        return list(self._net.values())

    def strategy_positions(self, strategy: str | None = None) -> list[Position]:
        return [p for p in self._by_strategy.values() if strategy is None or p.strategy == strategy]

    def applied_exec_ids(self) -> list[str]:
        """Every exec id applied so far, within the window when there is one (what a snapshot keeps,
        so that a repeat stays one); with a window, in the order of ``applied_exec_times``."""
        if self._window_ms is not None:
            return [exec_id for exec_id, _ in self._exec_at.items()]
        return list(self._exec_ids)

    def applied_exec_times(self) -> list[int]:
        """With a window: the time of the fill of each of ``applied_exec_ids``; else nothing."""
        return [at for _, at in self._exec_at.items()] if self._window_ms is not None else []

    def rebuild(
        self, positions: Iterable[Position], exec_ids: Iterable[str] = (), exec_times: Iterable[int] = ()
    ) -> None:
        """Start over from published positions (net ones have no strategy), after a restart. The given
        ``exec_ids`` count as applied, so a redelivered fill is not, and so do the positions'
        ``last_exec_id`` unless ``exec_times`` are given (a snapshot of a tracker with a window: its
        exec ids are all it kept); ``exec_times``, with a window, when their fills were made (none
        given: kept until the window has passed the latest position's time)."""
        self._net, self._by_strategy = {}, {}
        exec_ids = list(exec_ids)
        self._exec_ids = set(exec_ids)
        positions = list(positions)
        times = list(exec_times)
        if self._window_ms is not None:
            at = times or [max((p.timestamp for p in positions), default=0)] * len(exec_ids)
            self._exec_at = Ended(zip(exec_ids, at, strict=True))
            self._latest_ms = max(at, default=0)
        for position in positions:
            key = (position.account, position.venue, position.symbol)
            if position.strategy is None:
                self._net[key] = position
            else:
                self._by_strategy[(position.strategy, *key)] = position
            if position.last_exec_id is not None and not times:
                self._exec_ids.add(position.last_exec_id)
