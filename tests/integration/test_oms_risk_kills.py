"""The oms and risk killed (SIGKILL) at the points where a crash must lose nothing and apply nothing
twice, on a real nats-server, each run as its own process (``trader service run``) paused there by
``TEST_PAUSE_TRADER`` (``trader.runtime.pauses``): between a batch's outputs and its checkpoint, in the
replay of the history at start, and in the write of a snapshot. Restarted, each comes back with the
state of a full replay: the oms's book (its last snapshot) is the book of every order state published,
every fill counted once; risk decided each request once and its post-trade watch is that of every PnL."""

from __future__ import annotations

import asyncio
import json
import signal
import subprocess
import sys
import time
from collections.abc import Iterator
from decimal import Decimal as D
from pathlib import Path
from typing import Any

import httpx
import msgspec
import pytest
from nats.js import JetStreamContext

from tests.stack_helpers import Stack, nats_only
from trader.bus.connection import connect_nats
from trader.bus.read import Stored, replay_messages
from trader.bus.streams import EXEC_ID_HEADER, STATE_BUCKET, ensure_streams
from trader.messages import ExecutionReport, Order, OrderRequest, PnlSnapshot, RiskDecision, encode
from trader.orders import OrderBook
from trader.orders.book import BookState
from trader.risk import PostTradeRisk
from trader.risk.post_trade import CHECKPOINT_VERSION, PostTradeCheckpoint, post_trade_checkpoint
from trader.runtime import pauses
from trader.runtime.snapshots import KEY_PREFIX, SnapshotStore
from trader.services.oms import STATE_VERSION
from trader.services.risk import LEGACY_POST_TRADE_KEY

pytestmark = pytest.mark.integration

NOW = time.time_ns() // 1_000_000
LONG = 60  # seconds a paused service waits: it is killed long before


class Process:
    """One run of a service as its own process, its JSON log in a file."""

    def __init__(self, stack: Stack, name: str, log: Path, pause: str = "") -> None:
        env = dict(stack.env)
        if pause:
            env[pauses.ENV] = f"{pause}:{LONG}"
        self.stack, self.name, self.log = stack, name, log
        self._out = log.open("w")
        self.process = subprocess.Popen(
            [sys.executable, "-m", "trader", "service", "run", name],
            env=env,
            stdout=self._out,
            stderr=subprocess.STDOUT,
        )

    def kill_if_running(self) -> None:
        """What a test's ``finally`` does: a failure leaves no process running."""
        if self.process.poll() is None:
            self.process.kill()
            self.process.wait(10)

    def events(self, event: str) -> list[dict[str, Any]]:
        found = []
        for line in self.log.read_text(errors="replace").splitlines():
            try:
                entry = json.loads(line)
            except json.JSONDecodeError:
                continue
            if isinstance(entry, dict) and entry.get("event") == event:
                found.append(entry)
        return found

    async def logged(self, event: str, count: int = 1, timeout: float = 60) -> list[dict[str, Any]]:
        deadline = time.monotonic() + timeout
        while len(found := self.events(event)) < count:
            assert self.process.poll() is None, f"{self.name} ended:\n{self.log.read_text()[-3000:]}"
            assert time.monotonic() < deadline, f"no {event} x{count}:\n{self.log.read_text()[-3000:]}"
            await asyncio.sleep(0.05)
        return found

    async def ready(self, timeout: float = 60) -> None:
        url = f"http://127.0.0.1:{self.stack.ports[self.name]}/ready"
        deadline = time.monotonic() + timeout
        async with httpx.AsyncClient() as client:
            while True:
                assert self.process.poll() is None, f"{self.name} ended:\n{self.log.read_text()[-3000:]}"
                try:
                    if (await client.get(url, timeout=1)).status_code == 200:
                        return
                except httpx.HTTPError:
                    pass
                assert time.monotonic() < deadline, f"{self.name} not ready:\n{self.log.read_text()[-3000:]}"
                await asyncio.sleep(0.1)

    def kill(self) -> None:
        self.process.send_signal(signal.SIGKILL)
        self.process.wait(10)
        self._out.close()

    def stop(self) -> int:
        self.process.send_signal(signal.SIGTERM)
        code = self.process.wait(30)
        self._out.close()
        return code


@pytest.fixture
def stack(tmp_path: Path) -> Iterator[Stack]:
    with nats_only(tmp_path) as running:
        yield running


async def _until(check: Any, what: str, timeout: float = 30) -> None:
    deadline = time.monotonic() + timeout
    while not await check():
        assert time.monotonic() < deadline, f"timed out waiting for {what}"
        await asyncio.sleep(0.1)


# The oms ------------------------------------------------------------------------------------------


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
    return RiskDecision(request=request, approved=not denied, reason="denied" if denied else None)


APPROVED = [n for n in range(1, 21) if n % 7]


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


async def _decide(js: JetStreamContext, numbers: list[int]) -> None:
    for n in numbers:
        await js.publish("order.risk.s1", encode(_decision(n)), headers={"Nats-Msg-Id": f"d{n}"})


async def _report_all(js: JetStreamContext, numbers: list[int], kind: str) -> None:
    for n in numbers:
        await js.publish("exec.report.paper", encode(_report(n, kind)), headers={"Nats-Msg-Id": f"{kind}{n}"})


async def _states(js: JetStreamContext) -> list[Stored]:
    return await replay_messages(js, "ORDERS", "order.state.>")


def _full_replay(states: list[Stored]) -> OrderBook:
    book = OrderBook()
    for stored in states:
        book.apply_state(
            msgspec.json.decode(stored.data, type=Order), (stored.headers or {}).get(EXEC_ID_HEADER)
        )
    return book


def _whole(state: BookState) -> tuple[object, ...]:
    return (
        sorted(state.orders, key=lambda order: order.client_order_id),
        sorted(state.forgotten),
        sorted(state.exec_ids),
    )


async def _exec_states(js: JetStreamContext, count: int) -> bool:
    states = await _states(js)
    return sum(1 for m in states if m.headers and EXEC_ID_HEADER in m.headers) >= count


async def test_the_oms_killed_at_every_point_comes_back_with_the_book_of_a_full_replay(
    stack: Stack, tmp_path: Path
) -> None:
    nc = await connect_nats(stack.nats_url, "test")
    assert nc is not None
    js = nc.jetstream()
    try:
        # Killed after a batch of decisions' states and routes are stored, before its checkpoint.
        await ensure_streams(js, stack.settings())
        await _decide(js, list(range(1, 21)))
        oms = Process(stack, "oms", tmp_path / "oms-1.log", pause=pauses.BEFORE_CHECKPOINT)
        await oms.logged("test.paused")
        oms.kill()
        assert await _states(js), "the batch's outputs were stored before the kill"

        # The decisions come again (repeats, or the rest of them); then a batch of reports is killed
        # before its checkpoint.
        oms = Process(stack, "oms", tmp_path / "oms-2.log", pause=pauses.BEFORE_CHECKPOINT)
        await oms.logged("test.paused")
        await _report_all(js, APPROVED, "accepted")
        await _report_all(js, APPROVED[:8], "fill")
        await oms.logged("test.paused", count=2)
        oms.kill()

        # Killed in the replay of its states at start.
        oms = Process(stack, "oms", tmp_path / "oms-3.log", pause=pauses.IN_REPLAY)
        await oms.logged("test.paused")
        oms.kill()

        # Killed writing its last snapshot, at a graceful stop.
        oms = Process(stack, "oms", tmp_path / "oms-4.log", pause=pauses.IN_SNAPSHOT_WRITE)
        await oms.ready()
        await _report_all(js, APPROVED[8:12], "fill")
        await _until(lambda: _exec_states(js, len(APPROVED) + 12), "more fills' states")
        oms.process.send_signal(signal.SIGTERM)
        await oms.logged("test.paused")
        oms.kill()

        # Whole again: the rest of the fills, then a graceful stop and its snapshot.
        oms = Process(stack, "oms", tmp_path / "oms-5.log")
        await oms.ready()
        await _report_all(js, APPROVED[12:], "fill")
        await _until(lambda: _exec_states(js, 2 * len(APPROVED)), "the last fills' states")
        await asyncio.sleep(1)  # anything applied twice would show by now
        assert oms.stop() == 0

        states = await _states(js)
        loaded = await SnapshotStore(js, "oms").load(BookState, STATE_VERSION)
        assert loaded is not None
        assert loaded.covers["ORDERS"] == (await js.stream_info("ORDERS")).state.last_seq
        assert _whole(loaded.state) == _whole(_full_replay(states).snapshot())
        filled = {o.client_order_id: o.filled_quantity for o in loaded.state.orders}
        assert filled == {f"s1-{n:04d}": D(n in APPROVED) for n in range(1, 21)}, (
            "a fill lost or counted twice"
        )
        exec_ids = [m.headers[EXEC_ID_HEADER] for m in states if m.headers and EXEC_ID_HEADER in m.headers]
        assert len(exec_ids) == len(set(exec_ids)) == 2 * len(APPROVED), "a report applied twice or lost"
        versions: dict[str, list[int]] = {}
        for m in states:
            order = msgspec.json.decode(m.data, type=Order)
            versions.setdefault(order.client_order_id, []).append(order.version)
        assert all(v == list(range(v[0], v[0] + len(v))) for v in versions.values()), versions
        routes = await replay_messages(js, "EXEC", ["exec.route.>", "exec.order.>"])
        assert sorted(msgspec.json.decode(m.data)["client_order_id"] for m in routes) == [
            f"s1-{n:04d}" for n in APPROVED
        ], "an order routed twice or not at all"
    finally:
        await nc.close()


# Risk ---------------------------------------------------------------------------------------------


def _request(n: int) -> OrderRequest:
    return OrderRequest(
        client_order_id=f"r-{n:04d}", strategy="s1", symbol="BTCUSDT", side="buy", quantity=D("0.01")
    )


def _pnl(total: str, n: int) -> PnlSnapshot:
    value = D(total)
    return PnlSnapshot(
        scope="total", realized=value, unrealized=D(0), fees=D(0), total=value, timestamp=NOW + n
    )


PNL = ["0", "120", "90", "150", "140", "60", "75"]


async def test_risk_killed_at_every_point_decides_each_request_once_and_watches_every_pnl(
    stack: Stack, tmp_path: Path
) -> None:
    nc = await connect_nats(stack.nats_url, "test")
    assert nc is not None
    js = nc.jetstream()
    try:
        # Killed after a batch of decisions is stored, before its checkpoint.
        await ensure_streams(js, stack.settings())
        for n in range(1, 11):
            await js.publish("order.submit.s1", encode(_request(n)), headers={"Nats-Msg-Id": f"r{n}"})
        risk = Process(stack, "risk", tmp_path / "risk-1.log", pause=pauses.BEFORE_CHECKPOINT)
        await risk.logged("test.paused")
        risk.kill()
        first = {m.seq: m.data for m in await replay_messages(js, "ORDERS", "order.risk.s1")}
        assert first, "the batch's decisions were stored before the kill"

        # The requests come again (decided again under the same ids: stored once); then killed in the
        # write of the post-trade watch's snapshot.
        risk = Process(stack, "risk", tmp_path / "risk-2.log", pause=pauses.IN_SNAPSHOT_WRITE)
        await risk.ready()
        for n, total in enumerate(PNL[:4]):
            await js.publish("pnl.total", encode(_pnl(total, n)), headers={"Nats-Msg-Id": f"p{n}"})
        await risk.logged("test.paused")
        risk.kill()

        # Killed in the replay of the PnL at start (no snapshot was stored: all of it).
        for n, total in enumerate(PNL[4:], start=4):
            await js.publish("pnl.total", encode(_pnl(total, n)), headers={"Nats-Msg-Id": f"p{n}"})
        risk = Process(stack, "risk", tmp_path / "risk-3.log", pause=pauses.IN_REPLAY)
        await risk.logged("test.paused")
        risk.kill()

        # Whole again: its watch is that of every PnL, at start and in the snapshot of its stop.
        risk = Process(stack, "risk", tmp_path / "risk-4.log")
        await risk.ready()
        watch = PostTradeRisk(stack.settings().risk)
        last = PostTradeCheckpoint()
        for stored in await replay_messages(js, "PNL", "pnl.total"):
            snapshot = msgspec.json.decode(stored.data, type=PnlSnapshot)
            watch.on_pnl(snapshot)
            last = post_trade_checkpoint(watch, stored.seq, snapshot)
        assert last.peak == D(150)
        [ready] = risk.events("risk.ready")
        assert ready["post_trade"]["seq"] == last.seq
        assert str(ready["post_trade"]["peak"]).removeprefix("Decimal('").rstrip("')") == str(last.peak)
        assert risk.stop() == 0
        loaded = await SnapshotStore(js, "risk").load(PostTradeCheckpoint, CHECKPOINT_VERSION)
        assert loaded is not None
        assert (loaded.state, loaded.covers["PNL"]) == (last, last.seq)

        decisions = await replay_messages(js, "ORDERS", "order.risk.s1")
        assert first.items() <= {m.seq: m.data for m in decisions}.items(), "a decision changed"
        ids = [msgspec.json.decode(m.data, type=RiskDecision).request.client_order_id for m in decisions]
        assert sorted(ids) == [f"r-{n:04d}" for n in range(1, 11)]
    finally:
        await nc.close()


async def test_risk_upgraded_from_the_checkpoint_of_before_goes_on_from_it(
    stack: Stack, tmp_path: Path
) -> None:
    nc = await connect_nats(stack.nats_url, "test")
    assert nc is not None
    js = nc.jetstream()
    try:
        risk = Process(stack, "risk", tmp_path / "risk-0.log")  # the streams and bucket made
        await risk.ready()
        assert risk.stop() == 0
        await (await js.key_value(STATE_BUCKET)).delete(KEY_PREFIX + "risk")
        for n, total in enumerate(PNL):
            await js.publish("pnl.total", encode(_pnl(total, n)), headers={"Nats-Msg-Id": f"p{n}"})
        # What the risk of before had kept: it had seen the first five (a peak of 150, then 140).
        watch = PostTradeRisk(stack.settings().risk)
        stored = await replay_messages(js, "PNL", "pnl.total")
        for message in stored[:5]:
            watch.on_pnl(msgspec.json.decode(message.data, type=PnlSnapshot))
        seen = msgspec.json.decode(stored[4].data, type=PnlSnapshot)
        before = post_trade_checkpoint(watch, stored[4].seq, seen)
        await (await js.key_value(STATE_BUCKET)).put(LEGACY_POST_TRADE_KEY, encode(before))

        risk = Process(stack, "risk", tmp_path / "risk-1.log")
        await risk.ready()
        [adopted] = risk.events("risk.adopted_legacy_checkpoint")
        assert adopted["seq"] == before.seq
        pnl_start = [e for e in risk.events("intake.started") if e.get("input") == "risk-pnl"]
        assert [e["start_seq"] for e in pnl_start] == [before.seq + 1]  # only the two after it
        assert risk.stop() == 0
        for message in stored[5:]:
            watch.on_pnl(msgspec.json.decode(message.data, type=PnlSnapshot))
        last = msgspec.json.decode(stored[-1].data, type=PnlSnapshot)
        loaded = await SnapshotStore(js, "risk").load(PostTradeCheckpoint, CHECKPOINT_VERSION)
        assert loaded is not None
        assert loaded.state == post_trade_checkpoint(watch, stored[-1].seq, last)
    finally:
        await nc.close()
