"""Portfolio: positions from fills, and their PnL marked to market."""

from trader.portfolio.pnl import TOTAL_SCOPE, PnlBook, pnl_snapshot, unrealized_pnl
from trader.portfolio.positions import PositionChange, PositionTracker, apply_fill, flat_position

__all__ = [
    "TOTAL_SCOPE",
    "PnlBook",
    "PositionChange",
    "PositionTracker",
    "apply_fill",
    "flat_position",
    "pnl_snapshot",
    "unrealized_pnl",
]
