"""The balance reconciliation's arithmetic: exact Decimals, fees in either asset, the tolerance."""

from __future__ import annotations

from decimal import Decimal as D

import pytest

from trader.execution.balances import (
    BalanceBaseline,
    BalanceMismatch,
    add_up,
    check_balances,
    compare,
    fill_deltas,
    report_deltas,
)
from trader.messages import ExecutionReport, Side

TOLERANCE = D("0.00000001")


def assets_of(symbol: str) -> tuple[str, str] | None:
    return {"BTCUSDT": ("BTC", "USDT"), "ETHBTC": ("ETH", "BTC")}.get(symbol)


def fill(
    side: Side, qty: str, price: str | None, fee: str = "0", symbol: str = "BTCUSDT", n: int = 1
) -> ExecutionReport:
    return ExecutionReport(
        exec_id=f"v:o:{n}",
        kind="fill",
        client_order_id="o",
        strategy="s",
        account="a",
        venue="v",
        symbol=symbol,
        side=side,
        last_quantity=D(qty),
        last_price=None if price is None else D(price),
        fee=D(fee),
    )


def test_a_buy_adds_the_base_and_takes_the_quote_and_the_fee_in_quote() -> None:
    deltas = fill_deltas("buy", D("0.2"), D("59000.50"), base="BTC", quote="USDT", fee=D("0.0118001"))
    assert deltas == {"BTC": D("0.2"), "USDT": D("-11800.1118001")}


def test_a_sell_with_its_fee_in_the_base_asset() -> None:
    deltas = fill_deltas(
        "sell", D("0.3"), D("59000.30"), base="BTC", quote="USDT", fee=D("0.0003"), fee_asset="BTC"
    )
    assert deltas == {"BTC": D("-0.3003"), "USDT": D("17700.090")}


def test_a_buy_with_its_fee_in_the_base_asset_receives_less() -> None:
    deltas = fill_deltas(
        "buy", D("0.5"), D("60000"), base="BTC", quote="USDT", fee=D("0.0005"), fee_asset="BTC"
    )
    assert deltas == {"BTC": D("0.4995"), "USDT": D("-30000")}


def test_a_fee_in_a_third_asset_and_a_rebate() -> None:
    third = fill_deltas("buy", D("1"), D("10"), base="BTC", quote="USDT", fee=D("0.01"), fee_asset="BNB")
    assert third == {"BTC": D("1"), "USDT": D("-10"), "BNB": D("-0.01")}
    rebate = fill_deltas("sell", D("1"), D("10"), base="BTC", quote="USDT", fee=D("-0.002"))
    assert rebate == {"BTC": D("-1"), "USDT": D("10.002")}  # a maker rebate adds


def test_a_published_fill_takes_its_fee_from_the_quote_as_the_report_carries_it() -> None:
    assert report_deltas(fill("sell", "0.1", "60000", "6"), assets_of) == {
        "BTC": D("-0.1"),
        "USDT": D("5994"),
    }
    assert report_deltas(fill("buy", "2", "0.05", "0.0001", "ETHBTC"), assets_of) == {
        "ETH": D("2"),
        "BTC": D("-0.1001"),
    }
    assert report_deltas(fill("buy", "1", "10", symbol="XYZ"), assets_of) is None  # unknown symbol
    assert report_deltas(fill("buy", "1", None), assets_of) is None  # no price: nothing to multiply


def test_sums_are_exact_where_floats_are_not() -> None:
    deltas = [{"BTC": D("0.1")}] * 3 + [{"USDT": D("-0.00000001")}]
    total = add_up({"BTC": D("0"), "USDT": D("1")}, deltas)
    assert total == {"BTC": D("0.3"), "USDT": D("0.99999999")}
    assert 0.1 + 0.1 + 0.1 != 0.3  # what a float would have made of it


def test_a_difference_up_to_the_tolerance_is_no_mismatch() -> None:
    expected = {"BTC": D("1.00000000"), "USDT": D("100")}
    assert compare("v", expected, {"BTC": D("1.00000001"), "USDT": D("100")}, TOLERANCE) == []
    assert compare("v", expected, {"BTC": D("0.99999999"), "USDT": D("100")}, TOLERANCE) == []
    assert compare("v", expected, {"BTC": D("1.00000002"), "USDT": D("100")}, TOLERANCE) == [
        BalanceMismatch("v", "BTC", D("1.00000000"), D("1.00000002"), D("0.00000002"))
    ]


def test_a_tolerance_of_zero_demands_equality_and_trailing_zeros_do_not_matter() -> None:
    assert compare("v", {"BTC": D("1.0")}, {"BTC": D("1.00000000")}, D(0)) == []
    assert [m.difference for m in compare("v", {"BTC": D("1")}, {"BTC": D("1.000000001")}, D(0))] == [
        D("0.000000001")
    ]


def test_an_asset_missing_on_either_side_counts_as_zero() -> None:
    found = compare("v", {"BTC": D("0"), "ETH": D("2")}, {"USDT": D("5")}, TOLERANCE)
    assert [(m.asset, m.expected, m.actual, m.difference) for m in found] == [
        ("ETH", D("2"), D(0), D("-2")),
        ("USDT", D(0), D("5"), D("5")),
    ]  # BTC: 0 expected, absent at the venue: no mismatch


@pytest.mark.parametrize("deposit", [D(0), D("0.5")])
def test_check_explains_the_fills_and_reports_only_what_they_do_not(deposit: D) -> None:
    baseline = BalanceBaseline(venue="v", balances={"BTC": D("1"), "USDT": D("100000")}, seq=7)
    fills = [
        fill("buy", "0.2", "59000.50", "0.0118001", n=1),
        fill("buy", "0.1", "59000.40", "0.0059004", n=2),
        fill("sell", "0.05", "61000", "0.00305", n=3),
    ]
    # By hand: 100000 - 11800.1 - 5900.04 + 3050 - (0.0118001 + 0.0059004 + 0.00305) USDT.
    actual = {"BTC": D("1.25") + deposit, "USDT": D("85349.8392495")}
    found = check_balances(baseline, fills, actual, assets_of, TOLERANCE)
    assert found.expected == {"BTC": D("1.25"), "USDT": D("85349.8392495")}
    assert found.uncounted == []
    if deposit:
        assert found.mismatches == [BalanceMismatch("v", "BTC", D("1.25"), D("1.75"), D("0.5"))]
        assert found.mismatches[0].as_strings() == {
            "venue": "v",
            "asset": "BTC",
            "expected": "1.25",
            "venue_balance": "1.75",
            "difference": "0.50",
        }
    else:
        assert found.mismatches == []


def test_a_fill_that_cannot_be_counted_is_named() -> None:
    baseline = BalanceBaseline(venue="v", balances={"BTC": D("1")}, seq=0)
    found = check_balances(
        baseline, [fill("buy", "1", "5", symbol="XYZ", n=4)], {"BTC": D("1")}, assets_of, TOLERANCE
    )
    assert (found.uncounted, found.mismatches) == (["v:o:4"], [])
