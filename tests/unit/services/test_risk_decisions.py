"""The risk service's own rules around the pre- and post-trade checks: one decision per client order
id, stale requests denied, and a post-trade watch that resumes from its checkpoint unchanged."""

from __future__ import annotations

from decimal import Decimal

import pytest

from trader.messages import OrderRequest, PnlSnapshot, TradingState
from trader.risk import PostTradeRisk, PreTradeRisk, RiskLimits
from trader.risk.decider import STALE_REQUEST_MS, Decider
from trader.risk.post_trade import (
    PostTradeCheckpoint,
    post_trade_checkpoint,
    restore_post_trade,
)

T0 = 1_732_406_400_000  # a UTC midnight
DAY = 86_400_000


def _request(client_order_id: str, quantity: str = "1") -> OrderRequest:
    return OrderRequest(
        client_order_id=client_order_id,
        strategy="s1",
        symbol="BTCUSDT",
        side="buy",
        quantity=Decimal(quantity),
    )


@pytest.fixture
def decider() -> Decider:
    pre = PreTradeRisk(RiskLimits(max_orders_per_second=2))
    pre.update_price("BTCUSDT", Decimal("100"))
    return Decider(pre)


def test_a_repeated_request_gets_the_first_answer_and_counts_once(decider: Decider) -> None:
    first = decider.decide(_request("a"), arrived_ms=T0, now=T0)
    assert first.approved
    decider.pre.set_state(TradingState(mode="halted", reason="drill"))
    again = decider.decide(_request("a"), arrived_ms=T0, now=T0 + 1)
    assert again == first, "a repeat must not be decided anew"
    decider.pre.set_state(TradingState())
    # The repeat was not counted against the rate: one more fits in the second.
    assert decider.decide(_request("b"), arrived_ms=T0, now=T0 + 2).approved
    third = decider.decide(_request("c"), arrived_ms=T0, now=T0 + 3)
    assert not third.approved
    assert third.reason is not None
    assert third.reason.startswith("max_orders_per_second")


def test_a_request_that_waited_too_long_is_denied_as_stale(decider: Decider) -> None:
    late = decider.decide(_request("late"), arrived_ms=T0, now=T0 + STALE_REQUEST_MS + 1)
    assert not late.approved
    assert late.reason is not None
    assert late.reason.startswith("stale:")
    just_in_time = decider.decide(_request("ok"), arrived_ms=T0, now=T0 + STALE_REQUEST_MS)
    assert just_in_time.approved


def test_a_denial_carries_the_check_and_its_numbers(decider: Decider) -> None:
    denied = decider.decide(_request("big", quantity="2000"), arrived_ms=T0, now=T0)
    assert not denied.approved
    assert denied.reason == "max_order_notional: 200000 > 100000"


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
