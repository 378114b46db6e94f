"""Room for the trading history: when JetStream's store is full it refuses every message, cancels and
the kill switch's own write included. So trading goes to ``reduce_only`` on its own well before that.

The trading history (``trader.bus.streams.HISTORY_STREAMS``: ``ORDERS``, ``EXEC``, ``POSITIONS``; the
state bucket beside them is a few KB) has what the other streams' shares leave of
``jetstream_max_file_store_bytes`` (``trader.bus.streams.history_room``; with a NATS server of one's
own, set it to that server's store). Risk looks every ``WATCH_S``: past
``WARN_SHARE`` of the room it warns, past ``REDUCE_ONLY_SHARE`` it switches an active trading state to
reduce-only, which leaves room for the cancels, fills and reductions of what is open. An operator's
own switch is never overridden, and going back to active is the operator's (`trader resume`), once
there is room again.
"""

from __future__ import annotations

import time
from dataclasses import dataclass

from nats.js import JetStreamContext
from nats.js.kv import KeyValue

from trader.bus.streams import HISTORY_STREAMS, history_room
from trader.config import Settings
from trader.messages import TradingState
from trader.trading.state import write_state_if

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


async def history_use(js: JetStreamContext, settings: Settings) -> HistoryUse:
    used = 0
    for name in HISTORY_STREAMS:
        used += (await js.stream_info(name)).state.bytes or 0
    return HistoryUse(used, history_room(settings))


def reduce_only_for(use: HistoryUse, now_ms: int) -> TradingState | None:
    """The state to switch to for this use of the room, if any."""
    if use.share < REDUCE_ONLY_SHARE:
        return None
    reason = f"storage: {use.describe()}; give JetStream more store, then `trader resume`"
    return TradingState(mode="reduce_only", reason=reason, since=now_ms)


async def check_history_room(
    js: JetStreamContext, kv: KeyValue, settings: Settings
) -> tuple[HistoryUse, bool]:
    """Measure the room; switch an active trading state to reduce-only when it is nearly full. Returns
    the use and whether this call switched."""
    use = await history_use(js, settings)
    state = reduce_only_for(use, time.time_ns() // 1_000_000)
    switched = state is not None and await write_state_if(kv, state, only_from="active")
    return use, switched
