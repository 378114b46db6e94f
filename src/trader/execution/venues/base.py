"""The interface every venue adapter implements: one file per venue, as in cryptofeed.

Reports come back two ways. What a call causes at once (an acknowledgement, an immediate fill) is
returned by that call. What a venue says later on its own (a live venue's websocket fill) goes to the
``report_listener``; such a report is never also returned, so a service publishes each report once.
"""

from __future__ import annotations

from abc import ABC, abstractmethod
from collections.abc import Callable, Collection, Iterable
from dataclasses import dataclass, field
from decimal import Decimal
from typing import Any, ClassVar, Literal

from trader.messages import ExecutionReport, MarketTick, ReportKind, VenueOrder

# Called from the adapter's own tasks, so it must not block: e.g. ``asyncio.Queue.put_nowait``.
ReportListener = Callable[[ExecutionReport], None]
MismatchKind = Literal["unknown_at_venue", "missing_at_venue", "quantity"]


@dataclass(frozen=True)
class Mismatch:
    """A difference between a venue's open orders and those exeq believes open there (see ``reconcile``).
    ``unknown_at_venue``: open at the venue, unknown to us; ``missing_at_venue``: we believe it open, the
    venue has no such order; ``quantity``: both have it, and what filled differs in a way the venue's
    trades do not explain."""

    kind: MismatchKind
    venue: str
    venue_client_id: str
    symbol: str
    detail: str


@dataclass(frozen=True)
class Reconciliation:
    """What ``reconcile`` found. ``reports``: what the venue did while exeq was away (fills exeq has not
    published, an order's end), for exeq to publish as any report; ``mismatches``: what it cannot explain."""

    mismatches: list[Mismatch] = field(default_factory=list)
    reports: list[ExecutionReport] = field(default_factory=list)


def report_about(
    order: VenueOrder, *, venue: str, kind: ReportKind, exec_id: str, timestamp: int, **details: Any
) -> ExecutionReport:
    """An execution report about ``order``: its identity copied over, ``details`` (quantity, price, fee,
    liquidity, reason, venue order id) as the event has them."""
    return ExecutionReport(
        exec_id=exec_id,
        kind=kind,
        client_order_id=order.client_order_id,
        venue_client_id=order.venue_client_id,
        strategy=order.strategy,
        account=order.account,
        venue=venue,
        symbol=order.symbol,
        side=order.side,
        timestamp=timestamp,
        **details,
    )


class VenueAdapter(ABC):
    """One venue. ``kind`` is its key in ``trader.execution.venues.VENUES``; ``name`` is this instance's
    venue name on the bus (two instances of one kind may run side by side)."""

    kind: ClassVar[str]
    # Whether exeq reconciles this venue's balances at each start (trader.execution.balances): only for
    # an account that outlives exeq. A paper venue's balances live in memory and start over.
    reconciles_balances: ClassVar[bool] = False
    # The largest difference per asset that is not a balance mismatch.
    balance_tolerance: Decimal = Decimal(0)

    def __init__(self, name: str | None = None, *, report_listener: ReportListener | None = None) -> None:
        self.name = name or self.kind
        self.report_listener = report_listener

    async def start(self) -> None:
        """Connect, authenticate and subscribe to the venue's order updates."""

    async def close(self) -> None:
        """Disconnect; working orders stay at the venue."""

    @abstractmethod
    async def submit(self, order: VenueOrder) -> list[ExecutionReport]:
        """Send a new order; returns the reports it caused at once."""

    @abstractmethod
    async def cancel(self, order: VenueOrder) -> list[ExecutionReport]:
        """Cancel the order with ``order.venue_client_id``; returns the reports it caused at once."""

    async def replace(self, order: VenueOrder) -> list[ExecutionReport]:
        """Cancel-replace the working order with ``order.venue_client_id``: ``order.quantity`` is its new
        total quantity (what filled included), ``order.price`` its new limit price. Returns the reports
        it caused at once: ``replaced`` with the new terms (``last_quantity`` the new total quantity,
        ``last_price`` the new limit price), then any fill the new terms make at once; or ``rejected``
        with a reason starting ``replace rejected:``, and the order works on as before.

        By default a venue cannot replace: every replace is rejected."""
        return [
            report_about(
                order,
                venue=self.name,
                kind="rejected",
                exec_id=f"{self.name}:{order.venue_client_id}:replace-rejected:{order.timestamp}",
                timestamp=order.timestamp,
                reason=f"replace rejected: venue {self.name} ({self.kind}) does not support cancel-replace",
            )
        ]

    def forget(self, venue_client_id: str) -> None:
        """exeq is done with this ended order (it ended long ago): drop what is kept about it. A venue
        that keeps nothing per order, or must keep it, does nothing."""

    def quotes_from(self, tick: MarketTick) -> bool:
        """Whether this tick is a quote of this venue's market (a simulated venue may follow one feed)."""
        return True

    def on_tick(self, tick: MarketTick) -> list[ExecutionReport]:
        """Show the adapter a market tick; a simulated venue fills its resting orders here. Live venues
        fill on their own and report through the listener, so by default a tick changes nothing."""
        return []

    async def reconcile(
        self, expected: Iterable[tuple[VenueOrder, Decimal]], unanswered: Collection[str] = frozenset()
    ) -> Reconciliation:
        """Compare the venue with ``expected`` (each order exeq believes open here, with what it knows
        filled): return the reports of what happened there meanwhile and the differences left, changing
        nothing at the venue. ``unanswered``: the venue client ids of those exeq never published a report
        about (it was down, or starting, when they came). A venue that keeps no state of its own (paper:
        exeq gives it its orders back) has nothing to compare."""
        return Reconciliation()

    @abstractmethod
    async def open_orders(self) -> list[VenueOrder]:
        """The orders still working at the venue."""

    @abstractmethod
    async def balances(self) -> dict[str, Decimal]:
        """The balance per asset."""

    def assets(self, symbol: str) -> tuple[str, str] | None:
        """The (base, quote) assets of ``symbol`` as ``balances`` names them; None when unknown."""
        return None

    def emit(self, report: ExecutionReport) -> None:
        """Hand over a report the venue sent on its own."""
        if self.report_listener is not None:
            self.report_listener(report)
