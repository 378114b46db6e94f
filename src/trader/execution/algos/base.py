"""Execution algos: pure, clock-driven state machines that slice a parent order into child orders.

A service drives one per parent: ``next_actions(now_ms)`` on a timer and after each report (it returns
the child orders to send now), ``on_report`` with each report of a child, ``cancel`` to stop. Nothing
here reads a clock or sleeps, so a test steps time by hand.

``state`` gives an algo as a snapshot keeps it (``AlgoState``: its parent, its children, what it
counted, and what its kind keeps of its own); ``restore_algo`` (``trader.execution.algos``) makes it
again from one, the same algo as the one it was taken of.
"""

from __future__ import annotations

from abc import ABC, abstractmethod
from dataclasses import dataclass
from decimal import Decimal, InvalidOperation
from typing import ClassVar

import msgspec

from trader.messages import ExecutionReport, VenueOrder

_ENDING_KINDS = frozenset({"canceled", "expired", "rejected"})


class AlgoParamsError(ValueError):
    """A parent order an algo cannot work: wrong algo, bad quantity or bad ``algo_params``."""


def decimal_param(params: dict[str, str], key: str, default: Decimal | None = None) -> Decimal:
    if key not in params:
        if default is None:
            raise AlgoParamsError(f"algo_params needs {key!r}")
        return default
    try:
        value = Decimal(params[key])
    except InvalidOperation:
        raise AlgoParamsError(f"algo_params {key}={params[key]!r} is not a number") from None
    if not value.is_finite() or value <= 0:
        raise AlgoParamsError(f"algo_params {key}={params[key]!r} must be positive")
    return value


def int_param(params: dict[str, str], key: str, default: int | None = None) -> int:
    value = decimal_param(params, key, None if default is None else Decimal(default))
    if value != value.to_integral_value():
        raise AlgoParamsError(f"algo_params {key}={params[key]!r} must be a whole number")
    return int(value)


@dataclass
class ChildOrder:
    order: VenueOrder
    filled: Decimal = Decimal(0)
    ended: bool = False  # filled, or canceled, expired or rejected


class ChildState(msgspec.Struct, frozen=True, array_like=True):
    """A child as a snapshot keeps it."""

    order: VenueOrder
    filled: Decimal
    ended: bool


class AlgoState(msgspec.Struct, frozen=True):
    """An algo as a snapshot keeps it: the parent it works, its children in release order, whether it
    was canceled, its aggregate (fees, filled, notional), the exec ids of the reports it applied, the
    time of the latest of them, and what its kind keeps of its own (the TWAP's start, the iceberg's
    reason to stop)."""

    parent: VenueOrder
    children: list[ChildState]
    canceled: bool
    fees: Decimal
    filled: Decimal
    notional: Decimal
    seen_exec_ids: list[str]
    last_report_ms: int = 0
    start_ms: int | None = None
    stopped_reason: str | None = None


class ExecutionAlgo(ABC):
    """The state every algo shares: the children and the parent's aggregate fill."""

    kind: ClassVar[str]

    def __init__(self, parent: VenueOrder) -> None:
        if parent.algo != self.kind:
            raise AlgoParamsError(f"{self.kind} cannot work a parent with algo {parent.algo!r}")
        if parent.quantity <= 0:
            raise AlgoParamsError(f"parent quantity must be positive, got {parent.quantity}")
        self.parent = parent
        self.children: dict[str, ChildOrder] = {}
        self.canceled = False
        self.fees = Decimal(0)
        self._filled = Decimal(0)
        self._notional = Decimal(0)
        self._seen_exec_ids: set[str] = set()
        self.last_report_ms = 0  # the latest timestamp of a report applied: when a filled parent ended

    @abstractmethod
    def next_actions(self, now_ms: int) -> list[VenueOrder]:
        """The child orders to send at ``now_ms``."""

    @abstractmethod
    def _done_releasing(self) -> bool:
        """Whether no more children will be released."""

    def next_due_ms(self) -> int | None:
        """When ``next_actions`` has something to do without a report; None: only after a report."""
        return None

    def _on_child_ended(self, child: ChildOrder, report: ExecutionReport) -> None:
        """A hook: a child has just filled completely or ended short."""

    # The parent's aggregate ----------------------------------------------------------------------

    @property
    def filled_quantity(self) -> Decimal:
        return self._filled

    @property
    def leaves_quantity(self) -> Decimal:
        return self.parent.quantity - self._filled

    @property
    def average_price(self) -> Decimal | None:
        return self._notional / self._filled if self._filled else None

    @property
    def released_quantity(self) -> Decimal:
        return sum((child.order.quantity for child in self.children.values()), Decimal(0))

    @property
    def working_children(self) -> list[ChildOrder]:
        return [child for child in self.children.values() if not child.ended]

    @property
    def is_done(self) -> bool:
        if self.working_children:
            return False
        return self.canceled or self.leaves_quantity == 0 or self._done_releasing()

    # Driving -------------------------------------------------------------------------------------

    def on_report(self, report: ExecutionReport) -> None:
        """Apply a report about one of the children; others, and repeats of an ``exec_id``, are ignored."""
        child = self.children.get(report.venue_client_id or "")
        if child is None or report.exec_id in self._seen_exec_ids:
            return
        self._seen_exec_ids.add(report.exec_id)
        self.last_report_ms = max(self.last_report_ms, report.timestamp)
        if report.kind == "fill":
            self._apply_fill(child, report)
            if child.filled >= child.order.quantity and not child.ended:
                child.ended = True
                self._on_child_ended(child, report)
        elif report.kind in _ENDING_KINDS and not child.ended:
            child.ended = True
            self._on_child_ended(child, report)

    # Snapshots ---------------------------------------------------------------------------------

    def state(self) -> AlgoState:
        state = AlgoState(
            parent=self.parent,
            children=[ChildState(c.order, c.filled, c.ended) for c in self.children.values()],
            canceled=self.canceled,
            fees=self.fees,
            filled=self._filled,
            notional=self._notional,
            seen_exec_ids=sorted(self._seen_exec_ids),
            last_report_ms=self.last_report_ms,
        )
        return self._with_own(state)

    def restore(self, state: AlgoState) -> None:
        """Back to ``state`` (of an algo of the same parent, just made)."""
        self.children = {
            c.order.venue_client_id: ChildOrder(c.order, c.filled, c.ended) for c in state.children
        }
        self.canceled, self.fees = state.canceled, state.fees
        self._filled, self._notional = state.filled, state.notional
        self._seen_exec_ids = set(state.seen_exec_ids)
        self.last_report_ms = state.last_report_ms
        self._restore_own(state)

    def _with_own(self, state: AlgoState) -> AlgoState:
        """``state`` with what the algo's kind keeps of its own."""
        return state

    def _restore_own(self, state: AlgoState) -> None:
        """A hook: what ``_own_state`` gave, back."""

    def cancel(self, now_ms: int) -> list[VenueOrder]:
        """Stop releasing; returns the cancels of the working children."""
        self.canceled = True
        return [
            msgspec.structs.replace(child.order, action="cancel", timestamp=now_ms)
            for child in self.working_children
        ]

    def _apply_fill(self, child: ChildOrder, report: ExecutionReport) -> None:
        child.filled += report.last_quantity
        # The parent never counts more than its quantity, whatever a venue reports.
        counted = min(report.last_quantity, self.leaves_quantity)
        self._filled += counted
        if report.last_price is not None:
            self._notional += counted * report.last_price
        self.fees += report.fee

    def _release(self, quantity: Decimal, now_ms: int) -> VenueOrder:
        number = len(self.children) + 1
        child = msgspec.structs.replace(
            self.parent,
            action="new",
            venue_client_id=f"{self.parent.venue_client_id}.{number}",
            quantity=quantity,
            algo=None,
            algo_params={},
            timestamp=now_ms,
        )
        self.children[child.venue_client_id] = ChildOrder(child)
        return child
