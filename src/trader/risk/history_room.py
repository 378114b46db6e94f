"""Room for the trading history, the rule: when JetStream's store is full it refuses every message,
cancels and the kill switch's own write included. So trading goes to ``reduce_only`` on its own well
before that.

The trading history (``trader.bus.streams.HISTORY_STREAMS``: ``ORDERS``, ``EXEC``, ``POSITIONS``; the
state bucket beside them is a few KB) has what the other streams' shares leave of
``jetstream_max_file_store_bytes`` (``trader.bus.streams.history_room``; with a NATS server of one's
own, set it to that server's store). Risk looks every ``WATCH_S`` (``trader.services.risk``, which
measures the streams and writes the switch): past ``WARN_SHARE`` of the room it warns, past
``REDUCE_ONLY_SHARE`` it switches an active trading state to reduce-only, which leaves room for the
cancels, fills and reductions of what is open. An operator's own switch is never overridden, and going
back to active is the operator's (`trader resume`), once there is room again.
"""

from __future__ import annotations

from dataclasses import dataclass

from trader.messages import TradingState

WARN_SHARE = 0.8  # time to give JetStream more store (`trader streams` and risk say so)
REDUCE_ONLY_SHARE = 0.95
WATCH_S = 30.0


@dataclass(frozen=True)
class HistoryUse:
    used: int  # bytes the trading history's streams hold
    room: int  # bytes of the store they have

    @property
    def share(self) -> float:
        return self.used / self.room if self.room > 0 else 1.0

    def describe(self) -> str:
        return f"trading history at {self.share:.0%} of its room ({self.used:,} of {self.room:,} bytes)"


def reduce_only_for(use: HistoryUse, now_ms: int) -> TradingState | None:
    """The state to switch to for this use of the room, if any."""
    if use.share < REDUCE_ONLY_SHARE:
        return None
    reason = f"storage: {use.describe()}; give JetStream more store, then `trader resume`"
    return TradingState(mode="reduce_only", reason=reason, since=now_ms)
