"""What the command line says when something is off, as a person meets it: the stack down, a port taken,
an unknown symbol, a rejected order. The real CLI in a subprocess, against a real nats-server."""

from __future__ import annotations

import asyncio
import socket
import subprocess
import sys
from collections.abc import Iterator
from decimal import Decimal
from pathlib import Path

import msgspec
import nats
import pytest

from tests.stack_helpers import Stack, nats_only
from trader.bus.connection import connect_nats
from trader.messages import Order, OrderRequest

pytestmark = pytest.mark.integration


def _trader(stack: Stack, *args: str, timeout: float = 60) -> subprocess.CompletedProcess[str]:
    return stack.trader(*args, timeout=timeout)


@pytest.mark.parametrize(
    "command",
    [
        ["orders"],
        ["positions"],
        ["pnl"],
        ["order", "buy", "BTCUSDT", "0.01", "--wait"],
        ["kill"],
        ["streams"],
        ["dlq", "list"],
    ],
)
def test_with_the_stack_down_a_command_fails_at_once_saying_run_trader_up(
    tmp_path: Path, command: list[str]
) -> None:
    stack = Stack.create(tmp_path)  # its ports: nothing listens there
    result = _trader(stack, *command)
    assert result.returncode == 1
    # One line, no reconnect warnings; that it tries once is tests/unit/bus/test_connect_once.py's.
    assert result.stderr == (
        f"error: cannot reach NATS at {stack.nats_url}: is the stack up? run `trader up`\n"
    )


def test_with_the_stack_down_a_query_fails_at_once_in_one_line(tmp_path: Path) -> None:
    stack = Stack.create(tmp_path)
    result = _trader(stack, "query", "select 1")
    assert result.returncode == 1
    assert len(result.stderr.splitlines()) == 1
    assert result.stderr.startswith(
        f"error: cannot reach QuestDB at http://127.0.0.1:{stack.ports['questdb_http']} ("
    )


@pytest.fixture
def taken_port_of_ptrc(tmp_path: Path) -> Iterator[Stack]:
    stack = Stack.create(tmp_path)
    with socket.socket() as holder:
        holder.bind(("127.0.0.1", stack.ports["ptrc"]))
        holder.listen()
        yield stack


def test_a_service_whose_port_is_taken_says_so_in_one_line(taken_port_of_ptrc: Stack) -> None:
    port = taken_port_of_ptrc.ports["ptrc"]
    result = _trader(taken_port_of_ptrc, "service", "run", "ptrc")
    assert result.returncode == 1
    assert result.stderr == (
        f"ptrc: cannot listen on 127.0.0.1:{port}: address already in use "
        "(set TRADER_PORTS__PTRC or stop what uses it)\n"
    )


def test_trader_up_with_a_port_taken_names_it_without_a_traceback(taken_port_of_ptrc: Stack) -> None:
    stack = taken_port_of_ptrc
    try:
        result = _trader(stack, "up", "--detach", timeout=300)
    finally:
        stack.trader("down", timeout=120)
    assert result.returncode == 1
    (line,) = [line for line in result.stderr.splitlines() if line.startswith("error:")]
    assert f"port {stack.ports['ptrc']} (http) is already in use" in line
    assert "move ptrc to another port" in line  # the advice on the same line, however narrow stderr is
    assert "Traceback" not in result.stderr + result.stdout


# With NATS up ---------------------------------------------------------------------------------------


@pytest.fixture
def bus(tmp_path: Path) -> Iterator[Stack]:
    """A nats-server with the streams, and one symbol with market data: BTCUSDT."""
    with nats_only(tmp_path) as stack:
        assert _trader(stack, "streams").returncode == 0
        asyncio.run(_publish_tick(stack))
        yield stack


async def _publish_tick(stack: Stack) -> None:
    nc = await connect_nats(stack.nats_url, "test")
    assert nc is not None
    try:
        tick = b'{"symbol":"BTCUSDT","price":"60000","size":"0.1","ts":1}'
        await nc.jetstream().publish("market.tick.mock.BTCUSDT", tick)
    finally:
        await nc.close()


async def _orders_stored(stack: Stack) -> int:
    nc = await connect_nats(stack.nats_url, "test")
    assert nc is not None
    try:
        return (await nc.jetstream().stream_info("ORDERS")).state.messages
    finally:
        await nc.close()


def test_an_unknown_symbol_is_called_unknown_and_the_known_ones_listed(bus: Stack) -> None:
    result = _trader(bus, "order", "buy", "DOGEUSDT", "1", "--wait")
    assert result.returncode == 2
    assert result.stderr == (
        "error: unknown symbol 'DOGEUSDT': no market data for it; known symbols: BTCUSDT\n"
    )
    assert asyncio.run(_orders_stored(bus)) == 0  # nothing sent


def test_order_wait_exits_3_with_the_reason_when_the_order_is_rejected(bus: Stack) -> None:
    """The test answers as risk and the oms would: the order's state, rejected, on its subject."""

    async def run() -> tuple[int, str, str]:
        nc = await connect_nats(bus.nats_url, "test")
        assert nc is not None
        requests: asyncio.Queue[OrderRequest] = asyncio.Queue()

        async def on_submit(msg: nats.aio.msg.Msg) -> None:
            requests.put_nowait(msgspec.json.decode(msg.data, type=OrderRequest))

        await nc.subscribe("order.submit.manual", cb=on_submit)
        await nc.flush()
        cli = await asyncio.create_subprocess_exec(
            sys.executable,
            *("-m", "trader", "order", "buy", "BTCUSDT", "5", "--wait", "--timeout", "30"),
            env=bus.env,
            stdout=asyncio.subprocess.PIPE,
            stderr=asyncio.subprocess.PIPE,
        )
        request = await asyncio.wait_for(requests.get(), 30)
        rejected = Order(
            client_order_id=request.client_order_id,
            strategy="manual",
            account="paper",
            symbol="BTCUSDT",
            side="buy",
            type="market",
            quantity=Decimal(5),
            status="REJECTED",
            reason="max_order_notional: 300000 > 100000",
            version=1,
        )
        await nc.publish("order.state.manual", msgspec.json.encode(rejected))
        stdout, stderr = await asyncio.wait_for(cli.communicate(), 60)
        await nc.close()
        assert cli.returncode is not None
        return cli.returncode, stdout.decode(), stderr.decode()

    code, stdout, stderr = asyncio.run(run())
    assert code == 3
    assert "REJECTED" in stdout
    assert stderr.endswith("rejected: max_order_notional: 300000 > 100000\n")
