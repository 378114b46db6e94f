"""The risk service's own rules around the pre-trade checks: one decision per client order id, stale
requests denied. (The post-trade watch's checkpoint: tests/unit/risk/test_post_trade.py.)"""

from __future__ import annotations

from decimal import Decimal

import pytest

from trader.messages import OrderRequest, TradingState
from trader.risk import PreTradeRisk, RiskLimits
from trader.risk.decider import STALE_REQUEST_MS, Decider

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
