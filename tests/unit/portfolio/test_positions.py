"""Positions from fills: a worked example, and random fills checked against a recomputation from scratch."""

from __future__ import annotations

import itertools
from decimal import Decimal
from typing import Any

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from trader.messages import ExecutionReport
from trader.portfolio.positions import PositionTracker, apply_fill, flat_position

D = Decimal
TOLERANCE = D("1e-15")  # Decimal division rounds at 28 digits; any real error is far larger
_exec_ids = itertools.count()


def fill(side: str, quantity: str | Decimal, price: str | Decimal, fee: str | Decimal = "0", **changes: Any):
    terms: dict[str, Any] = {
        "exec_id": f"x-{next(_exec_ids)}",
        "kind": "fill",
        "client_order_id": "o-1",
        "strategy": "s1",
        "account": "paper",
        "venue": "binance",
        "symbol": "BTCUSDT",
        "side": side,
        "last_quantity": D(quantity),
        "last_price": D(price),
        "fee": D(fee),
        "timestamp": 1_000,
    }
    return ExecutionReport(**{**terms, **changes})


def test_average_cost_through_reductions_and_flips() -> None:
    position = flat_position("paper", "binance", "BTCUSDT")
    steps = [
        (fill("buy", "2", "100", "0.2"), D(2), D(100), D(0)),
        (fill("buy", "2", "110", "0.2"), D(4), D(105), D(0)),
        (fill("sell", "3", "120", "0.3"), D(1), D(105), D(45)),  # 3 x (120 - 105)
        (fill("sell", "3", "90", "0.3"), D(-2), D(90), D(30)),  # closes 1 at -15, opens -2 at 90
        (fill("sell", "1", "96", "0.1"), D(-3), D(92), D(30)),  # short adds: (180 + 96) / 3
        (fill("buy", "3", "80", "0.3"), D(0), None, D(66)),  # 3 x (92 - 80)
    ]
    for report, quantity, average, realized in steps:
        position = apply_fill(position, report)
        assert (position.quantity, position.average_price, position.realized_pnl) == (
            quantity,
            average,
            realized,
        )
        assert position.last_exec_id == report.exec_id
    assert position.fees == D("1.4")


def test_apply_fill_refuses_what_is_not_a_fill() -> None:
    flat = flat_position("paper", "binance", "BTCUSDT")
    with pytest.raises(ValueError, match="not a fill"):
        apply_fill(flat, fill("buy", "1", "100", kind="canceled"))
    with pytest.raises(ValueError, match="not a fill"):
        apply_fill(flat, fill("buy", "0", "100"))


def test_the_tracker_applies_each_exec_id_once_and_ignores_other_reports() -> None:
    tracker = PositionTracker()
    report = fill("buy", "1", "100", "0.1")
    change = tracker.apply(report)
    assert change is not None
    assert (change.net.quantity, change.net.strategy, change.strategy.strategy) == (D(1), None, "s1")
    assert tracker.apply(report) is None
    assert tracker.apply(fill("buy", "1", "100", kind="accepted")) is None
    net = tracker.net("paper", "binance", "BTCUSDT")
    assert net is not None
    assert (net.quantity, net.fees) == (D(1), D("0.1"))


def test_strategies_are_kept_apart_and_the_account_is_net() -> None:
    tracker = PositionTracker()
    tracker.apply(fill("buy", "1", "100", strategy="a"))
    tracker.apply(fill("sell", "1", "110", strategy="b"))
    net = tracker.net("paper", "binance", "BTCUSDT")
    a = tracker.strategy_position("a", "paper", "binance", "BTCUSDT")
    b = tracker.strategy_position("b", "paper", "binance", "BTCUSDT")
    assert net is not None
    assert a is not None
    assert b is not None
    assert (net.quantity, net.average_price, net.realized_pnl) == (D(0), None, D(10))
    assert (a.quantity, a.average_price, a.realized_pnl) == (D(1), D(100), D(0))
    assert (b.quantity, b.average_price, b.realized_pnl) == (D(-1), D(110), D(0))
    assert [p.strategy for p in tracker.strategy_positions("b")] == ["b"]


def test_rebuild_counts_the_last_exec_id_as_applied() -> None:
    live = PositionTracker()
    first, second = fill("buy", "1", "100"), fill("buy", "1", "102")
    live.apply(first)
    change = live.apply(second)
    assert change is not None
    restarted = PositionTracker()
    restarted.rebuild([change.net, change.strategy], exec_ids=[first.exec_id])
    assert restarted.apply(second) is None
    assert restarted.apply(first) is None
    assert restarted.positions() == live.positions()
    again = restarted.apply(fill("sell", "2", "103"))
    assert again is not None
    assert (again.net.quantity, again.net.realized_pnl) == (D(0), D(4))


# Against a recomputation from scratch ------------------------------------------------------------


def reference(fills: list[ExecutionReport]) -> tuple[Decimal, Decimal | None, Decimal, Decimal]:
    """(quantity, average price, realized, fees) computed differently from the code under test: it
    keeps the signed cost of what is open (a reduction keeps the same share of it), never an average,
    and the realized PnL is the cash of all fills plus what the rest cost."""
    quantity = cost = cash = D(0)
    for report in fills:
        signed = report.last_quantity if report.side == "buy" else -report.last_quantity
        price = report.last_price
        assert price is not None
        after = quantity + signed
        if quantity == 0 or (quantity > 0) == (signed > 0):
            cost += signed * price
        elif after == 0 or (after > 0) == (quantity > 0):
            cost = cost * after / quantity
        else:
            cost = after * price
        quantity = after
        cash -= signed * price
    average = cost / quantity if quantity != 0 else None
    return quantity, average, cash + cost, sum((r.fee for r in fills), D(0))


random_fills = st.lists(
    st.tuples(
        st.sampled_from(["s1", "s2"]),
        st.sampled_from(["BTCUSDT", "ETHUSDT"]),
        st.sampled_from(["buy", "sell"]),
        st.integers(min_value=1, max_value=8).map(lambda n: D(n) / 4),
        st.integers(min_value=9_000, max_value=11_000).map(lambda n: D(n) / 100),
        st.integers(min_value=-3, max_value=30).map(lambda n: D(n) / 100),
        st.booleans(),  # delivered twice
    ),
    max_size=40,
)


def make_reports(rows: list[tuple[Any, ...]]) -> list[ExecutionReport]:
    return [
        fill(side, quantity, price, fee, strategy=strategy, symbol=symbol)
        for strategy, symbol, side, quantity, price, fee, _ in rows
    ]


def assert_matches(position: Any, fills: list[ExecutionReport]) -> None:
    quantity, average, realized, fees = reference(fills)
    assert position.quantity == quantity
    assert position.fees == fees
    assert abs(position.realized_pnl - realized) < TOLERANCE
    if average is None:
        assert position.average_price is None
    else:
        assert abs(position.average_price - average) < TOLERANCE


@settings(max_examples=200, deadline=None)
@given(random_fills)
def test_positions_equal_a_recomputation_from_scratch(rows: list[tuple[Any, ...]]) -> None:
    tracker = PositionTracker()
    reports = make_reports(rows)
    for report, (*_, twice) in zip(reports, rows, strict=True):
        assert tracker.apply(report) is not None
        if twice:
            assert tracker.apply(report) is None
    for symbol in ("BTCUSDT", "ETHUSDT"):
        fills = [r for r in reports if r.symbol == symbol]
        net = tracker.net("paper", "binance", symbol)
        assert (net is None) == (not fills)
        if net is not None:
            assert_matches(net, fills)
        for strategy in ("s1", "s2"):
            mine = [r for r in fills if r.strategy == strategy]
            position = tracker.strategy_position(strategy, "paper", "binance", symbol)
            assert (position is None) == (not mine)
            if position is not None:
                assert_matches(position, mine)
