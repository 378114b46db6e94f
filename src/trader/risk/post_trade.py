"""The post-trade watch's snapshot: the equity it last saw, its peak and the day's start, with the PNL
sequence they cover. Risk's intake stores it (``trader.runtime.snapshots``, key ``risk``) and restores a
fresh ``PostTradeRisk`` from it at start, then applies only the PnL snapshots after it; the restored
watch then decides exactly as one that never stopped. Pure.
"""

from __future__ import annotations

from decimal import Decimal

import msgspec

from trader.messages import PnlSnapshot
from trader.risk.checks import PostTradeRisk

# Of PostTradeCheckpoint: a snapshot of another version is not read (the PNL stream replayed instead).
CHECKPOINT_VERSION = 1


class PostTradeCheckpoint(msgspec.Struct, kw_only=True, frozen=True):
    """What the post-trade watch had seen up to ``seq`` of the PNL stream."""

    seq: int = 0
    timestamp: int = 0
    equity: Decimal | None = None
    peak: Decimal | None = None
    day_start: Decimal | None = None


def post_trade_checkpoint(post: PostTradeRisk, seq: int, snapshot: PnlSnapshot) -> PostTradeCheckpoint:
    """What the watch knows once it has seen ``snapshot`` (at ``seq`` of the PNL stream)."""
    return PostTradeCheckpoint(
        seq=seq,
        timestamp=snapshot.timestamp,
        equity=snapshot.total,
        peak=post.peak_equity,
        day_start=post.day_start_equity,
    )


def restore_post_trade(post: PostTradeRisk, checkpoint: PostTradeCheckpoint) -> None:
    """Bring a fresh watch to where the checkpoint was: the last equity and its day through the watch's
    own update, then the peak and the day's start."""
    if checkpoint.equity is None:
        return
    post.update(checkpoint.equity, checkpoint.timestamp)
    post.peak_equity = checkpoint.peak
    post.day_start_equity = checkpoint.day_start
