"""The intake's periodic work (``Periodic``): a service's time-driven work run between two batches, at
most every ``every_s``, before a snapshot is considered, and once more at the stop before the last one."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from types import SimpleNamespace
from typing import Any, cast

import msgspec

from trader.bus.publish import Outgoing
from trader.runtime.consumer import Delivery
from trader.runtime.intake import Input, Intake, Mode, Periodic, Received
from trader.runtime.service import Runtime
from trader.runtime.snapshots import Snapshotting


class Item(msgspec.Struct, frozen=True):
    name: str


class _Consumer:
    """Hands over the given batches (an empty one: a quiet stream's), then ends (the service stops)."""

    caught_up = False

    def __init__(self, batches: list[list[Delivery]], order: list[str]) -> None:
        self._batches, self._order = batches, order

    async def batches(self) -> AsyncIterator[list[Delivery]]:
        for batch in self._batches:
            self._order.append(f"batch {len(batch)}")
            yield batch

    async def ack(self, batch: list[Delivery]) -> None:
        return None

    async def stop_intake(self) -> None:
        self._order.append("consumer stopped")


class _Store:
    stored_in = "kv"

    def __init__(self, order: list[str]) -> None:
        self._order = order

    async def save(self, state: object, covers: dict[str, int], version: int) -> int:
        self._order.append(f"snapshot {covers}")
        return 1


def _intake(order: list[str], every_s: float) -> Intake[Item]:
    async def publish_reliably(outputs: list[Outgoing]) -> None:
        return None

    async def dead_letter(stream: str, refused: list[Any]) -> None:
        return None

    metrics = SimpleNamespace(
        count_in=lambda n: None, observe_batch=lambda s: None, observe_delay=lambda name, s: None
    )
    rt = cast(
        Runtime,
        SimpleNamespace(
            name="svc",
            publish_reliably=publish_reliably,
            dead_letter=dead_letter,
            metrics=metrics,
            log=SimpleNamespace(info=lambda *a, **k: None),
        ),
    )
    applied: list[str] = []

    def handle(message: Received[Item]) -> list[Outgoing]:
        applied.append(message.value.name)
        return []

    async def work() -> None:
        assert intake.lock.locked(), "the periodic work holds the intake's lock"
        order.append(f"periodic after {','.join(applied)}")

    snapshots = Snapshotting(
        key="svc", state_type=list, version=1, take=list, restore=lambda s: None, every_messages=1
    )
    intake = Intake(
        rt,
        Input("ITEMS", "items.>", Item, Mode.HISTORY),
        handle,
        snapshots=snapshots,
        periodic=Periodic(every_s, work),
    )
    intake._store = cast(Any, _Store(order))
    intake.started = intake.caught_up = True
    return intake


def _delivery(seq: int, name: str) -> Delivery:
    return Delivery(seq, 0, "items.a", msgspec.json.encode(Item(name)), None)


async def test_the_periodic_work_runs_between_batches_before_the_snapshot_and_at_the_stop() -> None:
    order: list[str] = []
    intake = _intake(order, every_s=0.0)
    consumer = _Consumer([[_delivery(1, "a")], [], [_delivery(2, "b")]], order)
    intake._consumer = cast(Any, consumer)
    await intake._run_consumer(cast(Any, consumer))
    assert order == [
        "batch 1",
        "periodic after a",
        "snapshot {'ITEMS': 1}",
        "batch 0",  # a quiet stream: the work still runs
        "periodic after a",
        "batch 1",
        "periodic after a,b",
        "snapshot {'ITEMS': 2}",
    ]
    order.clear()
    await intake.stop()
    assert order == ["consumer stopped", "periodic after a,b"]  # nothing new to snapshot


async def test_the_periodic_work_waits_for_its_interval() -> None:
    order: list[str] = []
    intake = _intake(order, every_s=0.2)
    quiet: list[list[Delivery]] = [[], []]
    consumer = _Consumer(quiet, order)
    await intake._run_consumer(cast(Any, consumer))
    assert order == ["batch 0", "batch 0"]  # not due yet
    await asyncio.sleep(0.25)
    await intake._run_consumer(cast(Any, _Consumer([[]], order)))
    assert order[-1] == "periodic after "
