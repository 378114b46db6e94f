"""The post-trade watch's checkpoint (``trader.risk.post_trade``): a watch restored from it decides as the
one that never stopped; for any history of PnL snapshots and a snapshot of the watch taken at any point
(stored and read back as the intake does), the restored watch plus the tail is a full replay."""

from __future__ import annotations

from decimal import Decimal

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from trader.messages import PnlSnapshot, TradingState
from trader.risk import PostTradeRisk, RiskLimits
from trader.risk.post_trade import (
    CHECKPOINT_VERSION,
    PostTradeCheckpoint,
    post_trade_checkpoint,
    restore_post_trade,
)
from trader.runtime.snapshots import decode_record, encode_record

T0 = 1_732_406_400_000  # a UTC midnight
DAY = 86_400_000


def _snapshot(total: str, ts: int) -> PnlSnapshot:
    value = Decimal(total)
    return PnlSnapshot(
        scope="total", realized=value, unrealized=Decimal(0), fees=Decimal(0), total=value, timestamp=ts
    )


LIMITS = RiskLimits(max_daily_loss=Decimal(1000), max_drawdown=Decimal(1500))
HISTORY = [("0", T0 + 1), ("1200", T0 + 2), ("900", T0 + 3), ("800", T0 + DAY + 1), ("300", T0 + DAY + 2)]
AFTER = [
    # The second day starts at 900, the last equity of the first; the peak is 1200.
    [("-50", T0 + DAY + 3)],  # day loss 950, drawdown 1250: no breach
    [("-150", T0 + DAY + 3)],  # day loss 1050: max_daily_loss
    [("-100", T0 + 2 * DAY + 1), ("-350", T0 + 2 * DAY + 2)],  # a third day from 300; drawdown 1550
]


@pytest.mark.parametrize("after", AFTER)
def test_a_restored_watch_decides_as_the_one_that_never_stopped(after: list[tuple[str, int]]) -> None:
    original = PostTradeRisk(LIMITS)
    checkpoint = PostTradeCheckpoint()
    for seq, (total, ts) in enumerate(HISTORY, start=1):
        assert original.on_pnl(_snapshot(total, ts)) is None
        checkpoint = post_trade_checkpoint(original, seq, _snapshot(total, ts))
    assert checkpoint.seq == len(HISTORY)
    restored = PostTradeRisk(LIMITS)
    restore_post_trade(restored, checkpoint)
    assert (restored.peak_equity, restored.day_start_equity) == (Decimal(1200), Decimal(900))
    for total, ts in after:
        expected = original.on_pnl(_snapshot(total, ts))
        assert restored.on_pnl(_snapshot(total, ts)) == expected
    assert (restored.peak_equity, restored.day_start_equity) == (
        original.peak_equity,
        original.day_start_equity,
    )


def test_the_breaches_in_the_cases_above_are_real() -> None:
    reasons = []
    for after in AFTER:
        watch = PostTradeRisk(LIMITS)
        for total, ts in HISTORY:
            watch.on_pnl(_snapshot(total, ts))
        states = [watch.on_pnl(_snapshot(total, ts)) for total, ts in after]
        reasons.append(next((s.reason for s in states if s is not None), None))
    assert reasons[0] is None
    assert reasons[1] is not None
    assert reasons[1].startswith("max_daily_loss")
    assert reasons[2] is not None
    assert reasons[2].startswith("max_drawdown")


def test_an_empty_checkpoint_restores_nothing() -> None:
    watch = PostTradeRisk(LIMITS)
    restore_post_trade(watch, PostTradeCheckpoint())
    assert watch.peak_equity is None
    assert watch.day_start_equity is None


# Any history, a snapshot anywhere --------------------------------------------------------------------

totals = st.integers(min_value=-3000, max_value=3000).map(lambda n: Decimal(n) / 2)
steps = st.integers(min_value=1, max_value=DAY // 2)  # up to half a day between snapshots: days turn


@settings(max_examples=300, deadline=None)
@given(history=st.lists(st.tuples(totals, steps), min_size=1, max_size=30), data=st.data())
def test_a_snapshot_of_the_watch_plus_the_tail_is_a_full_replay(
    history: list[tuple[Decimal, int]], data: st.DataObject
) -> None:
    stamped, ts = [], T0
    for total, step in history:
        ts += step
        stamped.append(_snapshot(str(total), ts))
    cut = data.draw(st.integers(min_value=0, max_value=len(stamped)), label="snapshot after")

    full = PostTradeRisk(LIMITS)
    full_breaches = [full.on_pnl(snapshot) for snapshot in stamped]
    full_checkpoint = post_trade_checkpoint(full, len(stamped), stamped[-1])

    before = PostTradeRisk(LIMITS)
    checkpoint = PostTradeCheckpoint()
    breaches = []
    for seq, snapshot in enumerate(stamped[:cut], start=1):
        breaches.append(before.on_pnl(snapshot))
        checkpoint = post_trade_checkpoint(before, seq, snapshot)
    record = encode_record(checkpoint, {"PNL": cut}, CHECKPOINT_VERSION, 0)
    loaded = decode_record(record, PostTradeCheckpoint, CHECKPOINT_VERSION)
    assert loaded.covers == {"PNL": cut}
    # Restarted: a watch in the trading state the switch holds (reduce-only once a breach switched it).
    switched = next((b for b in breaches if b is not None), None)
    restored = PostTradeRisk(LIMITS, switched or TradingState())
    restore_post_trade(restored, loaded.state)
    after = loaded.state
    for seq, snapshot in enumerate(stamped[cut:], start=cut + 1):
        breaches.append(restored.on_pnl(snapshot))
        after = post_trade_checkpoint(restored, seq, snapshot)
    assert after == full_checkpoint
    assert breaches == full_breaches
