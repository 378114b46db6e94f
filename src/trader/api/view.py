"""What the api serves, kept current from the bus: the engine of the api service, pure (no I/O).

The service hands it every order state (ORDERS), execution report (EXEC), position (POSITIONS), PnL
snapshot (PNL), operator action (OPERATOR) and the trading switch, as the intake reads them; the routes
query it. So a read is a walk of memory, whatever the history holds. Repeats (a state or report read
twice) change nothing: a state counts once per (order, version), a report once per ``exec_id``.
"""

from __future__ import annotations

import heapq
from collections.abc import Iterable

from trader.messages import (
    ExecutionReport,
    OperatorAction,
    Order,
    PnlSnapshot,
    Position,
    TradingState,
)

OPEN = "open"
ENDED = "ended"


def _newest(items: Iterable[Order], limit: int) -> list[Order]:
    return heapq.nlargest(limit, items, key=lambda o: (o.updated, o.created, o.client_order_id))


class ApiView:
    def __init__(self) -> None:
        self.orders: dict[str, Order] = {}  # the latest state of each, by client order id
        self.states: dict[str, list[Order]] = {}  # every state of each, oldest first
        self.reports: dict[str, list[ExecutionReport]] = {}  # every report of each order
        self.fills: list[ExecutionReport] = []  # every fill, in the order they were stored
        self.positions: dict[str, Position] = {}  # by subject: net and per strategy
        self.pnl: dict[str, PnlSnapshot] = {}  # by scope
        self.actions: list[OperatorAction] = []
        self.trading = TradingState()
        self._exec_ids: set[str] = set()
        self._action_ids: set[str] = set()

    # Applying what the bus says ----------------------------------------------------------------

    def apply_order(self, order: Order) -> bool:
        """Record a state; False for one already known (the same or an older version)."""
        history = self.states.setdefault(order.client_order_id, [])
        if any(s.version == order.version for s in history):
            return False
        history.append(order)
        if len(history) > 1 and history[-2].version > order.version:
            history.sort(key=lambda s: s.version)
        latest = self.orders.get(order.client_order_id)
        if latest is None or order.version > latest.version:
            self.orders[order.client_order_id] = order
        return True

    def apply_report(self, report: ExecutionReport) -> bool:
        """Record a report; False for a repeat."""
        if report.exec_id in self._exec_ids:
            return False
        self._exec_ids.add(report.exec_id)
        self.reports.setdefault(report.client_order_id, []).append(report)
        if report.kind == "fill":
            self.fills.append(report)
        return True

    def apply_position(self, subject: str, position: Position) -> None:
        self.positions[subject] = position

    def apply_pnl(self, snapshot: PnlSnapshot) -> None:
        self.pnl[snapshot.scope] = snapshot

    def apply_action(self, action: OperatorAction) -> bool:
        if action.action_id in self._action_ids:
            return False
        self._action_ids.add(action.action_id)
        self.actions.append(action)
        return True

    def apply_trading(self, state: TradingState) -> None:
        self.trading = state

    # Queries ------------------------------------------------------------------------------------

    def query_orders(
        self,
        *,
        status: str | None = None,
        strategy: str | None = None,
        symbol: str | None = None,
        limit: int = 100,
    ) -> list[Order]:
        """Newest first (by last change). ``status``: ``open``, ``ended`` or one order status."""
        wanted = status.upper() if status and status not in (OPEN, ENDED) else None

        def keep(o: Order) -> bool:
            if strategy is not None and o.strategy != strategy:
                return False
            if symbol is not None and o.symbol != symbol:
                return False
            if status == OPEN:
                return not o.is_terminal
            if status == ENDED:
                return o.is_terminal
            return wanted is None or o.status == wanted

        return _newest(filter(keep, self.orders.values()), limit)

    def open_orders(self, *, strategy: str | None = None, symbol: str | None = None) -> list[Order]:
        return self.query_orders(status=OPEN, strategy=strategy, symbol=symbol, limit=len(self.orders) or 1)

    def order_detail(self, client_order_id: str) -> dict[str, object] | None:
        order = self.orders.get(client_order_id)
        if order is None:
            return None
        return {
            "order": order,
            "states": list(self.states.get(client_order_id, [])),
            "reports": list(self.reports.get(client_order_id, [])),
        }

    def query_fills(
        self, *, strategy: str | None = None, symbol: str | None = None, limit: int = 100
    ) -> list[ExecutionReport]:
        """Newest first."""
        found: list[ExecutionReport] = []
        for fill in reversed(self.fills):
            if (strategy is None or fill.strategy == strategy) and (symbol is None or fill.symbol == symbol):
                found.append(fill)
                if len(found) >= limit:
                    break
        return found

    def query_positions(self, *, account: str | None = None, strategy: str | None = None) -> list[Position]:
        """Net positions (``strategy`` None) and each strategy's; with ``strategy``, that one's only."""
        found = [
            p
            for p in self.positions.values()
            if (account is None or p.account == account) and (strategy is None or p.strategy == strategy)
        ]
        return sorted(found, key=lambda p: (p.account, p.venue, p.symbol, p.strategy or ""))

    def query_pnl(self) -> list[PnlSnapshot]:
        """Each strategy's, then the total."""
        return sorted(self.pnl.values(), key=lambda s: (s.scope == "total", s.scope))

    def query_actions(self, limit: int = 100) -> list[OperatorAction]:
        return list(reversed(self.actions[-limit:]))
