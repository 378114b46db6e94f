"""The intake's store hook: what a service writes elsewhere of a batch is written after the batch's outputs
are stored and before its checkpoint, so a crash between them hands the batch over again."""

from __future__ import annotations

from types import SimpleNamespace
from typing import Any, cast

import msgspec

from trader.bus.publish import Outgoing
from trader.runtime.consumer import Delivery
from trader.runtime.intake import Input, Intake, Mode, Received
from trader.runtime.service import Runtime


class Item(msgspec.Struct, frozen=True):
    name: str


async def test_the_store_runs_after_the_outputs_and_before_the_checkpoint() -> None:
    order: list[str] = []
    taken: list[str] = []

    async def publish_reliably(outputs: list[Outgoing]) -> None:
        order.append(f"publish {len(outputs)}")

    async def dead_letter(stream: str, refused: list[Any]) -> None:
        order.append(f"dead letters {len(refused)}")

    metrics = SimpleNamespace(count_in=lambda n: None, observe_batch=lambda s: None)
    rt = cast(
        Runtime,
        SimpleNamespace(
            name="svc", publish_reliably=publish_reliably, dead_letter=dead_letter, metrics=metrics
        ),
    )

    def handle(message: Received[Item]) -> list[Outgoing]:
        taken.append(message.value.name)
        return [Outgoing("out", message.data, msg_id=str(message.seq))]

    async def store() -> None:
        order.append(f"store {','.join(taken)}")

    intake = Intake(rt, Input("ITEMS", "items.>", Item, Mode.WORK), handle, store=store)

    async def checkpoint(seq: int) -> None:
        order.append(f"checkpoint {seq}")

    intake._write_checkpoint = checkpoint  # type: ignore[method-assign]
    intake._end_seq = 100
    batch = [
        Delivery(seq, 0, "items.a", msgspec.json.encode(Item(n)), None) for seq, n in ((1, "a"), (2, "b"))
    ]
    await intake._take(batch, cast(Any, SimpleNamespace(caught_up=False)))
    assert order == ["dead letters 0", "publish 2", "store a,b", "checkpoint 2"]
