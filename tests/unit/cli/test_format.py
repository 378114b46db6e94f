"""How the CLI shows numbers and tables: as a person writes them, within the terminal, --json exact."""

from __future__ import annotations

import json
from datetime import UTC, datetime, timedelta, timezone
from decimal import Decimal

from hypothesis import given
from hypothesis import strategies as st
from rich.console import Console

from trader.cli import format as fmt
from trader.cli.format import DECIMALS, MONEY_DECIMALS, cell, fitted, number, to_json


def test_numbers_have_no_exponent_and_no_trailing_zeros() -> None:
    assert number(Decimal("0E-8")) == "0"
    assert number(Decimal("-0")) == "0"
    assert number(Decimal("0.080970000000000000000000")) == "0.08097"
    assert number(Decimal("59999.550000000000000000")) == "59999.55"
    assert number(Decimal("3000.00")) == "3000"
    assert number(Decimal("1E+3")) == "1000"
    assert number(Decimal("0.0010")) == "0.001"
    assert number(Decimal("1E-7")) == "0.0000001"


def test_a_value_carried_at_full_precision_is_rounded_for_the_eye() -> None:
    assert number(Decimal("-1.2729999999999999999999999")) == "-1.273"
    assert number(Decimal("10.23333333333333333333333333")) == "10.2333333333"
    assert number(Decimal("100.000000000000000001")) == "100"
    assert number(Decimal("0.00000000000000000001")) == "0"


def test_a_double_from_questdb_reads_as_written() -> None:
    assert number(59999.55000000001) == "59999.55"
    assert number(0.1 + 0.2) == "0.3"
    assert number(1e20) == "100000000000000000000"
    assert number(3) == "3"


def test_money_has_fewer_places() -> None:
    assert cell(Decimal("0.12006140000"), MONEY_DECIMALS) == "0.1201"
    assert cell(Decimal("0.571000000"), MONEY_DECIMALS) == "0.571"


def test_other_values() -> None:
    assert number(Decimal("NaN")) == "NaN"
    assert cell(None) == ""
    assert cell("ACCEPTED") == "ACCEPTED"
    assert cell(True) == "yes"
    assert cell(datetime(2026, 12, 2, 16, 53, 19, 550000, tzinfo=UTC)) == "2026-12-02 16:53:19.550Z"
    paris = timezone(timedelta(hours=1))
    assert cell(datetime(2026, 12, 2, 17, 53, 19, 550000, tzinfo=paris)) == "2026-12-02 16:53:19.550Z"


@given(st.decimals(allow_nan=False, allow_infinity=False, places=None))
def test_a_shown_value_is_within_half_a_unit_of_the_last_place_shown(value: Decimal) -> None:
    shown = number(value)
    assert "E" not in shown.upper()
    assert abs(Decimal(shown) - value) <= Decimal(1).scaleb(-DECIMALS) / 2


def test_a_big_value_keeps_every_digit_of_its_integer_part() -> None:
    value = Decimal("12345678901234567890.123456789012345")
    assert number(value) == "12345678901234567890.123456789"


ORDER_COLUMNS = ["client_order_id", "strategy", "symbol", "side", "type", "quantity", "price", "status"]
ORDER_COLUMNS += ["filled", "average_price", "reason"]


def _render(columns: list[str], rows: list[list[object]], width: int) -> str:
    console = Console(width=width, record=True, color_system=None)
    console.print(fitted(columns, rows, width))
    return console.export_text()


def test_an_orders_table_fits_80_columns_with_every_number_whole() -> None:
    rows = [
        [
            "manual-3f9a0c1d2e4b5a69",
            "ma-cross-btc",
            "BTCUSDT",
            "sell",
            "stop_limit",
            Decimal("0.0100000000"),
            Decimal("59999.5500000000000000"),
            "PARTIALLY_FILLED",
            Decimal("0.005"),
            Decimal("59999.55333333333333333333"),
            "max_order_notional: 600000 > 100000 (a long reason that has to wrap somewhere)",
        ]
    ]
    text = _render(ORDER_COLUMNS, rows, 80)
    assert max(len(line) for line in text.splitlines()) <= 80
    for whole in ("0.01", "59999.55", "0.005", "59999.5533333333"):
        assert any(whole in line.split() for line in text.splitlines()), (whole, text)
    assert "…" not in text


def test_a_table_too_wide_for_the_terminal_shows_its_rows_as_records() -> None:
    columns = ["ts", "venue", "symbol", "open", "high", "low", "close", "volume", "vwap", "trades"]
    rows = [
        [
            "2026-12-02T16:52:00.000000Z",
            "mock",
            "BTCUSDT",
            Decimal("59996.180000000000000000"),
            Decimal("60023.540000000000000000"),
            Decimal("59961.220000000000000000"),
            Decimal("60013.970000000000000000"),
            Decimal("33.080080000000000000"),
            Decimal("59996.144488619737310000"),
            550,
        ]
    ]
    text = _render(columns, rows, 80)
    assert max(len(line) for line in text.splitlines()) <= 80
    for whole in ("59996.18", "60023.54", "33.08008", "59996.1444886197"):
        assert whole in text.split(), (whole, text)
    assert "vwap    59996.1444886197" in text  # one line per column
    wide = _render(columns, rows, 140)
    assert "ts                            venue   symbol        open" in wide  # a table when it fits
    assert "59996.18   60023.54" in wide


def test_json_stays_exact() -> None:
    value = Decimal("0.080970000000000000000000")
    assert json.loads(to_json([{"price": value}])) == [{"price": "0.080970000000000000000000"}]


# Logs ---------------------------------------------------------------------------------------------


def test_a_json_log_line_reads_as_time_level_event_and_key_values() -> None:
    line = json.dumps(
        {
            "client_order_id": "mm-eth-1",
            "error": "FILLED -> ?: refused after the order ended",
            "ports": [8303],
            "event": "order.late_refusal",
            "service": "oms",
            "level": "info",
            "timestamp": "2026-12-02T16:52:09.563141Z",
        }
    )
    assert fmt.log_line(line + "\n", "oms") == (
        "2026-12-02 16:52:09.563 info    order.late_refusal client_order_id=mm-eth-1 "
        'error="FILLED -> ?: refused after the order ended" ports=[8303]\n'
    )


def test_the_component_key_stays_when_it_names_another_component() -> None:
    line = '{"component": "nats", "pid": 7, "event": "component.ready", "level": "info", "timestamp": "x"}'
    assert fmt.log_line(line, "supervisor") == "x info    component.ready component=nats pid=7\n"


def test_an_exception_follows_on_its_own_lines() -> None:
    line = json.dumps(
        {
            "event": "service.crashed",
            "level": "error",
            "timestamp": "2026-12-02T16:52:09.563141Z",
            "exception": "Traceback (most recent call last):\n  File x\nValueError: bad\n",
        }
    )
    shown = fmt.log_line(line, "oms")
    assert shown.splitlines() == [
        "2026-12-02 16:52:09.563 error   service.crashed",
        "    Traceback (most recent call last):",
        "      File x",
        "    ValueError: bad",
    ]


def test_other_lines_are_shown_as_they_are() -> None:
    for line in (
        "[7579] 2026/12/02 16:51:53.224429 [INF] Starting nats-server\n",
        "--- 2026-12-02T16:51:57+00:00 trader supervisor starts: python -m trader service run oms\n",
        '["a json list"]\n',
        "{not json\n",
        "",
    ):
        assert fmt.log_line(line, "nats") == line
