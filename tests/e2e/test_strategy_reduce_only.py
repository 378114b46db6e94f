"""A strategy exits with a reduce-only order while the account holds a manual short, on the real stack.

The case of issue 17: an operator sells 0.01 BTCUSDT by hand (`trader order sell ... --wait`), then a
strategy buys 0.01 (the account is now flat) and later sells what it holds with ``reduce_only``. Risk
judges a strategy's reduce-only order against the strategy's own position (long 0.01), not the
account's (flat), so the exit is approved and fills: the strategy is flat and the account holds the
manual short again. Before, every such exit was denied ("would not reduce position 0").

The strategy of this test (``RoundTrip``, below) is loaded by the strategy service from this module.
"""

from __future__ import annotations

import asyncio
import json
import os
import time
from collections.abc import Iterator
from decimal import Decimal
from pathlib import Path

import msgspec
import pytest

from tests.stack_helpers import Stack
from trader.bus.connection import connect_nats
from trader.config import StrategyConfig
from trader.messages import ExecutionReport, MarketTick, Order, Position
from trader.strategies.base import Strategy, StrategyContext

pytestmark = pytest.mark.integration

REPO = Path(__file__).resolve().parents[2]
STRATEGY = "round-trip"
QUANTITY = Decimal("0.01")
SERVICES = "gateway,normalizer,strategy,risk,oms,execution-router,exeq,ptrc"
EXIT_TIMEOUT_S = 90


class RoundTrip(Strategy):
    """Buys ``quantity`` on the first tick once the file ``go_file`` exists, then, ``exit_after_ms``
    after that buy filled, sells what it holds with ``reduce_only``: once each. The pause leaves ptrc
    time to publish the position the exit is judged against."""

    def __init__(self, config: StrategyConfig, ctx: StrategyContext) -> None:
        super().__init__(config, ctx)
        self.quantity = self.param_decimal("quantity", positive=True)
        self.go_file = Path(self.param_str("go_file"))
        self.exit_after_ms = self.param_int("exit_after_ms", "2000", minimum=0)
        self.stage = "waiting"  # waiting -> buying -> holding -> exiting
        self.bought_at = 0

    def on_tick(self, tick: MarketTick) -> None:
        if self.ctx.open_orders(tick.symbol):
            return
        if self.stage == "waiting" and self.go_file.exists():
            self.stage = "buying"
            self.ctx.submit("buy", tick.symbol, self.quantity)
        elif self.stage == "holding" and self.ctx.now_ms - self.bought_at >= self.exit_after_ms:
            self.stage = "exiting"
            self.ctx.submit("sell", tick.symbol, self.ctx.position(tick.symbol), reduce_only=True)

    def on_fill(self, report: ExecutionReport) -> None:
        if self.stage == "buying" and self.ctx.position(report.symbol) == self.quantity:
            self.stage, self.bought_at = "holding", self.ctx.now_ms


@pytest.fixture(scope="module")
def stack(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Stack]:
    data_dir = Path(tmp_path_factory.mktemp("reduce-only"))
    config = {
        "name": STRATEGY,
        "kind": f"{__name__}:RoundTrip",
        "symbols": ["BTCUSDT"],
        "params": {"quantity": str(QUANTITY), "go_file": str(data_dir / "go"), "exit_after_ms": "2000"},
    }
    stack = Stack.create(
        data_dir,
        # The strategy service imports RoundTrip from this module (after any path of the caller's).
        PYTHONPATH=os.pathsep.join(filter(None, (os.environ.get("PYTHONPATH"), str(REPO)))),
        TRADER_GATEWAY__RATE="50",
        TRADER_STRATEGY__STRATEGIES=json.dumps([config]),
    )
    stack.trader("up", "--detach", "--services", SERVICES, check=True, timeout=600)
    try:
        yield stack
    finally:
        stack.trader("down", timeout=180)


async def _stored(stack: Stack, stream: str, subject_prefix: str) -> list[bytes]:
    """Every message of ``stream`` whose subject starts with ``subject_prefix``, in stream order."""
    nc = await connect_nats(stack.nats_url, "test")
    assert nc is not None
    try:
        js = nc.jetstream()
        state = (await js.stream_info(stream)).state
        found = []
        for seq in range(state.first_seq, state.last_seq + 1):
            msg = await js.get_msg(stream, seq)
            if msg.subject.startswith(subject_prefix):
                found.append(msg.data or b"")
        return found
    finally:
        await nc.close()


def _orders_of(stack: Stack, strategy: str) -> list[Order]:
    """The latest state of each of the strategy's orders, oldest order first."""
    latest: dict[str, Order] = {}
    for data in asyncio.run(_stored(stack, "ORDERS", f"order.state.{strategy}")):
        order = msgspec.json.decode(data, type=Order)
        known = latest.get(order.client_order_id)
        if known is None or order.version > known.version:
            latest[order.client_order_id] = order
    return sorted(latest.values(), key=lambda o: o.created)


def _positions(stack: Stack) -> dict[str | None, Decimal]:
    """BTCUSDT of the paper account, summed over venues: the net position (key None) and each
    strategy's own."""
    latest: dict[tuple[str, str | None], Position] = {}
    for data in asyncio.run(_stored(stack, "POSITIONS", "position.paper.")):
        position = msgspec.json.decode(data, type=Position)
        if position.symbol == "BTCUSDT":
            latest[(position.venue, position.strategy)] = position
    sums: dict[str | None, Decimal] = {}
    for (_venue, strategy), position in latest.items():
        sums[strategy] = sums.get(strategy, Decimal(0)) + position.quantity
    return sums


def _wait_for_exit(stack: Stack) -> list[Order]:
    deadline = time.monotonic() + EXIT_TIMEOUT_S
    while True:
        orders = _orders_of(stack, STRATEGY)
        if any(o.side == "sell" and o.is_terminal for o in orders):
            return orders
        assert time.monotonic() < deadline, f"the strategy did not exit: its orders {orders}\n" + stack.log(
            "strategy"
        )
        time.sleep(0.5)


def _wait_for_positions(stack: Stack, expected: dict[str | None, Decimal]) -> dict[str | None, Decimal]:
    """Positions come from ptrc a moment after the fills: until they are ``expected`` or time is up."""
    deadline = time.monotonic() + 30
    positions = _positions(stack)
    while positions != expected and time.monotonic() < deadline:
        time.sleep(0.5)
        positions = _positions(stack)
    return positions


@pytest.fixture(scope="module")
def run(stack: Stack) -> dict[str, object]:
    placed = stack.trader("order", "sell", "BTCUSDT", str(QUANTITY), "--wait", "--json", check=True)
    [manual] = json.loads(placed.stdout)
    (stack.data_dir / "go").touch()  # the strategy buys only now, after the manual short filled
    orders = _wait_for_exit(stack)
    expected = {None: -QUANTITY, "manual": -QUANTITY, STRATEGY: Decimal(0)}
    return {"manual": manual, "orders": orders, "positions": _wait_for_positions(stack, expected)}


def test_the_manual_short_filled(run: dict) -> None:
    assert run["manual"]["status"] == "FILLED", run["manual"]


def test_the_strategy_bought_then_its_reduce_only_exit_was_approved_and_filled(run: dict) -> None:
    orders: list[Order] = run["orders"]
    terms = [(o.side, o.quantity, o.reduce_only, o.status) for o in orders]
    assert terms == [("buy", QUANTITY, False, "FILLED"), ("sell", QUANTITY, True, "FILLED")], orders


def test_the_strategy_is_flat_and_the_account_holds_the_manual_short(run: dict) -> None:
    assert run["positions"] == {None: -QUANTITY, "manual": -QUANTITY, STRATEGY: Decimal(0)}
