"""``trader.runtime.intake`` on a real nats-server: each mode, restarts, dead letters, acknowledgements
after outputs, and snapshots (kept whole, in the object store, corrupt, of another schema version).

Each test is a small service of its own: items (``{"name", "quantity"}``) on ``items.<name>`` of the
stream ITEMS, outputs on ``out.<...>`` (stream OUT), dead letters on DLQ, as the services' streams are.
"""

from __future__ import annotations

import asyncio
import contextlib
import time
from collections.abc import Callable
from dataclasses import dataclass
from decimal import Decimal as D
from typing import Any

import msgspec
import pytest
from nats.js.api import StreamConfig
from nats.js.errors import NotFoundError

from tests.stack_helpers import RestartableNats
from trader.bus import dlq
from trader.bus.connection import connect_nats
from trader.bus.publish import Outgoing
from trader.bus.streams import STATE_BUCKET, ensure_state_bucket
from trader.config import Settings
from trader.marketdata.decode import InvalidMessage
from trader.runtime.intake import Input, Intake, Mode, Received, checkpoint_key, read_once
from trader.runtime.service import Runtime
from trader.runtime.snapshots import KEY_PREFIX, Snapshotting

pytestmark = pytest.mark.integration


class Item(msgspec.Struct, frozen=True):
    name: str
    quantity: D


class Totals(msgspec.Struct):
    """The state of the history tests: the sum of the quantities per name, and how many items."""

    sums: dict[str, D] = msgspec.field(default_factory=dict)
    count: int = 0


@pytest.fixture
async def url(restartable_nats: RestartableNats) -> str:
    rt = await _runtime(restartable_nats.url)
    for name, subjects in (("ITEMS", ["items.>"]), ("OUT", ["out.>"]), ("DLQ", ["dlq.>"])):
        await rt.js.add_stream(StreamConfig(name=name, subjects=subjects, duplicate_window=120))
    await ensure_state_bucket(rt.js)
    await _close(rt)
    return restartable_nats.url


async def _runtime(url: str, name: str = "svc") -> Runtime:
    rt = Runtime(name, Settings())
    rt.nc = await connect_nats(url, name)
    assert rt.nc is not None
    rt._js = rt.nc.jetstream()
    return rt


async def _close(rt: Runtime) -> None:
    assert rt.nc is not None
    await rt.nc.close()


async def _publish(rt: Runtime, items: list[tuple[str, str]], raw: list[bytes] | None = None) -> None:
    out = [
        Outgoing(f"items.{name}", msgspec.json.encode({"name": name, "quantity": quantity}))
        for name, quantity in items
    ]
    out += [Outgoing("items.raw", data) for data in raw or []]
    result = await rt.publish_reliably(out)
    assert result.stored == len(out)


async def _until(check: Callable[[], bool], what: str, timeout: float = 20) -> None:
    deadline = time.monotonic() + timeout
    while not check():
        assert time.monotonic() < deadline, f"timed out waiting for {what}"
        await asyncio.sleep(0.05)


async def _stored(rt: Runtime, stream: str) -> list[tuple[str, dict[str, str], bytes]]:
    state = (await rt.js.stream_info(stream)).state
    out = []
    for seq in range(max(state.first_seq, 1), state.last_seq + 1):
        with contextlib.suppress(NotFoundError):
            msg = await rt.js.get_msg(stream, seq)
            out.append((msg.subject, msg.headers or {}, msg.data or b""))
    return out


@dataclass
class Running:
    """An intake started and running as a service runs it."""

    rt: Runtime
    intake: Intake[Any]
    task: asyncio.Task[None]

    async def stop(self) -> None:
        """A graceful stop: intake stops, the work in hand is finished, the last snapshot taken."""
        self.rt.request_stop()
        await asyncio.wait_for(self.task, 20)
        await self.intake.stop()
        await _close(self.rt)


async def _run(url: str, source: Input[Any], handle: Any, **options: Any) -> Running:
    rt = await _runtime(url)
    intake = Intake(rt, source, handle, **options)
    await intake.start()
    return Running(rt, intake, asyncio.create_task(intake.run()))


def _recorder(seen: list[tuple[int, Item]]) -> Callable[[Received[Item]], list[Outgoing]]:
    def handle(message: Received[Item]) -> list[Outgoing]:
        if message.value.quantity < 0:
            raise InvalidMessage("quantity", "must not be negative")
        seen.append((message.seq, message.value))
        return [Outgoing(f"out.{message.value.name}", message.data, msg_id=f"out:{message.seq}")]

    return handle


WORK = Input("ITEMS", "items.>", Item, Mode.WORK)


# WORK ---------------------------------------------------------------------------------------------


async def test_work_takes_every_message_exactly_once_across_a_restart(url: str) -> None:
    publisher = await _runtime(url, "publisher")
    await _publish(publisher, [(f"n{i}", str(i)) for i in range(1, 51)])
    seen: list[tuple[int, Item]] = []
    first = await _run(url, WORK, _recorder(seen))
    await _until(lambda: len(seen) >= 50, "the first 50")
    await first.stop()
    await _publish(publisher, [(f"n{i}", str(i)) for i in range(51, 81)])

    second = await _run(url, WORK, _recorder(seen))
    assert second.intake.start_seq == 51  # from its own checkpoint
    await _until(lambda: len(seen) >= 80, "all 80")
    await _publish(publisher, [("n81", "81")])  # live
    await _until(lambda: len(seen) >= 81, "the live one")
    await second.stop()

    assert [seq for seq, _ in seen] == list(range(1, 82))
    assert [item.quantity for _, item in seen] == [D(i) for i in range(1, 82)]
    outputs = await _stored(publisher, "OUT")
    assert sorted(int(h["Nats-Msg-Id"].split(":")[1]) for _, h, _ in outputs) == list(range(1, 82))
    kv = await publisher.js.key_value(STATE_BUCKET)
    assert (await kv.get(checkpoint_key("svc", "svc"))).value == b"81"
    await _close(publisher)


async def test_work_acknowledges_and_checkpoints_only_after_the_outputs_are_stored(url: str) -> None:
    publisher = await _runtime(url, "publisher")
    await _publish(publisher, [("a", "1"), ("b", "2")])

    def to_nowhere(message: Received[Item]) -> list[Outgoing]:
        return [Outgoing("nowhere.at.all", message.data, msg_id=f"x:{message.seq}")]  # no stream stores it

    stuck = await _run(url, WORK, to_nowhere)
    await _until(lambda: stuck.rt.metrics.count_errors_total >= 3, "three failed publishes")
    info = await publisher.js.consumer_info("ITEMS", "svc")
    assert info.ack_floor is not None
    assert info.ack_floor.stream_seq == 0
    kv = await publisher.js.key_value(STATE_BUCKET)
    with pytest.raises(NotFoundError):
        await kv.get(checkpoint_key("svc", "svc"))
    stuck.task.cancel()  # as a crash would: the outputs never stored
    with contextlib.suppress(asyncio.CancelledError):
        await stuck.task
    await _close(stuck.rt)

    seen: list[tuple[int, Item]] = []
    again = await _run(url, WORK, _recorder(seen))
    await _until(lambda: len(seen) >= 2, "the same two again")
    await again.stop()
    assert [seq for seq, _ in seen] == [1, 2]
    assert len(await _stored(publisher, "OUT")) == 2
    await _close(publisher)


async def test_work_after_a_crash_between_outputs_and_checkpoint_stores_the_outputs_once(url: str) -> None:
    publisher = await _runtime(url, "publisher")
    seen: list[tuple[int, Item]] = []
    crashing = await _run(url, WORK, _recorder(seen))
    await publisher.js.delete_key_value(STATE_BUCKET)  # from now on the checkpoint cannot be written
    await _publish(publisher, [("a", "1"), ("b", "2"), ("c", "3")])
    await _until(lambda: crashing.rt.metrics.count_errors_total >= 2, "two failed checkpoints")
    handled = len(seen)  # the first batch: one message or more
    assert len(await _stored(publisher, "OUT")) == handled  # its outputs were stored first
    crashing.task.cancel()  # a crash before the checkpoint
    with contextlib.suppress(asyncio.CancelledError):
        await crashing.task
    await _close(crashing.rt)
    assert (await publisher.js.consumer_info("ITEMS", "svc")).ack_floor.stream_seq == 0

    await ensure_state_bucket(publisher.js)
    again = await _run(url, WORK, _recorder(seen))
    assert again.intake.start_seq == 1
    await _until(lambda: len(seen) >= handled + 3, "the batch again, and the rest")
    await again.stop()
    assert [seq for seq, _ in seen[handled:]] == [1, 2, 3]  # the first batch handled twice, and
    outputs = await _stored(publisher, "OUT")
    assert [h["Nats-Msg-Id"] for _, h, _ in outputs] == ["out:1", "out:2", "out:3"]  # stored once
    await _close(publisher)


async def test_what_cannot_be_taken_goes_to_the_dead_letters_with_its_bytes_and_reason(url: str) -> None:
    publisher = await _runtime(url, "publisher")
    await _publish(publisher, [("a", "1"), ("neg", "-1")], raw=[b'{"name": "x", "quantity": [1]}', b"{oops"])
    seen: list[tuple[int, Item]] = []
    running = await _run(url, WORK, _recorder(seen))
    await _until(lambda: running.rt.metrics.count_in_total >= 4, "every message counted")
    await running.stop()
    assert [seq for seq, _ in seen] == [1]
    letters = await _stored(publisher, "DLQ")
    assert [(subject, data) for subject, _, data in letters] == [
        ("dlq.svc.items.neg", b'{"name":"neg","quantity":"-1"}'),
        ("dlq.svc.items.raw", b'{"name": "x", "quantity": [1]}'),
        ("dlq.svc.items.raw", b"{oops"),
    ]
    reasons = [(h[dlq.STREAM_SEQ], h[dlq.REASON]) for _, h, _ in letters]
    assert reasons[0] == ("2", "quantity: must not be negative")
    assert [seq for seq, _ in reasons] == ["2", "3", "4"]
    assert reasons[1][1].startswith("quantity: Expected `decimal`")
    assert reasons[2][1].startswith("body: malformed JSON")
    assert running.rt.metrics.count_dead_total == 3
    await _close(publisher)


# LATEST -------------------------------------------------------------------------------------------


async def test_latest_takes_the_latest_of_each_subject_then_every_new_one(url: str) -> None:
    publisher = await _runtime(url, "publisher")
    await _publish(publisher, [("a", "1"), ("b", "1"), ("a", "2"), ("a", "3"), ("b", "2")])
    seen: list[tuple[int, Item]] = []
    running = await _run(url, Input("ITEMS", "items.>", Item, Mode.LATEST), _recorder(seen))
    await _until(lambda: running.intake.caught_up, "caught up")
    assert running.intake.ready_checks() == {"svc": True}
    assert sorted((item.name, item.quantity) for _, item in seen) == [("a", D(3)), ("b", D(2))]
    await _publish(publisher, [("a", "4")])
    await _until(lambda: len(seen) >= 3, "the live one")
    await running.stop()
    assert seen[-1][1] == Item("a", D(4))
    await _close(publisher)


# ONCE ---------------------------------------------------------------------------------------------


async def test_once_reads_a_window_of_sequences_or_from_a_time_decoded_and_nothing_after_it(url: str) -> None:
    rt = await _runtime(url)
    await _publish(rt, [("a", "1"), ("b", "2"), ("a", "3")], raw=[b'{"name": 1}'])  # seq 1-4
    await asyncio.sleep(0.05)  # the next ones arrive in a later millisecond
    await _publish(rt, [("a", "5"), ("b", "6"), ("a", "7"), ("b", "8")])  # seq 5-8
    once = Input("ITEMS", ("items.a", "items.raw"), Item, Mode.ONCE)

    by_seq = await read_once(rt, once, after=1, upto=6)
    assert [(r.seq, r.value) for r in by_seq.received] == [(3, Item("a", D(3))), (5, Item("a", D(5)))]
    assert [(r.seq, r.data, r.field) for r in by_seq.refused] == [(4, b'{"name": 1}', "name")]

    since = by_seq.received[1].arrival_ms  # that of seq 5
    by_time = await read_once(rt, once, since_ms=since)
    assert [r.seq for r in by_time.received] == [5, 7]
    assert by_time.refused == []
    assert (await read_once(rt, once, after=8)).received == []  # nothing after the stream's end
    assert (await read_once(rt, once, since_ms=since + 3_600_000)).received == []  # none stored since
    assert await _stored(rt, "DLQ") == []  # a read once sends no dead letters
    await _close(rt)


# HISTORY and snapshots ----------------------------------------------------------------------------


class Counter:
    """A stateful service of the tests: totals per name, snapshotted."""

    def __init__(self, *, version: int = 1, inline_limit: int | None = None) -> None:
        self.totals = Totals()
        self.seen: list[int] = []
        self.caught_up_at: int | None = None
        self.snapshots = Snapshotting(
            key="counter",
            state_type=Totals,
            version=version,
            take=lambda: msgspec.structs.replace(self.totals, sums=dict(self.totals.sums)),
            restore=self.restore,
            every_messages=5,
            every_s=3600,
            inline_limit=inline_limit,
        )

    def restore(self, totals: Totals) -> None:
        self.totals = totals

    def handle(self, message: Received[Item]) -> list[Outgoing]:
        self.seen.append(message.seq)
        item = message.value
        self.totals.sums[item.name] = self.totals.sums.get(item.name, D(0)) + item.quantity
        self.totals.count += 1
        return [Outgoing(f"out.{item.name}", message.data, msg_id=f"total:{message.seq}")]

    async def caught_up(self) -> list[Outgoing]:
        self.caught_up_at = self.seen[-1] if self.seen else 0
        return []

    async def run(self, url: str) -> Running:
        source = Input("ITEMS", "items.>", Item, Mode.HISTORY)
        return await _run(url, source, self.handle, on_caught_up=self.caught_up, snapshots=self.snapshots)


def _items(first: int, count: int) -> list[tuple[str, str]]:
    return [("ab"[i % 2], str(i)) for i in range(first, first + count)]


def _full(count: int) -> Totals:
    totals = Totals()
    for name, quantity in _items(1, count):
        totals.sums[name] = totals.sums.get(name, D(0)) + D(quantity)
    totals.count = count
    return totals


async def _history_then_restart(url: str, **counter: Any) -> tuple[Counter, Running]:
    """20 items taken (snapshotted at the stop), 5 more published; then a new counter started."""
    publisher = await _runtime(url, "publisher")
    await _publish(publisher, _items(1, 20))
    before = Counter(**counter)
    first = await before.run(url)
    await _until(lambda: len(before.seen) >= 20, "the first 20")
    assert before.caught_up_at == 20
    await first.stop()
    await _publish(publisher, _items(21, 5))
    await _close(publisher)
    after = Counter(**counter)
    return after, await after.run(url)


@pytest.mark.parametrize("inline_limit", [None, 0], ids=["key-value", "object-store"])
async def test_history_restarts_from_its_snapshot_and_takes_only_what_came_after(
    url: str, inline_limit: int | None
) -> None:
    after, running = await _history_then_restart(url, inline_limit=inline_limit)
    await _until(lambda: running.intake.caught_up, "caught up")
    assert (running.intake.start_seq, running.intake.snapshot_problem) == (21, None)
    assert after.seen == [21, 22, 23, 24, 25]
    assert after.totals == _full(25)
    # What the stream held at the start rebuilt the state; only what comes after is published.
    publisher = await _runtime(url, "publisher")
    outputs_before = len(await _stored(publisher, "OUT"))
    await _publish(publisher, [("a", "100")])
    await _until(lambda: len(after.seen) >= 6, "the live one")
    await running.stop()
    outputs = await _stored(publisher, "OUT")
    assert outputs_before == 0  # the first run caught up at once: everything it took was history
    assert [h["Nats-Msg-Id"] for _, h, _ in outputs] == ["total:26"]
    store = running.intake._store
    assert store is not None
    assert store.stored_in == ("object" if inline_limit == 0 else "inline")
    await _close(publisher)


async def test_a_corrupt_snapshot_means_a_full_replay(url: str) -> None:
    publisher = await _runtime(url, "publisher")
    await _publish(publisher, _items(1, 20))
    before = Counter()
    first = await before.run(url)
    await _until(lambda: len(before.seen) >= 20, "the first 20")
    await first.stop()
    kv = await publisher.js.key_value(STATE_BUCKET)
    entry = await kv.get(KEY_PREFIX + "counter")
    await kv.put(KEY_PREFIX + "counter", (entry.value or b"")[:-7])  # cut short
    after = Counter()
    running = await after.run(url)
    await _until(lambda: running.intake.caught_up, "caught up")
    await running.stop()
    assert running.intake.start_seq == 1
    assert "corrupt" in (running.intake.snapshot_problem or "")
    assert after.seen == list(range(1, 21))
    assert after.totals == _full(20)
    await _close(publisher)


async def test_a_snapshot_of_another_schema_version_means_a_full_replay(url: str) -> None:
    publisher = await _runtime(url, "publisher")
    await _publish(publisher, _items(1, 20))
    before = Counter(version=1)
    first = await before.run(url)
    await _until(lambda: len(before.seen) >= 20, "the first 20")
    await first.stop()
    after = Counter(version=2)
    running = await after.run(url)
    await _until(lambda: running.intake.caught_up, "caught up")
    await running.stop()
    assert (running.intake.start_seq, after.seen) == (1, list(range(1, 21)))
    assert "schema version 1" in (running.intake.snapshot_problem or "")
    assert after.totals == _full(20)
    # The stop wrote a snapshot of the new version: the next start uses it.
    again = Counter(version=2)
    third = await again.run(url)
    await _until(lambda: third.intake.caught_up, "caught up")
    await third.stop()
    assert (third.intake.start_seq, again.seen, again.totals) == (21, [], _full(20))
    await _close(publisher)


async def test_a_snapshot_past_the_end_of_the_stream_is_not_used(url: str) -> None:
    publisher = await _runtime(url, "publisher")
    await _publish(publisher, _items(1, 6))
    before = Counter()
    first = await before.run(url)
    await _until(lambda: len(before.seen) >= 6, "the first 6")
    await first.stop()
    # The stream started over (deleted and made again): the snapshot covers messages it no longer has.
    await publisher.js.delete_stream("ITEMS")
    await publisher.js.add_stream(StreamConfig(name="ITEMS", subjects=["items.>"]))
    await _publish(publisher, _items(1, 3))
    after = Counter()
    running = await after.run(url)
    await _until(lambda: running.intake.caught_up, "caught up")
    await running.stop()
    assert "past the stream's last 3" in (running.intake.snapshot_problem or "")
    assert (after.seen, after.totals) == ([1, 2, 3], _full(3))
    await _close(publisher)
