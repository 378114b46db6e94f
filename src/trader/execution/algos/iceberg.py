"""Iceberg: one visible child of ``display_quantity`` at a time; the next is released when it fills.

``algo_params``: ``display_quantity`` (required); the last child takes what is left. A child that ends
unfilled (canceled, expired, rejected) stops the iceberg, as releasing again would repeat the failure.
"""

from __future__ import annotations

import msgspec

from trader.execution.algos.base import AlgoState, ChildOrder, ExecutionAlgo, decimal_param
from trader.messages import ExecutionReport, VenueOrder


class Iceberg(ExecutionAlgo):
    kind = "iceberg"

    def __init__(self, parent: VenueOrder) -> None:
        super().__init__(parent)
        self.display_quantity = decimal_param(parent.algo_params, "display_quantity")
        self.stopped_reason: str | None = None

    def next_actions(self, now_ms: int) -> list[VenueOrder]:
        if self.canceled or self.working_children or self._done_releasing():
            return []
        unreleased = self.parent.quantity - self.released_quantity
        return [self._release(min(self.display_quantity, unreleased), now_ms)]

    def _done_releasing(self) -> bool:
        return self.stopped_reason is not None or self.released_quantity >= self.parent.quantity

    def _on_child_ended(self, child: ChildOrder, report: ExecutionReport) -> None:
        if child.filled < child.order.quantity:
            detail = f": {report.reason}" if report.reason else ""
            self.stopped_reason = f"child {child.order.venue_client_id} {report.kind}{detail}"

    def _with_own(self, state: AlgoState) -> AlgoState:
        return msgspec.structs.replace(state, stopped_reason=self.stopped_reason)

    def _restore_own(self, state: AlgoState) -> None:
        self.stopped_reason = state.stopped_reason
