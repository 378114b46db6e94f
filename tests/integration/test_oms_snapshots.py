"""The oms's book from snapshots, on a real nats-server: restarted, it takes its book from its snapshot
and only the states published after it, and the book is that of a full replay of the states; without a
usable snapshot it replays them all, with the same result; a decision or report applied before the
snapshot and delivered again is still a repeat."""

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
from trader.bus.read import replay_messages
from trader.bus.streams import EXEC_ID_HEADER, STATE_BUCKET, ensure_state_bucket
from trader.config import Settings
from trader.messages import ExecutionReport, Order, OrderRequest, RiskDecision, encode
from trader.orders import OrderBook
from trader.runtime.intake import checkpoint_key
from trader.runtime.service import Runtime
from trader.runtime.snapshots import KEY_PREFIX
from trader.services.oms import Oms

pytestmark = pytest.mark.integration

NOW = time.time_ns() // 1_000_000  # orders of now: none ended long enough ago to be forgotten


def _decision(n: int) -> RiskDecision:
    request = OrderRequest(
        client_order_id=f"s1-{n:04d}",
        strategy="s1",
        symbol="BTCUSDT",
        side="buy",
        quantity=D("2"),
        type="limit",
        price=D("100"),
        tif="GTC",
        timestamp=NOW + n,
    )
    denied = n % 7 == 0
    return RiskDecision(
        request=request, approved=not denied, reason="denied" if denied else None, timestamp=NOW + n
    )


def _report(n: int, kind: str) -> ExecutionReport:
    fill = {"last_quantity": D("1"), "last_price": D("100")} if kind == "fill" else {}
    return ExecutionReport(
        exec_id=f"{kind}-{n}",
        kind=kind,
        client_order_id=f"s1-{n:04d}",
        strategy="s1",
        account="paper",
        venue="paper",
        symbol="BTCUSDT",
        side="buy",
        timestamp=NOW + n,
        **fill,
    )


async def _runtime(url: str) -> Runtime:
    rt = Runtime("oms", Settings())
    rt.nc = await connect_nats(url, "oms")
    assert rt.nc is not None
    rt._js = rt.nc.jetstream()
    return rt


async def _decide(rt: Runtime, numbers: range, tag: str = "") -> None:
    out = [Outgoing("order.risk.s1", encode(_decision(n)), msg_id=f"d{n}{tag}") for n in numbers]
    assert (await rt.publish_reliably(out)).stored == len(out)


async def _report_all(rt: Runtime, numbers: range, kind: str, tag: str = "") -> None:
    out = [Outgoing("exec.report.paper", encode(_report(n, kind)), msg_id=f"{kind}{n}{tag}") for n in numbers]
    assert (await rt.publish_reliably(out)).stored == len(out)


async def _until(check: Callable[[], bool], what: str, timeout: float = 30) -> None:
    deadline = time.monotonic() + timeout
    while not check():
        assert time.monotonic() < deadline, f"timed out waiting for {what}"
        await asyncio.sleep(0.05)


def _whole(book: OrderBook) -> tuple[object, ...]:
    state = book.snapshot()
    return (
        sorted(state.orders, key=lambda order: order.client_order_id),
        sorted(state.forgotten),
        sorted(state.exec_ids),
        [order.client_order_id for order in book.open_orders()],
    )


async def _full_replay(rt: Runtime) -> OrderBook:
    book = OrderBook()
    for stored in await replay_messages(rt.js, "ORDERS", "order.state.>"):
        exec_id = (stored.headers or {}).get(EXEC_ID_HEADER)
        book.apply_state(msgspec.json.decode(stored.data, type=Order), exec_id)
    return book


class Running:
    def __init__(self, service: Oms, rt: Runtime, task: asyncio.Task[None]) -> None:
        self.service, self.rt, self.task = service, rt, task

    async def stop(self) -> None:
        self.rt.request_stop()
        await asyncio.wait_for(self.task, 20)
        await self.service.stop(self.rt)
        assert self.rt.nc is not None
        await self.rt.nc.close()


async def _oms(url: str) -> Running:
    rt = await _runtime(url)
    service = Oms(rt.settings)
    await service.start(rt)
    assert service.ready_checks() == {"rebuilt": True}  # start returns with the book whole
    return Running(service, rt, asyncio.create_task(service.run(rt)))


def _states(running: Running, count: int) -> Callable[[], bool]:
    return lambda: len(running.service.state.book) == count


def _filled(running: Running, n: int) -> D:
    order = running.service.state.book.get(f"s1-{n:04d}")
    return D(0) if order is None else order.filled_quantity


@pytest.fixture
async def url(restartable_nats: RestartableNats) -> str:
    rt = await _runtime(restartable_nats.url)
    for name, subjects in (("ORDERS", ["order.>"]), ("EXEC", ["exec.>"]), ("DLQ", ["dlq.>"])):
        await rt.js.add_stream(StreamConfig(name=name, subjects=subjects))
    await ensure_state_bucket(rt.js)
    assert rt.nc is not None
    await rt.nc.close()
    return restartable_nats.url


async def test_the_oms_restarts_from_its_snapshot_with_the_book_of_a_full_replay(url: str) -> None:
    publisher = await _runtime(url)
    await _decide(publisher, range(1, 21))
    first = await _oms(url)
    await _until(_states(first, 20), "20 orders")
    await _report_all(publisher, range(1, 21), "accepted")
    await _report_all(publisher, range(1, 11), "fill")
    await _until(lambda: _filled(first, 10) == 1, "the fills")
    covered = (await publisher.js.stream_info("ORDERS")).state.last_seq
    # Its own states read back: the snapshot at its stop covers them all.
    await _until(lambda: first.service.state.states.health_details()["covered_seq"] == covered, "states read")
    await first.stop()
    await _decide(publisher, range(21, 26))  # while the oms is down

    second = await _oms(url)
    states = second.service.state.states
    assert (states.start_seq, states.snapshot_problem) == (covered + 1, None)
    await _until(_states(second, 25), "25 orders")
    # Repeats of decisions and fills from before the snapshot, stored again (past the duplicate window).
    await _decide(publisher, range(5, 7), tag=":again")
    await _report_all(publisher, range(5, 7), "fill", tag=":again")
    await _report_all(publisher, range(11, 13), "fill")
    await _until(lambda: _filled(second, 12) == 1, "more fills")
    await asyncio.sleep(0.5)  # a repeat applied would show by now
    assert (_filled(second, 5), _filled(second, 6)) == (1, 1)
    full = await _full_replay(publisher)
    assert len(full) == 25
    assert _whole(second.service.state.book) == _whole(full)
    await second.stop()

    # The snapshot spoiled: a full replay, and the same book.
    kv = await publisher.js.key_value(STATE_BUCKET)
    await kv.put(KEY_PREFIX + "oms", b"\x00 not a snapshot")
    third = await _oms(url)
    assert third.service.state.states.start_seq == 1
    assert "corrupt" in (third.service.state.states.snapshot_problem or "")
    assert _whole(third.service.state.book) == _whole(await _full_replay(publisher))
    await third.stop()
    assert publisher.nc is not None
    await publisher.nc.close()


async def test_the_oms_ended_abruptly_comes_back_from_a_snapshot_and_its_tail_exactly(
    url: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr("trader.services.oms.SNAPSHOT_EVERY_MESSAGES", 8)  # snapshots along the way
    publisher = await _runtime(url)
    first = await _oms(url)
    await _decide(publisher, range(1, 21))
    await _until(_states(first, 20), "20 orders")
    await _report_all(publisher, range(1, 21), "accepted")
    intake = first.service.state.states
    await _until(lambda: intake.health_details()["snapshot_seq"] != 0, "a snapshot")
    assert intake.snapshots is not None
    intake.snapshots.every_messages = 10**9  # the last one: what comes next is the tail
    snapshot_seq = intake.health_details()["snapshot_seq"]
    await _report_all(publisher, range(1, 16), "fill")
    await _until(lambda: _filled(first, 15) == 1, "the fills")
    # Ended without a stop (no last snapshot, nothing acknowledged lazily after the end): a crash.
    first.task.cancel()
    await asyncio.gather(first.task, return_exceptions=True)
    for task in (first.service.state.states_task, first.service.state.watch_task):
        task.cancel()
        await asyncio.gather(task, return_exceptions=True)
    assert first.rt.nc is not None
    await first.rt.nc.close()
    last = (await publisher.js.stream_info("ORDERS")).state.last_seq

    second = await _oms(url)
    states = second.service.state.states
    assert states.snapshot_problem is None
    assert states.start_seq == snapshot_seq + 1  # type: ignore[operator]
    assert states.start_seq <= last  # a tail after it: the fills' states
    await second.stop()
    # Everything delivered again (its consumers and checkpoints forgotten) changes nothing.
    kv = await publisher.js.key_value(STATE_BUCKET)
    for stream, consumer in (("ORDERS", "oms-orders"), ("EXEC", "oms-reports")):
        await publisher.js.delete_consumer(stream, consumer)
        await kv.delete(checkpoint_key("oms", consumer))
    third = await _oms(url)
    await _report_all(publisher, range(16, 18), "fill")
    await _until(lambda: _filled(third, 17) == 1, "more fills")
    await asyncio.sleep(0.5)  # a repeat applied would show by now
    # Filled once each: the first 17 but the ones risk denied (every 7th).
    assert [_filled(third, n) for n in range(1, 21)] == [D(n <= 17 and n % 7 != 0) for n in range(1, 21)]
    full = await _full_replay(publisher)
    assert _whole(third.service.state.book) == _whole(full)
    states_seen = await replay_messages(publisher.js, "ORDERS", "order.state.>")
    exec_ids = [m.headers[EXEC_ID_HEADER] for m in states_seen if m.headers and EXEC_ID_HEADER in m.headers]
    assert len(exec_ids) == len(set(exec_ids)), "a report was applied twice"
    await third.stop()
    assert publisher.nc is not None
    await publisher.nc.close()
