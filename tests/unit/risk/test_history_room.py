from __future__ import annotations

from trader.risk.history_room import REDUCE_ONLY_SHARE, HistoryUse, reduce_only_for


def test_trading_goes_reduce_only_only_when_the_room_is_nearly_full() -> None:
    room = 1_000_000
    assert reduce_only_for(HistoryUse(int(room * 0.8), room), 1) is None
    assert reduce_only_for(HistoryUse(int(room * REDUCE_ONLY_SHARE) - 1, room), 1) is None
    state = reduce_only_for(HistoryUse(int(room * REDUCE_ONLY_SHARE), room), 42)
    assert state is not None
    assert (state.mode, state.since) == ("reduce_only", 42)
    assert state.reason is not None
    assert state.reason.startswith("storage: trading history at 95% of its room")


def test_no_room_at_all_counts_as_full() -> None:
    assert HistoryUse(0, 0).share == 1.0
