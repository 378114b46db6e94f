"""How the CLI's tables show values: exact Decimals, rounded only past TABLE_DECIMALS places."""

from __future__ import annotations

from decimal import Decimal

from hypothesis import given
from hypothesis import strategies as st

from trader.cli.data import TABLE_DECIMALS, table_cell


def test_a_value_carried_at_decimals_full_precision_is_rounded_for_the_eye() -> None:
    assert table_cell(Decimal("-1.2729999999999999999999999")) == "-1.273"
    assert table_cell(Decimal("10.23333333333333333333333333")) == "10.2333333333"
    assert table_cell(Decimal("100.000000000000000001")) == "100"
    assert table_cell(Decimal("0.00000000000000000001")) == "0"


def test_what_needs_no_rounding_is_shown_as_it_is() -> None:
    assert table_cell(Decimal("0.0010")) == "0.0010"  # trailing zeros of an exact value are kept
    assert table_cell(Decimal("12345.6789012345")) == "12345.6789012345"
    assert table_cell(None) == ""
    assert table_cell("ACCEPTED") == "ACCEPTED"
    assert table_cell(Decimal("NaN")) == "NaN"


@given(st.decimals(allow_nan=False, allow_infinity=False, places=None))
def test_a_shown_value_is_within_half_a_unit_of_the_last_place_shown(value: Decimal) -> None:
    shown = Decimal(table_cell(value))
    assert abs(shown - value) <= Decimal(1).scaleb(-TABLE_DECIMALS) / 2


def test_a_big_value_keeps_every_digit_of_its_integer_part() -> None:
    value = Decimal("12345678901234567890.123456789012345")
    assert table_cell(value) == "12345678901234567890.123456789"
