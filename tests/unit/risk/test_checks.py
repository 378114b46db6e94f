"""Each risk limit denies what it should, with the check and the numbers, and allows what it should."""

from __future__ import annotations

from decimal import Decimal
from typing import Any

import msgspec
import pytest
from pydantic import ValidationError

from trader.messages import Order, OrderRequest, PnlSnapshot, Position, TradingState
from trader.orders.state import new_order
from trader.risk.checks import MANUAL_STRATEGY, PostTradeRisk, PreTradeRisk
from trader.risk.limits import RiskLimits

D = Decimal
NOW = 1_732_406_400_000  # 2024-11-24T00:00:00Z
DAY = 86_400_000
ROOMY = {"max_order_notional": D("1e9"), "max_gross_exposure": D("1e12")}  # to test one limit alone


def risk(state: TradingState | None = None, **limits: Any) -> PreTradeRisk:
    checks = PreTradeRisk(RiskLimits(**limits), state)
    checks.update_price("BTCUSDT", D(60000))
    checks.update_price("ETHUSDT", D(3000))
    return checks


def order(quantity: str, side: str = "buy", client_order_id: str = "o-1", **changes: Any) -> OrderRequest:
    terms: dict[str, Any] = {
        "client_order_id": client_order_id,
        "strategy": "s1",
        "symbol": "BTCUSDT",
        "side": side,
        "quantity": D(quantity),
    }
    return OrderRequest(**{**terms, **changes})


def position(quantity: str, symbol: str = "BTCUSDT", **changes: Any) -> Position:
    terms: dict[str, Any] = {
        "account": "paper",
        "venue": "binance",
        "symbol": symbol,
        "quantity": D(quantity),
        "average_price": None if D(quantity) == 0 else D(50000),
        "realized_pnl": D(0),
        "fees": D(0),
    }
    return Position(**{**terms, **changes})


def open_order(quantity: str, side: str = "buy", client_order_id: str = "open-1", **changes: Any) -> Order:
    return new_order(order(quantity, side, client_order_id, **changes), NOW)


def denial(checks: PreTradeRisk, request: OrderRequest, now_ms: int = NOW) -> str:
    decision = checks.check(request, now_ms)
    assert not decision.approved, "expected a denial"
    assert decision.reason is not None
    return decision.reason


def approved(checks: PreTradeRisk, request: OrderRequest, now_ms: int = NOW) -> bool:
    decision = checks.check(request, now_ms)
    assert decision.reason is None or not decision.approved
    return decision.approved


def test_an_ordinary_order_is_approved_with_the_request_and_time() -> None:
    decision = risk().check(order("1"), NOW)
    assert (decision.approved, decision.reason, decision.timestamp) == (True, None, NOW)
    assert decision.request == order("1")


def test_halted_denies_everything_even_a_reduction() -> None:
    checks = risk(TradingState(mode="halted", reason="operator stop"))
    checks.update_position(position("2"))
    assert denial(checks, order("1", "sell")) == "halted: operator stop"


def test_a_market_order_without_a_last_price_is_denied() -> None:
    assert denial(risk(), order("1", symbol="SOLUSDT")) == "no reference price: no last trade for SOLUSDT"


def test_malformed_requests_are_denied() -> None:
    assert denial(risk(), order("0")) == "invalid: quantity 0 must be positive"
    assert denial(risk(), order("1", type="limit")) == "invalid: a limit order needs a positive price"
    assert (
        denial(risk(), order("1", type="stop_market"))
        == "invalid: a stop_market order needs a positive stop_price"
    )


def test_max_order_notional() -> None:
    checks = risk(max_order_notional=D(60000))
    assert approved(checks, order("1", client_order_id="a"))  # exactly at the limit
    assert denial(checks, order("1.001", client_order_id="b")) == "max_order_notional: 60060.000 > 60000"
    limit = order("1", client_order_id="c", type="limit", price=D("61000"))
    assert denial(checks, limit) == "max_order_notional: 61000 > 60000"


def test_price_band_on_limit_and_stop_prices() -> None:
    checks = risk(**ROOMY)
    assert approved(checks, order("1", "a", type="limit", price=D(63000)))  # exactly 5%
    assert denial(checks, order("1", client_order_id="b", type="limit", price=D(66000))) == (
        "price_band: BTCUSDT price 66000 is 10.00% from last trade 60000 (max 5%)"
    )
    assert denial(checks, order("1", "sell", "c", type="limit", price=D("56999.99"))) == (
        "price_band: BTCUSDT price 56999.99 is 5.00% from last trade 60000 (max 5%)"
    )
    stop = order("1", "sell", "d", type="stop_market", stop_price=D(50000))
    assert denial(checks, stop).startswith("price_band: BTCUSDT price 50000 is 16.67%")


def test_max_position_per_symbol_counts_the_position_and_open_orders() -> None:
    checks = risk(**ROOMY)
    checks.update_position(position("8"))
    assert denial(checks, order("3")) == (
        "max_position_per_symbol: |11| > 10 for BTCUSDT (position 8, open 0, order 3 buy)"
    )
    assert approved(checks, order("2", client_order_id="a"))  # 10: at the limit, and now open
    assert denial(checks, order("0.5", client_order_id="b")) == (
        "max_position_per_symbol: |10.5| > 10 for BTCUSDT (position 8, open 2, order 0.5 buy)"
    )


def test_position_limit_lets_reductions_through_but_not_a_flip_beyond_it() -> None:
    checks = risk(**ROOMY)
    checks.update_position(position("12"))  # over the limit, e.g. after the limit was lowered
    assert approved(checks, order("3", "sell", "a"))
    assert denial(checks, order("30", "sell", "b")).startswith("max_position_per_symbol: |-21| > 10")


def test_position_limit_overrides_and_sums_venues_per_account() -> None:
    checks = risk(position_limit_overrides={"ETHUSDT": D(100)}, **ROOMY)
    assert approved(checks, order("90", symbol="ETHUSDT", client_order_id="a"))
    checks.update_position(position("6", venue="binance"))
    checks.update_position(position("3", venue="okx"))
    checks.update_position(position("5", account="other"))
    checks.update_position(position("40", strategy="s1"))  # a strategy's share: not risk's concern
    assert approved(checks, order("1", client_order_id="b"))
    assert denial(checks, order("1.5", client_order_id="c")).startswith(
        "max_position_per_symbol: |11.5| > 10 for BTCUSDT (position 9, open 1"
    )


def test_max_gross_exposure_counts_positions_and_open_orders() -> None:
    checks = risk(max_order_notional=D("1e9"))
    checks.update_position(position("5"))  # 300000 at the last trade
    checks.update_order(open_order("20", symbol="ETHUSDT", type="limit", price=D(3000)))  # 60000
    assert approved(checks, order("2", client_order_id="a"))  # 480000
    assert denial(checks, order("0.5", client_order_id="b")) == (
        "max_gross_exposure: 510000.0 > 500000 (positions 300000 + open orders 180000 + order 30000.0)"
    )
    assert approved(checks, order("4", "sell", "c"))  # a reduction is always welcome


def test_terminal_orders_no_longer_count_as_exposure() -> None:
    checks = risk(**ROOMY)
    checks.update_order(open_order("9"))
    assert denial(checks, order("2")).startswith("max_position_per_symbol: |11| > 10")
    checks.update_order(msgspec.structs.replace(open_order("9"), status="CANCELED", version=2))
    assert approved(checks, order("2"))


def test_a_redelivered_request_is_not_counted_against_itself() -> None:
    checks = risk(**ROOMY)
    assert approved(checks, order("6", client_order_id="a"))
    assert approved(checks, order("6", client_order_id="a"))
    assert not checks.check(order("6", client_order_id="b"), NOW).approved


def test_max_orders_per_second_is_a_sliding_window_per_strategy() -> None:
    checks = risk(max_orders_per_second=3, **ROOMY)
    for i, at in enumerate((0, 100, 200)):
        assert approved(checks, order("0.1", client_order_id=f"a{i}"), NOW + at)
    assert denial(checks, order("0.1", client_order_id="a3"), NOW + 999) == (
        "max_orders_per_second: 4 > 3 within 1s for strategy s1"
    )
    assert approved(checks, order("0.1", client_order_id="other", strategy="s2"), NOW + 999)
    assert approved(checks, order("0.1", client_order_id="a4"), NOW + 1000)  # the one at 0 left
    assert not checks.check(order("0.1", client_order_id="a5"), NOW + 1001).approved


def test_reduce_only_mode_denies_what_would_increase_the_position() -> None:
    state = TradingState(mode="reduce_only", reason="max_daily_loss: 10500 > 10000", since=NOW)
    checks = risk(state, **ROOMY)
    checks.update_position(position("2"))
    assert denial(checks, order("1")) == (
        "reduce_only mode (max_daily_loss: 10500 > 10000): buy 1 BTCUSDT would not reduce position 2 "
        "(open buy orders 0)"
    )
    assert denial(checks, order("3", "sell")).endswith("would not reduce position 2 (open sell orders 0)")
    assert approved(checks, order("1.5", "sell", "a"))
    assert denial(checks, order("1", "sell", "b")).endswith("position 2 (open sell orders 1.5)")
    assert denial(checks, order("1", "sell", symbol="ETHUSDT")).endswith(
        "would not reduce position 0 (open sell orders 0)"
    )


def test_a_manual_reduce_only_order_is_judged_against_the_account() -> None:
    checks = risk(**ROOMY)
    checks.update_position(position("-2"))
    checks.update_position(position("1", strategy="manual"))  # its own fills: not what it reduces
    manual = {"strategy": MANUAL_STRATEGY, "reduce_only": True}
    assert denial(checks, order("1", "sell", **manual)) == (
        "reduce_only order: sell 1 BTCUSDT would not reduce position -2 (open sell orders 0)"
    )
    assert approved(checks, order("2", "buy", "a", **manual))
    assert denial(checks, order("0.5", "buy", "b", **manual)).endswith(
        "would not reduce position -2 (open buy orders 2)"
    )
    assert approved(checks, order("5", "buy", "c"))  # no flag, active: an increase is fine


def test_a_strategy_exits_its_own_long_while_the_account_is_flat() -> None:
    """The issue's case: a manual short 0.01, then the strategy bought 0.01: the account is flat, the
    strategy long 0.01, and its reduce-only sell must go through."""
    checks = risk(**ROOMY)
    checks.update_position(position("0"))
    checks.update_position(position("-0.01", strategy=MANUAL_STRATEGY))
    checks.update_position(position("0.01", strategy="s1"))
    assert approved(checks, order("0.01", "sell", reduce_only=True))


def test_a_strategy_reduce_only_order_uses_its_own_position_summed_over_venues() -> None:
    checks = risk(**ROOMY)
    checks.update_position(position("5"))  # the account is long: no help to s1
    checks.update_position(position("-1", strategy="s1", venue="binance"))
    checks.update_position(position("-0.5", strategy="s1", venue="okx"))
    checks.update_position(position("3", strategy="s2"))
    checks.update_position(position("-4", strategy="s1", account="other"))
    assert denial(checks, order("1", "sell", "a", reduce_only=True)) == (
        "reduce_only order: sell 1 BTCUSDT would not reduce strategy s1's position -1.5 "
        "(its open sell orders 0)"
    )
    assert denial(checks, order("1.6", "buy", "b", reduce_only=True)).endswith(
        "would not reduce strategy s1's position -1.5 (its open buy orders 0)"
    )
    assert approved(checks, order("1", "buy", "c", reduce_only=True))
    assert approved(checks, order("3", "sell", "d", reduce_only=True, strategy="s2"))


def test_a_strategy_reduce_only_order_counts_only_its_own_open_orders() -> None:
    checks = risk(**ROOMY)
    checks.update_position(position("1", strategy="s1"))
    checks.update_position(position("1", strategy="s2"))
    checks.update_order(open_order("1", "sell", "s2-exit", strategy="s2"))  # another strategy's
    checks.update_order(open_order("0.4", "sell", "s1-exit"))
    assert approved(checks, order("0.6", "sell", "a", reduce_only=True))
    assert denial(checks, order("0.1", "sell", "b", reduce_only=True)).endswith(
        "would not reduce strategy s1's position 1 (its open sell orders 1)"
    )
    checks.update_order(msgspec.structs.replace(open_order("0.4", "sell", "s1-exit"), status="CANCELED"))
    assert approved(checks, order("0.4", "sell", "c", reduce_only=True))


def test_a_strategy_exit_just_approved_counts_against_its_next_one() -> None:
    checks = risk(**ROOMY)
    checks.update_position(position("1", strategy="s1"))
    assert approved(checks, order("1", "sell", "a", reduce_only=True))
    assert denial(checks, order("1", "sell", "b", reduce_only=True)).endswith(
        "would not reduce strategy s1's position 1 (its open sell orders 1)"
    )


def test_a_flat_strategy_cannot_open_with_a_reduce_only_order_even_against_an_account_position() -> None:
    checks = risk(**ROOMY)
    checks.update_position(position("2"))
    checks.update_position(position("2", strategy=MANUAL_STRATEGY))
    assert denial(checks, order("1", "sell", reduce_only=True)) == (
        "reduce_only order: sell 1 BTCUSDT would not reduce strategy s1's position 0 (its open sell orders 0)"
    )


def test_reduce_only_mode_judges_a_strategy_exit_on_the_account_too() -> None:
    """In reduce-only mode an order must shrink the account's exposure, whoever sends it: a strategy's
    exit that would deepen the account's short waits for the operator; one that shrinks it goes."""
    state = TradingState(mode="reduce_only", reason="max_drawdown: 1001 > 1000", since=NOW)
    checks = risk(state, **ROOMY)
    checks.update_position(position("-0.02"))
    checks.update_position(position("-0.03", strategy=MANUAL_STRATEGY))
    checks.update_position(position("0.01", strategy="s1"))
    checks.update_position(position("0", strategy="s2"))
    assert denial(checks, order("0.01", "sell", "a", reduce_only=True)) == (
        "reduce_only mode (max_drawdown: 1001 > 1000): sell 0.01 BTCUSDT would not reduce position -0.02 "
        "(open sell orders 0)"
    )
    # A buy shrinks the account's short: allowed by the mode; with the flag it must also shrink s2's own.
    assert approved(checks, order("0.01", "buy", "b", strategy="s2"))
    assert denial(checks, order("0.01", "buy", "c", strategy="s2", reduce_only=True)).startswith(
        "reduce_only order: buy 0.01 BTCUSDT would not reduce strategy s2's position 0"
    )
    checks.update_position(position("0.02"))  # the account is long now: the same exit shrinks it
    assert approved(checks, order("0.01", "sell", "d", reduce_only=True))


# Post-trade ----------------------------------------------------------------------------------------


def post(state: TradingState | None = None) -> PostTradeRisk:
    return PostTradeRisk(RiskLimits(max_daily_loss=D(100), max_drawdown=D(1000)), state)


def test_daily_loss_switches_to_reduce_only_once() -> None:
    watch = post()
    assert watch.update(D(0), NOW + 10) is None
    assert watch.update(D(-100), NOW + 20) is None  # at the limit
    state = watch.update(D("-100.01"), NOW + 30)
    assert state == TradingState(
        mode="reduce_only",
        reason="max_daily_loss: 100.01 > 100 (equity -100.01, day start 0)",
        since=NOW + 30,
    )
    assert watch.update(D(-500), NOW + 40) is None  # already reduce-only
    assert watch.state == state


def test_the_day_starts_where_the_last_one_ended() -> None:
    watch = post()
    watch.update(D(0), NOW + 10)
    assert watch.update(D(-90), NOW + DAY - 1) is None
    assert watch.update(D(-150), NOW + DAY + 5) is None  # 60 lost today
    assert watch.day_start_equity == D(-90)
    state = watch.update(D(-191), NOW + DAY + 6)
    assert state is not None
    assert state.reason == "max_daily_loss: 101 > 100 (equity -191, day start -90)"


def test_drawdown_from_the_peak() -> None:
    watch = post()
    for day, equity in enumerate((0, 90, 180, 270, 360, 450, 500, 420, 330, 240, 150, 60, -30, -120)):
        assert watch.update(D(equity), NOW + day * DAY) is None
    assert watch.peak_equity == D(500)
    for day, equity in enumerate((-210, -300, -390, -480), start=14):
        assert watch.update(D(equity), NOW + day * DAY) is None
    state = watch.update(D(-501), NOW + 18 * DAY)
    assert state is not None
    assert state.reason == "max_drawdown: 1001 > 1000 (equity -501, peak 500)"


def test_a_halted_stack_is_never_relaxed_to_reduce_only() -> None:
    watch = post(TradingState(mode="halted", reason="operator"))
    watch.update(D(0), NOW)
    assert watch.update(D(-5000), NOW + 1) is None
    assert watch.state.mode == "halted"


def test_only_the_total_pnl_counts() -> None:
    watch = post()
    snapshot = PnlSnapshot(scope="s1", realized=D(0), unrealized=D(-500), fees=D(0), total=D(-500))
    watch.on_pnl(msgspec.structs.replace(snapshot, total=D(0), unrealized=D(0), scope="total", timestamp=NOW))
    assert watch.on_pnl(msgspec.structs.replace(snapshot, timestamp=NOW + 1)) is None
    state = watch.on_pnl(msgspec.structs.replace(snapshot, scope="total", timestamp=NOW + 2))
    assert state is not None
    assert state.reason is not None
    assert state.reason.startswith("max_daily_loss: 500 > 100")


# Limits ------------------------------------------------------------------------------------------


def test_limits_read_decimals_exactly_and_refuse_nonsense() -> None:
    limits = RiskLimits.model_validate(
        {"max_order_notional": "0.1", "price_band_pct": "2.5", "position_limit_overrides": {"ETHUSDT": "40"}}
    )
    assert limits.max_order_notional == D("0.1")
    assert limits.price_band_pct == D("2.5")
    assert (limits.position_limit("ETHUSDT"), limits.position_limit("BTCUSDT")) == (D(40), D(10))
    assert all(
        isinstance(value, Decimal)
        for name, value in limits.model_dump().items()
        if name not in ("max_orders_per_second", "position_limit_overrides")
    )
    with pytest.raises(ValidationError):
        RiskLimits(max_drawdown=D(0))
    with pytest.raises(ValidationError):
        RiskLimits.model_validate({"position_limit_overrides": {"BTCUSDT": "-1"}})
