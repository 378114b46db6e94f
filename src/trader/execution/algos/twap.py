"""TWAP: the parent in ``slices`` equal children, one every ``duration_s / slices`` from the first call.

``algo_params``: ``duration_s`` (required), ``slices`` (default 10), ``lot_size`` (default 1e-8): every
slice but the last is a whole number of lots, the last takes the remainder, so they sum to the parent.
A child that ends unfilled is not retried: the parent then ends short.
"""

from __future__ import annotations

from decimal import Decimal

import msgspec

from trader.execution.algos.base import AlgoParamsError, AlgoState, ExecutionAlgo, decimal_param, int_param
from trader.messages import VenueOrder

DEFAULT_SLICES = 10
DEFAULT_LOT_SIZE = Decimal("1e-8")  # the finest step crypto venues trade


def twap_quantities(total: Decimal, slices: int, lot_size: Decimal) -> list[Decimal]:
    """``total`` in at most ``slices`` positive parts: equal whole lots, the remainder in the last.
    Fewer parts when ``total`` has fewer lots than ``slices``; they always sum exactly to ``total``."""
    if total <= 0 or slices < 1 or lot_size <= 0:
        raise AlgoParamsError(f"cannot slice {total} in {slices} slices of lot {lot_size}")
    lots = int(total // lot_size)
    count = max(1, min(slices, lots))
    # Integer division of Decimals is exact: no rounding can push the parts past the total.
    part = (total // (lot_size * count)) * lot_size
    if part == 0:
        return [total]
    return [part] * (count - 1) + [total - part * (count - 1)]


class Twap(ExecutionAlgo):
    kind = "twap"

    def __init__(self, parent: VenueOrder) -> None:
        super().__init__(parent)
        params = parent.algo_params
        duration_ms = decimal_param(params, "duration_s") * 1000
        slices = int_param(params, "slices", DEFAULT_SLICES)
        lot_size = decimal_param(params, "lot_size", DEFAULT_LOT_SIZE)
        self.quantities = twap_quantities(parent.quantity, slices, lot_size)
        count = len(self.quantities)
        # Slice i is due at start + i * duration / count, in whole milliseconds.
        self.offsets_ms = [int(duration_ms * i // count) for i in range(count)]
        self._start_ms: int | None = None

    def next_actions(self, now_ms: int) -> list[VenueOrder]:
        if self._start_ms is None:
            self._start_ms = now_ms
        actions: list[VenueOrder] = []
        while not self.canceled and not self._done_releasing():
            due = self.next_due_ms()
            if due is None or due > now_ms:
                break
            actions.append(self._release(self.quantities[len(self.children)], now_ms))
        return actions

    def next_due_ms(self) -> int | None:
        if self._start_ms is None or self.canceled or self._done_releasing():
            return None
        return self._start_ms + self.offsets_ms[len(self.children)]

    def _done_releasing(self) -> bool:
        return len(self.children) == len(self.quantities)

    def _with_own(self, state: AlgoState) -> AlgoState:
        return msgspec.structs.replace(state, start_ms=self._start_ms)

    def _restore_own(self, state: AlgoState) -> None:
        self._start_ms = state.start_ms
