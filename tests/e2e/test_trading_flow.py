"""The whole trading flow on the real stack, as `trader up` runs it: mock ticks -> bars -> strategies ->
risk -> oms -> router -> exeq (paper venue) -> fills -> positions -> PnL; then the kill switch.

Afterwards everything must reconcile exactly, computed here independently from the fills on the bus:
each order's filled quantity is the sum of its fills; each net position (quantity, average price,
realized PnL, fees) is what average-cost accounting of the fills gives; the total PnL's realized and
fees are the positions' sums. Nothing here is mocked: every component is the real one.
"""

from __future__ import annotations

import asyncio
import json
import time
from collections import defaultdict
from collections.abc import Iterator
from decimal import Decimal
from pathlib import Path

import msgspec
import pytest

from tests.stack_helpers import Stack
from trader.bus.connection import connect_nats
from trader.messages import ExecutionReport, Order, PnlSnapshot, Position
from trader.portfolio import PositionTracker

pytestmark = pytest.mark.integration

STRATEGIES = [
    {
        "name": "e2e-cross",
        "kind": "ma_cross",
        "symbols": ["BTCUSDT"],
        "params": {"fast": "2", "slow": "4", "timeframe": "1s", "quantity": "0.01", "allow_short": "true"},
    },
    {
        "name": "e2e-mm",
        "kind": "market_maker",
        "symbols": ["ETHUSDT"],
        "params": {
            "spread_bps": "1",
            "quantity": "0.1",
            "max_position": "0.5",
            "refresh_s": "1",
            "tick_size": "0.01",
        },
    },
]
RUN_S = 25
OPEN = {"NEW", "ACCEPTED", "PARTIALLY_FILLED", "PENDING_CANCEL"}


@pytest.fixture(scope="module")
def trading(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Stack]:
    stack = Stack.create(
        Path(tmp_path_factory.mktemp("e2e")),
        TRADER_GATEWAY__RATE="100",
        TRADER_GATEWAY__VOLATILITY="3",
        TRADER_STRATEGY__STRATEGIES=json.dumps(STRATEGIES),
        TRADER_PNL__SNAPSHOT_INTERVAL_S="0.5",
    )
    stack.trader("up", "--detach", check=True, timeout=600)
    try:
        yield stack
    finally:
        stack.trader("down", timeout=180)


async def _stored(stack: Stack, stream: str, subject_prefix: str) -> list[tuple[str, bytes]]:
    """Every message of ``stream`` whose subject starts with ``subject_prefix``, in stream order."""
    nc = await connect_nats(stack.nats_url, "test")
    assert nc is not None
    js = nc.jetstream()
    state = (await js.stream_info(stream)).state
    found = []
    for seq in range(state.first_seq, state.last_seq + 1):
        msg = await js.get_msg(stream, seq)
        if msg.subject.startswith(subject_prefix):
            found.append((msg.subject, msg.data or b""))
    await nc.close()
    return found


def _latest(stack: Stack, stream: str, prefix: str, kind: type) -> dict[str, object]:
    latest = {}
    for subject, data in asyncio.run(_stored(stack, stream, prefix)):
        latest[subject] = msgspec.json.decode(data, type=kind)
    return latest


def _orders(stack: Stack) -> dict[str, Order]:
    by_id: dict[str, Order] = {}
    for order in _latest_all(stack, "ORDERS", "order.state.", Order):
        if order.client_order_id not in by_id or order.version > by_id[order.client_order_id].version:
            by_id[order.client_order_id] = order
    return by_id


def _latest_all(stack: Stack, stream: str, prefix: str, kind: type) -> list:
    return [msgspec.json.decode(d, type=kind) for _, d in asyncio.run(_stored(stack, stream, prefix))]


def _fills(stack: Stack) -> list[ExecutionReport]:
    reports = _latest_all(stack, "EXEC", "exec.report.", ExecutionReport)
    return [r for r in reports if r.kind == "fill"]


def _position_from(fills: list[ExecutionReport]) -> dict[str, Decimal | None]:
    """Average-cost accounting written out plainly, the textbook way: the test's own, independent of
    trader.portfolio. The running average is a quantity-weighted mean in Decimal's default context."""
    qty, average, realized, fees = Decimal(0), None, Decimal(0), Decimal(0)
    for f in fills:
        signed = f.last_quantity if f.side == "buy" else -f.last_quantity
        fees += f.fee
        if qty == 0 or (qty > 0) == (signed > 0):  # opening or adding
            average = (
                f.last_price
                if qty == 0
                else (average * abs(qty) + f.last_price * abs(signed)) / (abs(qty) + abs(signed))
            )
            qty += signed
            continue
        closing = min(abs(signed), abs(qty))
        realized += (f.last_price - average) * closing * (1 if qty > 0 else -1)
        qty += signed
        if qty == 0:
            average = None
        elif (qty > 0) == (signed > 0):  # flipped through zero: the rest opens at the fill price
            average = f.last_price
    return {"quantity": qty, "average_price": average, "realized_pnl": realized, "fees": fees}


def _tracked(fills: list[ExecutionReport], key: tuple[str, str, str]) -> Position | None:
    tracker = PositionTracker()
    for f in fills:
        tracker.apply(f)
    return tracker.net(*key)


def _cash_identity_gap(fills: list[ExecutionReport], position: Position) -> Decimal:
    """Realized PnL is what the trades' cash left over once the open quantity is valued at its average
    cost: zero up to the rounding of a repeating average."""
    cash = sum(((-1 if f.side == "buy" else 1) * f.last_quantity * f.last_price for f in fills), Decimal(0))
    held = position.quantity * (position.average_price or 0)
    return abs(cash + held - position.realized_pnl)


@pytest.fixture(scope="module")
def run(trading: Stack) -> dict[str, object]:
    # A manual order too, through the CLI, so that the run has fills whatever the strategies decide.
    placed = trading.trader("order", "buy", "BTCUSDT", "0.02", "--wait", "--json", check=True)
    manual = json.loads(placed.stdout)
    time.sleep(RUN_S)
    trading.trader("kill", "--reason", "e2e done", check=True)
    halted_at = time.monotonic()
    time.sleep(3)
    orders_after_kill = _orders(trading)
    time.sleep(3)  # strategies keep asking; nothing new may be accepted or filled
    return {
        "manual": manual,
        "halted_at": halted_at,
        "orders_after_kill": orders_after_kill,
        "orders": _orders(trading),
        "states": _latest_all(trading, "ORDERS", "order.state.", Order),
        "fills": _fills(trading),
    }


def test_the_manual_order_filled_on_the_paper_venue(run: dict) -> None:
    [row] = run["manual"]
    assert row["status"] == "FILLED", row
    assert Decimal(str(row["filled"])) == Decimal("0.02")


def test_the_strategies_traded(run: dict) -> None:
    strategies = {o.strategy for o in run["orders"].values() if o.filled_quantity > 0}
    assert {"e2e-cross", "e2e-mm"} <= strategies, strategies


def test_the_market_maker_moved_its_quotes_by_cancel_replace(run: dict) -> None:
    prices: dict[str, set[Decimal]] = defaultdict(set)
    for state in run["states"]:
        if state.strategy == "e2e-mm" and state.price is not None:
            prices[state.client_order_id].add(state.price)
    replaced = [order_id for order_id, seen in prices.items() if len(seen) > 1]
    assert replaced, "no quote was ever replaced at a new price"


def test_every_fill_is_unique_and_every_order_is_the_sum_of_its_fills(run: dict) -> None:
    fills: list[ExecutionReport] = run["fills"]
    exec_ids = [f.exec_id for f in fills]
    assert len(exec_ids) == len(set(exec_ids)), "a fill is on the bus twice"
    filled: dict[str, Decimal] = defaultdict(Decimal)
    for f in fills:
        filled[f.client_order_id] += f.last_quantity
    for order_id, order in run["orders"].items():
        assert order.filled_quantity == filled.get(order_id, Decimal(0)), order
        assert order.filled_quantity <= order.quantity, order
        if order.status == "FILLED":
            assert order.filled_quantity == order.quantity


def test_positions_reconcile_exactly_with_the_fills(trading: Stack, run: dict) -> None:
    by_key: dict[tuple[str, str, str], list[ExecutionReport]] = defaultdict(list)
    for f in run["fills"]:
        by_key[(f.account, f.venue, f.symbol)].append(f)
    assert by_key, "no fills"
    positions = {
        (p.account, p.venue, p.symbol): p
        for p in _latest(trading, "POSITIONS", "position.", Position).values()
        if p.strategy is None
    }
    assert set(positions) == set(by_key)
    for key, fills in by_key.items():
        expected = _position_from(fills)
        p = positions[key]
        # Should they differ, whether ptrc saw other fills (or another order) than the stream holds, or
        # its accounting differs from the textbook's on these fills.
        why = f"{key}: published {p}; trader.portfolio on the {len(fills)} fills: {_tracked(fills, key)}"
        assert p.quantity == expected["quantity"], why
        assert p.realized_pnl == expected["realized_pnl"], why
        assert p.fees == expected["fees"], why
        assert p.average_price == expected["average_price"], why
        assert _cash_identity_gap(fills, p) < Decimal("1e-12"), key


def test_total_pnl_is_the_sum_of_the_positions(trading: Stack, run: dict) -> None:
    positions = [
        p for p in _latest(trading, "POSITIONS", "position.", Position).values() if p.strategy is None
    ]
    total = _latest(trading, "PNL", "pnl.total", PnlSnapshot)["pnl.total"]
    assert total.realized == sum((p.realized_pnl for p in positions), Decimal(0))
    assert total.fees == sum((p.fees for p in positions), Decimal(0))
    assert total.total == total.realized + total.unrealized - total.fees


def test_the_kill_switch_left_no_order_open_and_nothing_new_traded(run: dict) -> None:
    open_after = [o for o in run["orders_after_kill"].values() if o.status in OPEN]
    assert open_after == [], open_after
    before = run["orders_after_kill"]
    for order_id, order in run["orders"].items():
        if order_id not in before:  # asked for after the kill: denied
            assert order.status == "REJECTED", order
            assert "halted" in (order.reason or ""), order
        else:
            assert order.filled_quantity == before[order_id].filled_quantity, order
