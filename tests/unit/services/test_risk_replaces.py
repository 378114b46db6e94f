"""The risk service's verdicts on cancel-replaces: one per replace id (a redelivery is answered the
same, counted once), a stale one denied, and none mixed up with the order's own decision."""

from __future__ import annotations

from decimal import Decimal

from trader.messages import CancelRequest, OrderRequest
from trader.risk import PreTradeRisk, RiskLimits
from trader.risk.decider import STALE_REQUEST_MS, Decider

T0 = 1_732_406_400_000
ORDER = OrderRequest(
    client_order_id="o-1",
    strategy="s1",
    symbol="BTCUSDT",
    side="buy",
    quantity=Decimal(1),
    type="limit",
    price=Decimal(100),
)


def _decider() -> Decider:
    pre = PreTradeRisk(RiskLimits(max_orders_per_second=2, max_order_notional=Decimal(250)))
    pre.update_price("BTCUSDT", Decimal(100))
    return Decider(pre)


def _replace(replace_id: str, quantity: str) -> CancelRequest:
    return CancelRequest(
        client_order_id="o-1", strategy="s1", quantity=Decimal(quantity), replace_id=replace_id, timestamp=T0
    )


def test_a_replace_is_decided_once_per_replace_id_apart_from_its_order() -> None:
    decider = _decider()
    assert decider.decide(ORDER, T0, T0).approved
    first = decider.decide_replace(_replace("o-1:5", "2"), T0, T0)
    assert first.approved
    # Redelivered later, when it would count against the rate: the same verdict, not a second one.
    assert decider.decide_replace(_replace("o-1:5", "2"), T0, T0 + 1) == first
    assert decider.decide(ORDER, T0, T0 + 1).approved  # the order's own decision is its own
    denied = decider.decide_replace(_replace("o-1:6", "3"), T0, T0 + 2)
    assert (denied.approved, denied.reason) == (False, "max_order_notional: 300 > 250")


def test_a_replace_that_waited_too_long_is_denied_as_stale() -> None:
    decider = _decider()
    decider.decide(ORDER, T0, T0)
    late = T0 + STALE_REQUEST_MS + 1
    decision = decider.decide_replace(_replace("o-1:5", "0.5"), T0, late)
    assert not decision.approved
    assert (
        decision.reason
        == f"stale: the request waited {STALE_REQUEST_MS + 1} ms for a decision (max 30000 ms)"
    )
    assert decision.request == _replace("o-1:5", "0.5")
