"""A cancel-replace is judged as the order it would become: the same limits as a new order, except that
one only lowering the quantity is always allowed (unless halted)."""

from __future__ import annotations

from decimal import Decimal
from typing import Any

import msgspec

from trader.messages import CancelRequest, Order, OrderRequest, Position, ReplaceDecision, TradingState
from trader.orders.state import new_order
from trader.risk.checks import PreTradeRisk
from trader.risk.limits import RiskLimits
from trader.risk.open_orders import OpenOrders

D = Decimal
NOW = 1_732_406_400_000
ROOMY = {"max_order_notional": D("1e9"), "max_gross_exposure": D("1e12")}  # to test one limit alone


def risk(state: TradingState | None = None, **limits: Any) -> PreTradeRisk:
    checks = PreTradeRisk(RiskLimits(**limits), state)
    checks.update_price("BTCUSDT", D(60000))
    return checks


def working(
    quantity: str,
    side: str = "buy",
    price: str = "60000",
    client_order_id: str = "o-1",
    filled: str = "0",
    **changes: Any,
) -> Order:
    """A limit order the venue works on."""
    request = OrderRequest(
        client_order_id=client_order_id,
        strategy="s1",
        symbol="BTCUSDT",
        side=side,  # type: ignore[arg-type]
        quantity=D(quantity),
        type="limit",
        price=D(price),
        **changes,
    )
    status = "PARTIALLY_FILLED" if D(filled) else "ACCEPTED"
    return msgspec.structs.replace(
        new_order(request, NOW), status=status, filled_quantity=D(filled), version=2
    )


def replace(
    quantity: str | None = None, price: str | None = None, client_order_id: str = "o-1"
) -> CancelRequest:
    return CancelRequest(
        client_order_id=client_order_id,
        strategy="s1",
        quantity=None if quantity is None else D(quantity),
        price=None if price is None else D(price),
        reason="replace",
        timestamp=NOW,
        replace_id=f"{client_order_id}:7",
    )


def position(quantity: str, strategy: str | None = None) -> Position:
    return Position(
        account="paper",
        venue="paper",
        symbol="BTCUSDT",
        quantity=D(quantity),
        average_price=D(60000),
        realized_pnl=D(0),
        fees=D(0),
        strategy=strategy,
    )


def with_order(checks: PreTradeRisk, order: Order) -> PreTradeRisk:
    checks.update_order(order)
    return checks


def decide(checks: PreTradeRisk, request: CancelRequest, now_ms: int = NOW) -> ReplaceDecision:
    decision = checks.check_replace(request, now_ms)
    assert decision.request == request
    assert decision.timestamp == now_ms
    assert (decision.reason is None) == decision.approved
    return decision


def test_a_replace_raising_the_quantity_past_max_order_notional_is_denied() -> None:
    checks = with_order(risk(max_order_notional=D(100000)), working("1"))
    decision = decide(checks, replace(quantity="2"))
    assert (decision.approved, decision.reason) == (False, "max_order_notional: 120000 > 100000")
    assert decide(checks, replace(quantity="1.5")).approved


def test_max_order_notional_bounds_the_whole_new_quantity_of_a_partly_filled_order() -> None:
    checks = with_order(risk(max_order_notional=D(100000)), working("1", filled="0.9"))
    # Unfilled 0.9 x 60000 would pass; the order of 1.8 does not.
    assert decide(checks, replace(quantity="1.8")).reason == "max_order_notional: 108000.0 > 100000"


def test_a_replace_moving_the_price_out_of_the_band_is_denied() -> None:
    checks = with_order(risk(), working("0.1"))
    reason = decide(checks, replace(price="66000")).reason
    assert reason == "price_band: BTCUSDT price 66000 is 10.00% from last trade 60000 (max 5%)"
    assert decide(checks, replace(price="61000")).approved


def test_a_replace_that_only_lowers_the_quantity_is_always_approved() -> None:
    # The order is over every limit as it stands (the limits were lowered since), and the account is
    # long in reduce_only mode: lowering its quantity only lowers the risk.
    checks = risk(
        TradingState(mode="reduce_only", reason="max_drawdown"),
        max_order_notional=D(1000),
        max_position_per_symbol=D("0.5"),
        max_gross_exposure=D(1000),
        max_orders_per_second=1,
    )
    checks.update_position(position("3"))
    with_order(checks, working("2"))
    assert decide(checks, replace(quantity="1")).approved
    assert decide(checks, replace(quantity="0.5")).approved  # nor counted against the rate
    # The same quantity at another price is a new risk, judged as such.
    assert not decide(checks, replace(quantity="0.5", price="60001")).approved


def test_halted_denies_every_replace_even_a_reduction() -> None:
    checks = with_order(risk(TradingState(mode="halted", reason="operator stop")), working("2"))
    assert decide(checks, replace(quantity="1")).reason == "halted: operator stop"


def test_reduce_only_mode_denies_a_replace_that_would_increase_the_position() -> None:
    mode = TradingState(mode="reduce_only", reason="max_daily_loss")
    checks = risk(mode, **ROOMY)
    checks.update_position(position("1"))
    with_order(checks, working("0.2", "buy"))
    with_order(checks, working("0.5", "sell", client_order_id="o-2"))
    reason = decide(checks, replace(quantity="0.3")).reason
    assert str(reason).startswith("reduce_only mode (max_daily_loss): buy 0.3 BTCUSDT")
    # Moving the price of a buy only: still a buy that adds to a long.
    assert not decide(checks, replace(price="59900")).approved
    # A sell that shrinks the long, up to the whole of it (its own 0.5 is not counted twice).
    assert decide(checks, replace(quantity="1", client_order_id="o-2")).approved
    reason = decide(checks, replace(quantity="1.1", client_order_id="o-2")).reason
    assert "would not reduce position 1" in str(reason)


def test_a_reduce_only_order_replaced_past_its_strategy_position_is_denied() -> None:
    checks = risk(**ROOMY)
    checks.update_position(position("5"))  # the account's, of no matter to a strategy's own flag
    checks.update_position(position("0.4", strategy="s1"))
    with_order(checks, working("0.3", "sell", reduce_only=True))
    assert decide(checks, replace(quantity="0.4")).approved
    reason = decide(checks, replace(quantity="0.5")).reason
    assert "reduce_only order: sell 0.5 BTCUSDT would not reduce strategy s1's" in str(reason)


def test_position_limit_counts_the_unfilled_part_once() -> None:
    checks = risk(max_position_per_symbol=D("1.2"), **ROOMY)
    checks.update_position(position("0.5"))  # the filled half of the order
    with_order(checks, working("1", filled="0.5"))
    assert decide(checks, replace(quantity="1.2")).approved  # 0.5 + unfilled 0.7
    reason = decide(checks, replace(quantity="1.3")).reason
    assert reason == (
        "max_position_per_symbol: |1.3| > 1.2 for BTCUSDT (position 0.5, open 0.0, order 0.8 buy)"
    )


def test_gross_exposure_counts_the_order_at_its_new_terms_not_twice() -> None:
    checks = risk(max_gross_exposure=D(100000), max_order_notional=D("1e9"))
    with_order(checks, working("1"))  # 60000 open
    assert decide(checks, replace(quantity="1.6")).approved  # 96000: its own 60000 is not added
    checks = with_order(risk(max_gross_exposure=D(100000), max_order_notional=D("1e9")), working("1"))
    reason = decide(checks, replace(quantity="1.7")).reason
    assert reason == "max_gross_exposure: 102000.0 > 100000 (positions 0 + open orders 0 + order 102000.0)"


def test_an_approved_increase_counts_at_its_larger_terms_against_the_next_order() -> None:
    checks = risk(max_position_per_symbol=D(2), **ROOMY)
    with_order(checks, working("1"))
    assert decide(checks, replace(quantity="1.5")).approved
    request = OrderRequest(
        client_order_id="o-3", strategy="s1", symbol="BTCUSDT", side="buy", quantity=D("0.6")
    )
    reason = checks.check(request, NOW).reason
    assert str(reason).startswith("max_position_per_symbol: |2.1| > 2")


def test_replaces_that_add_risk_count_against_the_rate() -> None:
    checks = with_order(risk(max_orders_per_second=2, **ROOMY), working("1"))
    assert decide(checks, replace(price="60010")).approved
    assert decide(checks, replace(price="60020"), NOW + 1).approved
    reason = decide(checks, replace(price="60030"), NOW + 2).reason
    assert reason == "max_orders_per_second: 3 > 2 within 1s for strategy s1"


def test_a_replace_of_an_order_not_open_or_of_another_strategy_is_denied() -> None:
    checks = risk()
    assert decide(checks, replace(price="60010")).reason == "unknown order: o-1 is not an open order of s1"
    with_order(checks, msgspec.structs.replace(working("1"), status="FILLED", filled_quantity=D(1)))
    assert not decide(checks, replace(price="60010")).approved
    other = msgspec.structs.replace(replace(price="60010"), strategy="s2")
    with_order(checks, working("1", client_order_id="o-1"))
    assert decide(checks, other).reason == "unknown order: o-1 is not an open order of s2"


def test_a_malformed_replace_is_denied() -> None:
    checks = with_order(risk(), working("1", filled="0.4"))
    assert (
        decide(checks, replace(quantity="0.4")).reason
        == "invalid: replace quantity 0.4 must exceed filled 0.4"
    )
    market = msgspec.structs.replace(working("1", client_order_id="m-1"), type="market", price=None)
    with_order(checks, market)
    reason = decide(checks, replace(price="60000", client_order_id="m-1")).reason
    assert reason == "invalid: a market order cannot take limit price 60000"


def test_open_orders_count_a_pending_replace_at_its_larger_terms() -> None:
    book = OpenOrders()
    order = working("1")
    book.put(msgspec.structs.replace(order, replace_quantity=D(2), replace_price=D(59000)))
    assert book.same_side_leaves("paper", "BTCUSDT", "buy", excluding="x") == D(2)
    assert book.notional("paper", lambda _symbol: None, excluding="x") == D(120000)
    book.put(msgspec.structs.replace(order, replace_quantity=D("0.5")))
    assert book.same_side_leaves("paper", "BTCUSDT", "buy", excluding="x") == D(1)
    book.remove("o-1")
    assert book.same_side_leaves("paper", "BTCUSDT", "buy", excluding="x") == D(0)
    assert book.notional("paper", lambda _symbol: None, excluding="x") == D(0)
