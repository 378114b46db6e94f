"""The strategy service killed (SIGKILL) where a crash must lose nothing and apply nothing twice, on a
real nats-server, run as its own process (``trader service run strategy``) paused there by
``TEST_PAUSE_TRADER``: in the write of its snapshot and in the replay of the streams after it.
Restarted, it starts from its last snapshot (not the whole history) and its strategy's context is that
of a replay of both streams whole: every order and fill once."""

from __future__ import annotations

import asyncio
import json
import time
from collections.abc import Iterator
from decimal import Decimal as D
from pathlib import Path
from typing import Any

import httpx
import msgspec
import pytest
from nats.js import JetStreamContext

from tests.integration.test_oms_risk_kills import Process
from tests.stack_helpers import Stack, nats_only
from trader.bus.connection import connect_nats
from trader.bus.read import replay_messages
from trader.bus.streams import ensure_streams
from trader.config import StrategyConfig
from trader.messages import ExecutionReport, Order, OrderRequest, encode
from trader.orders.state import new_order
from trader.runtime import pauses
from trader.runtime.snapshots import SnapshotStore
from trader.services.strategy import SNAPSHOT_KEY, STATE_VERSION, StrategiesState
from trader.strategies import OrderContext

pytestmark = pytest.mark.integration

SESSION = 500  # the session of the history's ids: a restart numbers its own above it
STRATEGY = {"name": "s1", "kind": "ma_cross", "symbols": ["BTCUSDT"], "params": {"quantity": "0.001"}}


def _started(started: list[Process], process: Process) -> Process:
    started.append(process)
    return process


@pytest.fixture
def stack(tmp_path: Path) -> Iterator[Stack]:
    with nats_only(tmp_path) as running:
        running.env["TRADER_STRATEGY__STRATEGIES"] = json.dumps([STRATEGY])
        yield running


def _request(n: int) -> OrderRequest:
    return OrderRequest(
        client_order_id=f"s1-{SESSION}-{n}",
        strategy="s1",
        symbol="BTCUSDT",
        side="buy" if n % 3 else "sell",
        quantity=D(2),
        type="limit",
        price=D(100 + n),
        tif="GTC",
        venue="paper",
        timestamp=1_000 + n,
    )


async def _orders(js: JetStreamContext, numbers: range, *, filled: bool) -> None:
    """Each order's request and its NEW state; when ``filled``, a fill of 2 and its FILLED state."""
    for n in numbers:
        request = _request(n)
        new = msgspec.structs.replace(new_order(request, 1_000 + n), version=1)
        await js.publish("order.submit.s1", encode(request), headers={"Nats-Msg-Id": request.client_order_id})
        await js.publish("order.state.s1", encode(new), headers={"Nats-Msg-Id": f"{n}:1"})
        if not filled:
            continue
        report = ExecutionReport(
            exec_id=f"paper:{request.client_order_id}:1",
            kind="fill",
            client_order_id=request.client_order_id,
            strategy="s1",
            account=new.account,
            venue="paper",
            symbol="BTCUSDT",
            side=request.side,
            last_quantity=D(2),
            last_price=D(100 + n),
            timestamp=2_000 + n,
        )
        await js.publish("exec.report.paper", encode(report), headers={"Nats-Msg-Id": report.exec_id})
        done = msgspec.structs.replace(
            new, status="FILLED", filled_quantity=D(2), average_price=D(100 + n), version=2
        )
        await js.publish("order.state.s1", encode(done), headers={"Nats-Msg-Id": f"{n}:2"})


def _find(health: Any, key: str) -> list[Any]:
    if isinstance(health, dict):
        found = [health[key]] if key in health else []
        for value in health.values():
            found += _find(value, key)
        return found
    return []


async def _health(stack: Stack) -> dict[str, Any]:
    async with httpx.AsyncClient() as client:
        body = (await client.get(f"http://127.0.0.1:{stack.ports['strategy']}/health", timeout=5)).json()
    assert isinstance(body, dict)
    return body


async def _full_replay(js: JetStreamContext) -> OrderContext:
    ctx = OrderContext(StrategyConfig(**STRATEGY), clock=lambda: 1)  # type: ignore[arg-type]
    for m in await replay_messages(js, "ORDERS", ["order.submit.>", "order.state.>"]):
        if m.subject.startswith("order.submit."):
            ctx.note_request(msgspec.json.decode(m.data, type=OrderRequest))
        else:
            ctx.apply_order(msgspec.json.decode(m.data, type=Order))
    for m in await replay_messages(js, "EXEC", "exec.report.>"):
        ctx.apply_fill(msgspec.json.decode(m.data, type=ExecutionReport))
    return ctx


def _whole(ctx: Any) -> tuple[object, ...]:
    return (
        sorted(ctx.orders, key=lambda o: o.client_order_id),
        sorted(ctx.done),
        ctx.fills_seen,
        sorted(ctx.positions, key=lambda p: (p.strategy or "", p.symbol)),
        sorted(ctx.exec_ids),
        ctx.session_seen,
    )


async def _until_snapshot(js: JetStreamContext, covers_orders: int, timeout: float = 60) -> Any:
    deadline = time.monotonic() + timeout
    while True:
        loaded = await SnapshotStore(js, SNAPSHOT_KEY).load(StrategiesState, STATE_VERSION)
        if loaded is not None and loaded.covers.get("ORDERS", 0) >= covers_orders:
            return loaded
        assert time.monotonic() < deadline, f"no snapshot covering ORDERS {covers_orders}"
        await asyncio.sleep(0.2)


async def test_the_strategy_service_killed_at_every_point_comes_back_with_a_full_replay(
    stack: Stack, tmp_path: Path
) -> None:
    nc = await connect_nats(stack.nats_url, "test")
    assert nc is not None
    js = nc.jetstream()
    started: list[Process] = []
    try:
        await ensure_streams(js, stack.settings())
        await _orders(js, range(1, 9), filled=True)
        await _orders(js, range(9, 13), filled=False)  # four working
        # Its first snapshot, once started; then killed.
        service = _started(started, Process(stack, "strategy", tmp_path / "strategy-1.log"))
        await service.ready()
        first = await _until_snapshot(js, (await js.stream_info("ORDERS")).state.last_seq)
        service.kill()

        # More history while it is down: the working ones filled, more orders.
        await _orders(js, range(13, 17), filled=True)

        # Restarted from the snapshot; killed writing its next one.
        service = _started(
            started, Process(stack, "strategy", tmp_path / "strategy-2.log", pause=pauses.IN_SNAPSHOT_WRITE)
        )
        await service.logged("test.paused")
        starts = sorted(_find(await _health(stack), "start_seq"))
        assert starts == sorted([first.covers["ORDERS"] + 1, first.covers["EXEC"] + 1]), starts
        service.kill()

        # Killed in the replay of what came after the snapshot.
        service = _started(
            started, Process(stack, "strategy", tmp_path / "strategy-3.log", pause=pauses.IN_REPLAY)
        )
        await service.logged("test.paused")
        service.kill()

        # Whole again; a graceful stop and its snapshot.
        service = _started(started, Process(stack, "strategy", tmp_path / "strategy-4.log"))
        await service.ready()
        described = _find(await _health(stack), "s1")[0]
        assert described["open_orders"] == 4  # 9..12
        await _until_snapshot(js, (await js.stream_info("ORDERS")).state.last_seq)
        assert service.stop() == 0
        loaded = await SnapshotStore(js, SNAPSHOT_KEY).load(StrategiesState, STATE_VERSION)
        assert loaded is not None
        assert loaded.covers == {
            "ORDERS": (await js.stream_info("ORDERS")).state.last_seq,
            "EXEC": (await js.stream_info("EXEC")).state.last_seq,
        }
        full = await _full_replay(js)
        assert _whole(loaded.state.contexts["s1"]) == _whole(full.snapshot())
        position = sum(
            (D(2) if _request(n).side == "buy" else D(-2) for n in [*range(1, 9), *range(13, 17)]), D(0)
        )
        assert full.position("BTCUSDT") == position
    finally:
        for process in started:
            process.kill_if_running()
        await nc.close()
