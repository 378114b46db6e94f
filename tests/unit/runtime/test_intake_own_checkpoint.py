"""A WORK input whose checkpoint the service keeps with its outputs (``OwnCheckpoint``: a lake sink's
Delta commit, the normalizer's bar clock): the intake resumes where the service says, sends the batch's
refusals before the service saves, never sends again those of messages handled before the restart,
and lets the service save on a quiet batch too."""

from __future__ import annotations

from types import SimpleNamespace
from typing import Any, cast

import msgspec
import pytest

from trader.bus.publish import Outgoing
from trader.runtime.consumer import Delivery
from trader.runtime.intake import Batching, Input, Intake, Mode, Received, Resume
from trader.runtime.service import Runtime


class Item(msgspec.Struct, frozen=True):
    name: str


class Service:
    """A service that keeps its checkpoint itself: it records what it is given, in order."""

    def __init__(self, order: list[str], resume: Resume) -> None:
        self.order, self.resume = order, resume
        self.taken: list[tuple[int, str, bool]] = []
        self.lagging = False  # stores at its own pace: one message behind what it was given

    async def load(self) -> Resume:
        return self.resume

    async def take(self, batch: list[Received[Item]]) -> list[Outgoing]:
        self.taken += [(r.seq, r.value.name, r.redelivered) for r in batch]
        self.order.append(f"take {[r.seq for r in batch]}")
        return []

    async def save(self, seq: int) -> int:
        self.order.append(f"save {seq}")
        return seq - 1 if self.lagging else seq


def _runtime(order: list[str]) -> Runtime:
    async def dead_letter(stream: str, refused: list[Any]) -> None:
        order.append(f"dead letters {[r.seq for r in refused]}")

    async def publish_reliably(outputs: list[Outgoing]) -> None:
        order.append(f"publish {len(outputs)}")

    metrics = SimpleNamespace(count_in=lambda n: None, observe_batch=lambda s: None)
    return cast(
        Runtime,
        SimpleNamespace(
            name="svc", dead_letter=dead_letter, publish_reliably=publish_reliably, metrics=metrics
        ),
    )


def _delivery(seq: int, data: bytes) -> Delivery:
    return Delivery(seq, 0, "items.a", data, None)


def _intake(order: list[str], resume: Resume) -> tuple[Intake[Item], Service]:
    service = Service(order, resume)
    source = Input("ITEMS", "items.>", Item, Mode.WORK, batching=Batching(eager=False, wait_s=1.0))
    intake = Intake(_runtime(order), source, lambda m: [], live=service.take, checkpoint=service)
    return intake, service


async def test_refusals_go_before_the_save_and_those_handled_before_the_restart_not_again() -> None:
    order: list[str] = []
    intake, service = _intake(order, Resume(after=4, seen_to=6))
    assert await intake._resume_seq() == 5  # the consumer starts after what the service has stored
    intake._end_seq = 100
    good = msgspec.json.encode(Item("a"))
    batch = [_delivery(5, b"{bad"), _delivery(6, good), _delivery(7, b"{bad"), _delivery(8, good)]
    await intake._take(batch, cast(Any, SimpleNamespace(caught_up=False)))
    # 5 was refused before the restart (it is at or before seen_to): its dead letter is not sent again.
    assert order == ["take [6, 8]", "dead letters [7]", "save 8"]
    assert service.taken == [(6, "a", True), (8, "a", False)]  # 6 was handled before the restart


async def test_a_quiet_batch_lets_the_service_save_again_for_its_clock() -> None:
    order: list[str] = []
    intake, _service = _intake(order, Resume(after=0))
    intake.start_seq = await intake._resume_seq()
    intake._done_to = intake._checkpointed = 0
    intake._kv = None
    await intake._checkpoint()
    await intake._checkpoint()
    assert order == ["save 0", "save 0"]


def test_an_own_checkpoint_is_for_work_inputs_saved_after_every_batch() -> None:
    service = Service([], Resume(0))
    rt = _runtime([])
    with pytest.raises(ValueError, match="WORK"):
        Intake(rt, Input("ITEMS", "items.>", Item, Mode.HISTORY), lambda m: [], checkpoint=service)
    every = Input("ITEMS", "items.>", Item, Mode.WORK, checkpoint_every_s=0.1)
    with pytest.raises(ValueError, match="every batch"):
        Intake(rt, every, lambda m: [], checkpoint=service)


class _Consumer:
    def __init__(self) -> None:
        self.acked: list[int] = []

    async def ack(self, batch: list[Delivery]) -> None:
        self.acked.append(batch[-1].seq)


async def test_batches_are_acknowledged_once_the_service_has_stored_them_for_good() -> None:
    order: list[str] = []
    intake, service = _intake(order, Resume(after=0))
    service.lagging = True
    consumer = _Consumer()
    intake._end_seq = 100
    good = msgspec.json.encode(Item("a"))
    for seq in (1, 2):
        batch = [_delivery(seq, good)]
        await intake._take(batch, cast(Any, SimpleNamespace(caught_up=False)))
        await intake._acknowledge(cast(Any, consumer), batch)
    assert consumer.acked == [1]  # the second batch is not stored for good yet
    service.lagging = False
    await intake._checkpoint()  # a quiet wait: the service stores the rest
    await intake._acknowledge(cast(Any, consumer), [])
    assert consumer.acked == [1, 2]
