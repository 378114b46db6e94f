"""Execution algos, by name (``VenueOrder.algo``). Adding one is a module here and a line in ``ALGOS``."""

from __future__ import annotations

from trader.execution.algos.base import AlgoParamsError, AlgoState, ChildOrder, ChildState, ExecutionAlgo
from trader.execution.algos.iceberg import Iceberg
from trader.execution.algos.twap import Twap, twap_quantities
from trader.messages import VenueOrder

ALGOS: dict[str, type[ExecutionAlgo]] = {cls.kind: cls for cls in (Twap, Iceberg)}


def create_algo(parent: VenueOrder) -> ExecutionAlgo:
    """The algo that works ``parent``, from its ``algo`` and ``algo_params``."""
    if parent.algo not in ALGOS:
        raise AlgoParamsError(f"unknown algo {parent.algo!r}; known: {', '.join(sorted(ALGOS))}")
    return ALGOS[parent.algo](parent)


def restore_algo(state: AlgoState) -> ExecutionAlgo:
    """The algo a snapshot kept (``ExecutionAlgo.state``), as it was."""
    algo = create_algo(state.parent)
    algo.restore(state)
    return algo


__all__ = [
    "ALGOS",
    "AlgoParamsError",
    "AlgoState",
    "ChildOrder",
    "ChildState",
    "ExecutionAlgo",
    "Iceberg",
    "Twap",
    "create_algo",
    "restore_algo",
    "twap_quantities",
]
