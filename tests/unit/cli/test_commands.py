"""The commands as a person meets them: exit codes a script can act on, one line when the stack is down,
logs that read as lines."""

from __future__ import annotations

import json
import time
from decimal import Decimal
from pathlib import Path

import pytest
from typer.testing import CliRunner

from tests.stack_helpers import free_port_map
from trader.cli.main import app
from trader.cli.trading import EXIT_REJECTED, EXIT_UNFILLED, cancel_exit_code, order_exit_code
from trader.messages import Order

runner = CliRunner()


def _order(status: str, filled: str = "0") -> Order:
    return Order(
        client_order_id="manual-1",
        strategy="manual",
        account="paper",
        symbol="BTCUSDT",
        side="buy",
        type="market",
        quantity=Decimal("0.01"),
        status=status,  # type: ignore[arg-type]
        filled_quantity=Decimal(filled),
    )


def test_a_rejected_order_exits_non_zero() -> None:
    assert order_exit_code(_order("REJECTED")) == EXIT_REJECTED


def test_an_order_that_ended_without_a_fill_exits_non_zero() -> None:
    assert order_exit_code(_order("EXPIRED")) == EXIT_UNFILLED
    assert order_exit_code(_order("CANCELED")) == EXIT_UNFILLED


def test_an_order_working_or_filled_exits_zero() -> None:
    for status in ("NEW", "ACCEPTED", "PARTIALLY_FILLED", "FILLED", "PENDING_CANCEL"):
        assert order_exit_code(_order(status, "0.005" if status == "PARTIALLY_FILLED" else "0")) == 0
    assert order_exit_code(_order("EXPIRED", "0.005")) == 0  # an IOC partly filled did something


def test_a_cancel_succeeds_only_when_the_order_was_canceled() -> None:
    assert cancel_exit_code(_order("CANCELED")) == 0
    assert cancel_exit_code(_order("FILLED", "0.01")) == EXIT_REJECTED
    assert cancel_exit_code(_order("ACCEPTED")) == EXIT_REJECTED


@pytest.fixture
def stack_down(tmp_path: Path) -> dict[str, str]:
    """Settings pointing at ports where nothing listens."""
    ports = free_port_map()
    return {
        "TRADER_DATA_DIR": str(tmp_path),
        "TRADER_PORTS__NATS": str(ports["nats"]),
        "TRADER_PORTS__QUESTDB_HTTP": str(ports["questdb_http"]),
        "TRADER_PORTS__S3": str(ports["s3"]),
    }


@pytest.mark.parametrize(
    "command",
    [
        ["orders"],
        ["positions"],
        ["pnl"],
        ["order", "buy", "BTCUSDT", "0.01", "--wait"],
        ["cancel", "manual-1"],
        ["kill"],
        ["resume"],
        ["streams"],
        ["dlq", "list"],
    ],
)
def test_with_the_stack_down_a_command_fails_at_once_in_one_line(
    stack_down: dict[str, str], command: list[str]
) -> None:
    started = time.monotonic()
    result = runner.invoke(app, command, env=stack_down)
    took = time.monotonic() - started
    nats = f"nats://127.0.0.1:{stack_down['TRADER_PORTS__NATS']}"
    assert result.exit_code == 1, result.output
    assert result.stderr == f"error: cannot reach NATS at {nats}: is the stack up? run `trader up`\n"
    assert result.stdout == ""
    assert took < 10  # generous: behaviour (no retrying), not speed


def test_with_questdb_down_a_query_fails_in_one_line(stack_down: dict[str, str]) -> None:
    result = runner.invoke(app, ["query", "select 1"], env=stack_down)
    assert result.exit_code == 1
    assert len(result.stderr.splitlines()) == 1
    assert "cannot reach QuestDB at http://127.0.0.1:" in result.stderr
    assert "run `trader up`" in result.stderr


@pytest.mark.parametrize(
    "command", [["lake", "info"], ["lake", "sql", "select 1"], ["lake", "compact"], ["lake", "vacuum"]]
)
def test_with_the_lake_down_a_lake_command_fails_in_one_line(
    stack_down: dict[str, str], command: list[str]
) -> None:
    result = runner.invoke(app, command, env=stack_down)
    s3 = f"http://127.0.0.1:{stack_down['TRADER_PORTS__S3']}"
    assert result.exit_code == 1
    assert result.stderr == f"error: cannot reach the lake's S3 at {s3}: is the stack up? run `trader up`\n"


def test_a_quantity_that_is_no_number_is_bad_input(stack_down: dict[str, str]) -> None:
    result = runner.invoke(app, ["order", "buy", "BTCUSDT", "ten"], env=stack_down)
    assert result.exit_code == 2
    assert result.stderr == "error: quantity 'ten' is not a number\n"


def _write_log(data_dir: Path, name: str, lines: list[str]) -> None:
    (data_dir / "logs").mkdir(parents=True, exist_ok=True)
    (data_dir / "logs" / f"{name}.log").write_text("".join(line + "\n" for line in lines))


def test_logs_reads_json_as_lines_and_raw_as_written(tmp_path: Path) -> None:
    entry = {
        "ports": [8303],
        "event": "service.listening",
        "service": "oms",
        "level": "info",
        "timestamp": "2026-12-02T16:52:04.973459Z",
    }
    written = [
        "--- 2026-12-02T16:51:57+00:00 trader supervisor starts: python -m trader service run oms",
        json.dumps(entry),
    ]
    _write_log(tmp_path, "oms", written)
    env = {"TRADER_DATA_DIR": str(tmp_path)}

    readable = runner.invoke(app, ["logs", "oms"], env=env)
    assert readable.exit_code == 0
    assert readable.stdout.splitlines() == [
        written[0],
        "2026-12-02 16:52:04.973 info    service.listening ports=[8303]",
    ]

    raw = runner.invoke(app, ["logs", "oms", "--raw", "-n", "1"], env=env)
    assert raw.stdout.splitlines() == [written[1]]
