"""exeq killed (SIGKILL) where a crash must lose nothing and apply nothing twice, on a real nats-server,
run as its own process (``trader service run exeq``) paused there by ``TEST_PAUSE_TRADER``: in the write
of a snapshot and in the replay of the stream after it. Restarted, it starts from its last snapshot (not
the whole stream) and its state is that of a replay of the whole EXEC stream: every fill counted once,
every exec id published once and numbered on without a gap."""

from __future__ import annotations

import asyncio
import signal
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
from trader.bus.streams import ensure_streams, exec_order_subject, tick_subject
from trader.execution.desk import DeskState, ExecutionDesk
from trader.messages import ExecutionReport, MarketTick, VenueOrder, encode
from trader.runtime import pauses
from trader.runtime.snapshots import SnapshotStore
from trader.services.exeq import STATE_VERSION

pytestmark = pytest.mark.integration

NOW = time.time_ns() // 1_000_000


def _started(started: list[Process], process: Process) -> Process:
    started.append(process)
    return process


@pytest.fixture
def stack(tmp_path: Path) -> Iterator[Stack]:
    with nats_only(tmp_path) as running:
        yield running


def _order(n: int, price: str, action: str = "new") -> VenueOrder:
    return VenueOrder(
        action=action,  # type: ignore[arg-type]
        client_order_id=f"o{n}",
        venue_client_id=f"o{n}",
        strategy="s1",
        account="paper",
        venue="paper",
        symbol="BTCUSDT",
        side="buy",
        quantity=D("1"),
        type="limit",
        price=D(price),
        timestamp=NOW + n,
    )


async def _send(js: JetStreamContext, orders: list[VenueOrder]) -> None:
    for o in orders:
        await js.publish(
            exec_order_subject("paper"), encode(o), headers={"Nats-Msg-Id": f"{o.client_order_id}:{o.action}"}
        )


async def _tick(js: JetStreamContext, ask: str, n: int) -> None:
    tick = MarketTick(
        timestamp=time.time_ns() // 1_000_000,
        exchange="mock",
        venue="mock",
        symbol="BTCUSDT",
        price=D(ask),
        size=D("100"),
        volume=D("100"),
        bid=D(ask) - 1,
        ask=D(ask),
    )
    await js.publish(tick_subject("mock", "BTCUSDT"), encode(tick), headers={"Nats-Msg-Id": f"t{n}"})


async def _reports(js: JetStreamContext) -> list[ExecutionReport]:
    stored = await replay_messages(js, "EXEC", "exec.report.>")
    return [msgspec.json.decode(m.data, type=ExecutionReport) for m in stored]


async def _until_reports(js: JetStreamContext, kind: str, count: int, timeout: float = 60) -> None:
    deadline = time.monotonic() + timeout
    while sum(1 for r in await _reports(js) if r.kind == kind) < count:
        assert time.monotonic() < deadline, f"fewer than {count} {kind} reports"
        await asyncio.sleep(0.1)


def _find(health: Any, key: str) -> list[Any]:
    if isinstance(health, dict):
        found = [health[key]] if key in health else []
        for value in health.values():
            found += _find(value, key)
        return found
    return []


async def _read_back(stack: Stack, js: JetStreamContext, timeout: float = 60) -> None:
    """Until exeq has applied everything EXEC holds (what it published read back): it is settled."""
    url = f"http://127.0.0.1:{stack.ports['exeq']}/health"
    deadline = time.monotonic() + timeout
    async with httpx.AsyncClient() as client:
        while True:
            last = (await js.stream_info("EXEC")).state.last_seq
            covered = _find((await client.get(url, timeout=2)).json(), "covered_seq")
            if covered and covered[0] >= last:
                return
            assert time.monotonic() < deadline, f"exeq applied {covered} of {last}"
            await asyncio.sleep(0.1)


def _whole(state: DeskState) -> tuple[object, ...]:
    return (
        sorted((held.venue, held.venue_client_id, held.tracked) for held in state.orders),
        sorted(state.numbers),
        sorted(state.ended),
        sorted(state.last_fill_ms),
        sorted(state.cancels),
    )


async def _full_replay(js: JetStreamContext, *, restored: bool = False) -> DeskState:
    """The state a replay of the whole EXEC stream rebuilds; ``restored``: and then restores (an algo
    whose children filled its parent ends there)."""

    async def publish(items: list[Any]) -> None:
        raise AssertionError("a replay publishes nothing")

    desk = ExecutionDesk({}, publish, lambda: NOW)
    for m in await replay_messages(js, "EXEC", "exec.>"):
        desk.replay(m.subject, m.data)
    if restored:
        await desk.restore()
    return desk.snapshot()


async def test_exeq_killed_in_a_snapshot_write_and_in_the_replay_comes_back_with_a_full_replay(
    stack: Stack, tmp_path: Path
) -> None:
    nc = await connect_nats(stack.nats_url, "test")
    assert nc is not None
    js = nc.jetstream()
    started: list[Process] = []
    try:
        await ensure_streams(js, stack.settings())
        # The history: ten orders resting, five of them filled by a tick; a graceful stop's snapshot.
        exeq = _started(started, Process(stack, "exeq", tmp_path / "exeq-1.log"))
        await exeq.ready()
        await _send(js, [_order(n, "100" if n <= 5 else "90") for n in range(1, 11)])
        await _until_reports(js, "accepted", 10)
        await _tick(js, "99", 1)
        await _until_reports(js, "fill", 5)
        await _read_back(stack, js)
        assert exeq.stop() == 0
        first = await SnapshotStore(js, "exeq").load(DeskState, STATE_VERSION)
        assert first is not None, exeq.log.read_text()[-3000:]
        assert first.covers["EXEC"] == (await js.stream_info("EXEC")).state.last_seq

        # Restarted from it; two cancels; killed writing the snapshot of its graceful stop.
        exeq = _started(
            started, Process(stack, "exeq", tmp_path / "exeq-2.log", pause=pauses.IN_SNAPSHOT_WRITE)
        )
        await exeq.ready()
        [began] = [e for e in exeq.events("intake.started") if e.get("input") == "exeq"]
        assert began["start_seq"] == first.covers["EXEC"] + 1, "a full replay, not the snapshot"
        await _send(js, [_order(n, "90", action="cancel") for n in (9, 10)])
        await _until_reports(js, "canceled", 2)
        await _read_back(stack, js)
        exeq.process.send_signal(signal.SIGTERM)
        await exeq.logged("test.paused")
        exeq.kill()

        # Killed in the replay of what came after the first snapshot (the cancels and their reports).
        exeq = _started(started, Process(stack, "exeq", tmp_path / "exeq-3.log", pause=pauses.IN_REPLAY))
        await exeq.logged("test.paused")
        exeq.kill()

        # Whole again: a tick fills two of the orders resting at 90; a graceful stop and its snapshot.
        exeq = _started(started, Process(stack, "exeq", tmp_path / "exeq-4.log"))
        await exeq.ready()
        await _tick(js, "89", 2)
        await _until_reports(js, "fill", 8)
        await _read_back(stack, js)
        await asyncio.sleep(1)  # anything published twice would show by now
        assert exeq.stop() == 0

        loaded = await SnapshotStore(js, "exeq").load(DeskState, STATE_VERSION)
        assert loaded is not None
        assert loaded.covers["EXEC"] == (await js.stream_info("EXEC")).state.last_seq
        assert _whole(loaded.state) == _whole(await _full_replay(js))
        reports = await _reports(js)
        exec_ids = [r.exec_id for r in reports]
        assert len(exec_ids) == len(set(exec_ids)), "an exec id published twice"
        filled = {
            f"o{n}": sum(
                (r.last_quantity for r in reports if r.kind == "fill" and r.client_order_id == f"o{n}"), D(0)
            )
            for n in range(1, 11)
        }
        assert filled == {f"o{n}": D(n <= 8) for n in range(1, 11)}, "a fill lost or made twice"
        for n in range(1, 11):
            numbers = [int(r.exec_id.rpartition(":")[2]) for r in reports if r.client_order_id == f"o{n}"]
            assert numbers == list(range(1, len(numbers) + 1)), f"o{n}: {numbers}"
    finally:
        for process in started:
            process.kill_if_running()
        await nc.close()


async def _children(js: JetStreamContext) -> list[str]:
    stored = await replay_messages(js, "EXEC", "exec.algo.order.>")
    orders = [msgspec.json.decode(m.data, type=VenueOrder) for m in stored]
    return [o.venue_client_id for o in orders if o.action == "new"]


async def _until_children(js: JetStreamContext, count: int, timeout: float = 60) -> None:
    deadline = time.monotonic() + timeout
    while len(await _children(js)) < count:
        assert time.monotonic() < deadline, f"fewer than {count} children released"
        await asyncio.sleep(0.1)


async def test_exeq_snapshots_an_algo_working_and_goes_on_with_it_after_a_kill(
    stack: Stack, tmp_path: Path
) -> None:
    """A TWAP working when exeq stops: the snapshot holds it; killed (SIGKILL) after it released more,
    exeq comes back from that snapshot plus the tail and the algo goes on from where it was: every child
    released once, filled once, and the state at the end that of a replay of the whole stream."""
    nc = await connect_nats(stack.nats_url, "test")
    assert nc is not None
    js = nc.jetstream()
    started: list[Process] = []
    parent = msgspec.structs.replace(
        _order(1, "90"), quantity=D("3"), algo="twap", algo_params={"duration_s": "12", "slices": "3"}
    )
    try:
        await ensure_streams(js, stack.settings())
        exeq = _started(started, Process(stack, "exeq", tmp_path / "exeq-1.log"))
        await exeq.ready()
        await _tick(js, "99", 1)  # a quote; the children (limits at 90) rest
        await _send(js, [parent])
        await _until_children(js, 1)
        await _read_back(stack, js)
        assert exeq.stop() == 0
        first = await SnapshotStore(js, "exeq").load(DeskState, STATE_VERSION)
        assert first is not None, exeq.log.read_text()[-3000:]
        [algo] = first.state.algos  # taken with the algo working
        assert algo.venue_client_id == "o1"
        assert [c.order.venue_client_id for c in algo.state.children] == ["o1.1"]

        # Restarted from it: the algo goes on (once its symbol has a tick again); killed after the next.
        exeq = _started(started, Process(stack, "exeq", tmp_path / "exeq-2.log"))
        await exeq.ready()
        [began] = [e for e in exeq.events("intake.started") if e.get("input") == "exeq"]
        assert began["start_seq"] == first.covers["EXEC"] + 1, "a full replay, not the snapshot"
        await _tick(js, "99", 2)
        await _until_children(js, 2)
        await _read_back(stack, js)
        exeq.kill()

        # From the snapshot and the tail: the rest released, then all filled by a tick at 89.
        exeq = _started(started, Process(stack, "exeq", tmp_path / "exeq-3.log"))
        await exeq.ready()
        await _tick(js, "99", 3)
        await _until_children(js, 3)
        await _tick(js, "89", 4)
        await _until_reports(js, "fill", 3)
        await _read_back(stack, js)
        await asyncio.sleep(1)  # anything published twice would show by now
        assert exeq.stop() == 0

        assert await _children(js) == ["o1.1", "o1.2", "o1.3"]
        reports = await _reports(js)
        exec_ids = [r.exec_id for r in reports]
        assert len(exec_ids) == len(set(exec_ids)), "an exec id published twice"
        assert sum((r.last_quantity for r in reports if r.kind == "fill"), D(0)) == D(3)
        loaded = await SnapshotStore(js, "exeq").load(DeskState, STATE_VERSION)
        assert loaded is not None
        assert loaded.state.algos == []  # done: the parent filled
        assert _whole(loaded.state) == _whole(await _full_replay(js, restored=True))
    finally:
        for process in started:
            process.kill_if_running()
        await nc.close()
