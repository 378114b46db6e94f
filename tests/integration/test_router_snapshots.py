"""The execution-router on the intake, on a real nats-server: restarted from its snapshot, or from a full
replay when the snapshot is unusable, or after ending without its last snapshot (as a SIGKILL leaves it),
it answers every route message exactly once and keeps the decisions of a full replay.

EXEC's duplicate window is short here, so an answer published twice would be stored twice and counted."""

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
from trader.bus.streams import SOURCE_SEQ, STATE_BUCKET, ensure_state_bucket
from trader.config import Settings
from trader.messages import VenueOrder, encode
from trader.runtime.service import Runtime
from trader.runtime.snapshots import KEY_PREFIX
from trader.services.execution_router import ExecutionRouter

pytestmark = pytest.mark.integration


def _order(n: int, action: str = "new") -> VenueOrder:
    return VenueOrder(
        action=action,  # type: ignore[arg-type]
        client_order_id=f"o{n}",
        venue_client_id=f"o{n}",
        strategy="s1",
        account="acc",
        venue="",
        symbol="BTCUSDT",
        side="buy",
        quantity=D(1),
        timestamp=1_732_406_400_000 + n,
    )


async def _runtime(url: str) -> Runtime:
    rt = Runtime("execution-router", Settings())
    rt.nc = await connect_nats(url, "execution-router")
    assert rt.nc is not None
    rt._js = rt.nc.jetstream()
    return rt


async def _send(rt: Runtime, orders: list[VenueOrder]) -> None:
    out = [
        Outgoing("exec.route.s1", encode(o), msg_id=f"{o.client_order_id}:{o.action}:route") for o in orders
    ]
    assert (await rt.publish_reliably(out)).stored == len(out)


async def _until(check: Callable[[], bool], what: str, timeout: float = 20) -> None:
    deadline = time.monotonic() + timeout
    while not check():
        assert time.monotonic() < deadline, f"timed out waiting for {what}"
        await asyncio.sleep(0.05)


async def _answers(rt: Runtime) -> list[int]:
    """The route message each stored answer answers (its ``Trader-Source-Seq``), in stream order."""
    info = await rt.js.stream_info("EXEC")
    sources = []
    for seq in range(1, info.state.last_seq + 1):
        message = await rt.js.get_msg("EXEC", seq)
        if message.subject.startswith(("exec.order.", "exec.report.")):
            sources.append(int((message.headers or {})[SOURCE_SEQ]))
    return sources


async def _route_seqs(rt: Runtime) -> list[int]:
    info = await rt.js.stream_info("EXEC")
    seqs = []
    for seq in range(1, info.state.last_seq + 1):
        if (await rt.js.get_msg("EXEC", seq)).subject.startswith("exec.route."):
            seqs.append(seq)
    return seqs


class Running:
    def __init__(self, service: ExecutionRouter, rt: Runtime, task: asyncio.Task[None]) -> None:
        self.service, self.rt, self.task = service, rt, task

    @property
    def decisions(self) -> dict[str, str]:
        assert self.service.state is not None
        return dict(self.service.state.router.decisions)

    async def stop(self) -> None:
        self.rt.request_stop()
        await asyncio.wait_for(self.task, 20)
        await self.service.stop(self.rt)
        assert self.rt.nc is not None
        await self.rt.nc.close()

    async def die(self) -> None:
        """As a SIGKILL leaves it: no last snapshot, the connection gone."""
        self.task.cancel()
        await asyncio.gather(self.task, return_exceptions=True)
        assert self.rt.nc is not None
        await self.rt.nc.close()


async def _router(url: str) -> Running:
    rt = await _runtime(url)
    service = ExecutionRouter(rt.settings)
    await service.start(rt)
    running = Running(service, rt, asyncio.create_task(service.run(rt)))
    await _until(lambda: service.ready_checks() == {"execution-router": True}, "the router ready")
    return running


async def _answered_once(rt: Runtime) -> None:
    """Every route message answered, none twice."""

    async def check() -> bool:
        return sorted(await _answers(rt)) == await _route_seqs(rt)

    deadline = time.monotonic() + 20
    while not await check():
        assert time.monotonic() < deadline, (await _answers(rt), await _route_seqs(rt))
        await asyncio.sleep(0.1)
    await asyncio.sleep(0.5)  # an answer repeated would be stored by now
    answers = await _answers(rt)
    assert len(answers) == len(set(answers)) == len(await _route_seqs(rt))


@pytest.fixture
async def url(restartable_nats: RestartableNats) -> str:
    rt = await _runtime(restartable_nats.url)
    await rt.js.add_stream(StreamConfig(name="EXEC", subjects=["exec.>"], duplicate_window=0.2))
    await rt.js.add_stream(StreamConfig(name="DLQ", subjects=["dlq.>"]))
    await ensure_state_bucket(rt.js)
    assert rt.nc is not None
    await rt.nc.close()
    return restartable_nats.url


async def test_the_router_restarts_from_its_snapshot_and_answers_each_route_message_once(url: str) -> None:
    sender = await _runtime(url)
    await _send(sender, [_order(n) for n in range(1, 21)])  # before the router ever ran
    first = await _router(url)
    await _answered_once(sender)  # answered once caught up
    await _send(sender, [_order(n) for n in range(21, 31)])  # live
    await _answered_once(sender)
    await first.stop()  # the last snapshot
    await _send(sender, [_order(n) for n in range(31, 36)] + [_order(3, "cancel")])  # while down

    second = await _router(url)
    state = second.service.state
    assert state is not None
    assert state.exec.snapshot_problem is None
    assert state.exec.start_seq > 20  # from the snapshot, not the start of the stream
    await _answered_once(sender)
    decisions = second.decisions
    assert decisions == {f"o{n}": "paper" for n in range(1, 36)}
    await _send(sender, [_order(n) for n in range(36, 39)])
    await _answered_once(sender)
    await second.die()  # no last snapshot: the next start replays more of the tail

    third = await _router(url)
    await _answered_once(sender)
    assert third.decisions == {f"o{n}": "paper" for n in range(1, 39)}
    await third.stop()

    # The snapshot spoiled: a full replay, the same decisions, nothing answered again.
    kv = await sender.js.key_value(STATE_BUCKET)
    await kv.put(KEY_PREFIX + "execution-router", b"\x00 not a snapshot")
    fourth = await _router(url)
    state = fourth.service.state
    assert state is not None
    assert (state.exec.start_seq, state.exec.snapshot_problem is not None) == (1, True)
    await _answered_once(sender)
    assert fourth.decisions == {f"o{n}": "paper" for n in range(1, 39)}
    routed = [
        msgspec.json.decode((await sender.js.get_msg("EXEC", s)).data, type=VenueOrder)
        for s in range(1, (await sender.js.stream_info("EXEC")).state.last_seq + 1)
        if (await sender.js.get_msg("EXEC", s)).subject == "exec.order.paper"
    ]
    assert sorted((o.client_order_id, o.action) for o in routed if o.action == "cancel") == [("o3", "cancel")]
    await fourth.stop()
    assert sender.nc is not None
    await sender.nc.close()
