"""ptrc on the intake, on a real nats-server: restarted, it takes its state from its snapshot and only
the reports after it, and its positions are those of a full replay; without a usable snapshot it
replays everything, with the same result."""

from __future__ import annotations

import asyncio
import time
from collections.abc import Callable
from decimal import Decimal as D

import msgspec
import pytest
from nats.js.api import StreamConfig

from tests.stack_helpers import RestartableNats
from trader.bus.connection import connect_nats
from trader.bus.publish import Outgoing
from trader.bus.streams import STATE_BUCKET, ensure_state_bucket
from trader.config import Settings
from trader.messages import ExecutionReport, Position, encode
from trader.portfolio import PositionTracker
from trader.runtime.service import Runtime
from trader.runtime.snapshots import KEY_PREFIX
from trader.services.ptrc import Ptrc, apply_report

pytestmark = pytest.mark.integration

SUBJECT = "position.acc.paper.BTCUSDT"


def _fill(n: int) -> ExecutionReport:
    return ExecutionReport(
        exec_id=f"e{n}",
        kind="fill",
        client_order_id=f"o{n}",
        strategy="s1",
        account="acc",
        venue="paper",
        symbol="BTCUSDT",
        side="buy" if n % 3 else "sell",
        last_quantity=D(n % 5 + 1),
        last_price=D(100 + n),
        fee=D("0.01"),
        timestamp=n,
    )


async def _runtime(url: str) -> Runtime:
    rt = Runtime("ptrc", Settings())
    rt.nc = await connect_nats(url, "ptrc")
    assert rt.nc is not None
    rt._js = rt.nc.jetstream()
    return rt


async def _publish(rt: Runtime, numbers: range, tag: str = "") -> None:
    out = [Outgoing("exec.report.paper", encode(_fill(n)), msg_id=f"e{n}{tag}") for n in numbers]
    assert (await rt.publish_reliably(out)).stored == len(out)


async def _until(check: Callable[[], bool], what: str, timeout: float = 20) -> None:
    deadline = time.monotonic() + timeout
    while not check():
        assert time.monotonic() < deadline, f"timed out waiting for {what}"
        await asyncio.sleep(0.05)


async def _latest(rt: Runtime) -> Position:
    return msgspec.json.decode((await rt.js.get_last_msg("POSITIONS", SUBJECT)).data, type=Position)


class Running:
    def __init__(self, service: Ptrc, rt: Runtime, task: asyncio.Task[None]) -> None:
        self.service, self.rt, self.task = service, rt, task

    async def stop(self) -> None:
        self.rt.request_stop()
        await asyncio.wait_for(self.task, 20)
        await self.service.stop(self.rt)
        assert self.rt.nc is not None
        await self.rt.nc.close()


async def _ptrc(url: str) -> Running:
    rt = await _runtime(url)
    service = Ptrc(rt.settings)
    await service.start(rt)
    running = Running(service, rt, asyncio.create_task(service.run(rt)))
    await _until(lambda: service.ready_checks() == {"ptrc": True}, "ptrc ready")
    return running


def _full(count: int) -> Position:
    tracker = PositionTracker()
    for n in range(1, count + 1):
        apply_report(tracker, _fill(n))
    position = tracker.net("acc", "paper", "BTCUSDT")
    assert position is not None
    return position


@pytest.fixture
async def url(restartable_nats: RestartableNats) -> str:
    rt = await _runtime(restartable_nats.url)
    for name, subjects in (("EXEC", ["exec.>"]), ("POSITIONS", ["position.>"]), ("DLQ", ["dlq.>"])):
        await rt.js.add_stream(StreamConfig(name=name, subjects=subjects))
    await ensure_state_bucket(rt.js)
    assert rt.nc is not None
    await rt.nc.close()
    return restartable_nats.url


async def test_ptrc_restarts_from_its_snapshot_with_the_positions_of_a_full_replay(url: str) -> None:
    publisher = await _runtime(url)
    await _publish(publisher, range(1, 31))
    first = await _ptrc(url)
    assert first.service.tracker.net("acc", "paper", "BTCUSDT") == _full(30)  # history: rebuilt
    assert await _latest(publisher) == _full(30)  # and published once caught up (none was there)
    await _publish(publisher, range(31, 41))  # live
    await _until(lambda: first.service.tracker.net("acc", "paper", "BTCUSDT") == _full(40), "40 fills")
    await first.stop()  # the last snapshot: covers the 40 reports
    await _publish(publisher, range(41, 46))  # while ptrc is down

    second = await _ptrc(url)
    intake = second.service.intake
    assert intake is not None
    assert (intake.start_seq, intake.snapshot_problem) == (41, None)
    assert second.service.tracker.net("acc", "paper", "BTCUSDT") == _full(45)
    assert await _latest(publisher) == _full(45)  # what the restart found stale, published
    # Repeats of fills before and after the snapshot, stored again (past JetStream's duplicate window).
    await _publish(publisher, range(40, 42), tag=":again")
    await _publish(publisher, range(46, 47))
    await _until(lambda: second.service.tracker.net("acc", "paper", "BTCUSDT") == _full(46), "46 fills")
    await second.stop()
    assert await _latest(publisher) == _full(46)

    # The snapshot spoiled: a full replay, and the same positions.
    kv = await publisher.js.key_value(STATE_BUCKET)
    await kv.put(KEY_PREFIX + "ptrc", b"\x00 not a snapshot")
    third = await _ptrc(url)
    assert third.service.intake is not None
    assert third.service.intake.start_seq == 1
    assert "corrupt" in (third.service.intake.snapshot_problem or "")
    assert third.service.tracker.net("acc", "paper", "BTCUSDT") == _full(46)
    await third.stop()
    assert publisher.nc is not None
    await publisher.nc.close()
