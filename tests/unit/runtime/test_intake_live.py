"""The intake's async batch handler (``live=``): the live messages of a batch, decoded, go to it at once;
what cannot be decoded goes to the dead letters and never reaches it; without one, ``handle`` is used."""

from __future__ import annotations

from decimal import Decimal as D
from types import SimpleNamespace
from typing import cast

import msgspec

from trader.bus.publish import Outgoing
from trader.bus.read import Stored
from trader.runtime.intake import Input, Intake, Mode, Received
from trader.runtime.service import Runtime


class Item(msgspec.Struct, frozen=True):
    name: str
    quantity: D


def _rt() -> Runtime:
    return cast(Runtime, SimpleNamespace(name="svc"))


def _stored(seq: int, data: bytes) -> Stored:
    return Stored.raw(seq, b"items.a", data, None, 1_000)


async def test_the_live_handler_takes_the_decoded_batch_at_once_and_refusals_go_to_the_dead_letters() -> None:
    batches: list[list[tuple[int, Item]]] = []

    async def live(batch: list[Received[Item]]) -> list[Outgoing]:
        batches.append([(r.seq, r.value) for r in batch])
        return [Outgoing("out", b"%d" % len(batch))]

    def handle(message: Received[Item]) -> list[Outgoing]:
        raise AssertionError("live messages go to the live handler")

    intake = Intake(_rt(), Input("ITEMS", "items.>", Item, Mode.WORK), handle, live=live)
    good, bad = b'{"name":"a","quantity":"1"}', b'{"name":1}'
    outputs, dead = await intake._apply_live([_stored(1, good), _stored(2, bad), _stored(3, good)])
    assert batches == [[(1, Item("a", D(1))), (3, Item("a", D(1)))]]
    assert [(o.subject, o.payload) for o in outputs] == [("out", b"2")]
    assert [(r.seq, r.data, r.field) for r in dead] == [(2, bad, "name")]
    # A batch of nothing decodable does not call it.
    outputs, dead = await intake._apply_live([_stored(4, bad)])
    assert (outputs, len(dead), len(batches)) == ([], 1, 1)


async def test_without_a_live_handler_each_message_goes_to_handle() -> None:
    def handle(message: Received[Item]) -> list[Outgoing]:
        return [Outgoing(f"out.{message.value.name}", b"", msg_id=str(message.seq))]

    intake = Intake(_rt(), Input("ITEMS", "items.>", Item, Mode.WORK), handle)
    outputs, dead = await intake._apply_live([_stored(1, b'{"name":"a","quantity":"1"}')])
    assert ([o.msg_id for o in outputs], dead) == (["1"], [])
