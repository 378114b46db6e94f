"""The intake's pure parts: strict decoding into the declared type, one refusal rule, outputs."""

from __future__ import annotations

from decimal import Decimal as D
from types import SimpleNamespace
from typing import Any, cast

import msgspec
import pytest

from trader.bus.publish import Outgoing
from trader.bus.read import Stored
from trader.marketdata.decode import InvalidMessage
from trader.messages import Position
from trader.runtime.intake import (
    Input,
    Intake,
    Mode,
    Received,
    checkpoint_key,
    latest_per_subject,
    strict_decoder,
)
from trader.runtime.service import Runtime
from trader.runtime.snapshots import Snapshotting


class Item(msgspec.Struct, frozen=True):
    name: str
    quantity: D


def _rt() -> Runtime:
    return cast(Runtime, SimpleNamespace(name="svc"))


def _stored(seq: int, data: bytes) -> Stored:
    return Stored.raw(seq, b"items.a", data, b"NATS/1.0\r\nNats-Msg-Id: m1\r\n\r\n", 1_000)


def test_a_message_is_decoded_strictly_into_the_declared_type() -> None:
    decode = strict_decoder(Item)
    assert decode(b'{"name": "a", "quantity": "1.10"}') == Item("a", D("1.10"))
    with pytest.raises(InvalidMessage) as wrong:
        decode(b'{"name": "a", "quantity": [1]}')
    assert wrong.value.field == "quantity"
    with pytest.raises(InvalidMessage) as malformed:
        decode(b"{not json")
    assert (malformed.value.field, malformed.value.reason.startswith("malformed JSON")) == ("body", True)


def test_what_cannot_be_decoded_or_is_refused_goes_to_the_dead_letters_whole_with_its_reason() -> None:
    def handle(message: Received[Item]) -> list[Outgoing]:
        if message.value.quantity <= 0:
            raise InvalidMessage("quantity", "must be positive")
        return [Outgoing(f"out.{message.value.name}", message.data, msg_id=str(message.seq))]

    intake = Intake(_rt(), Input("ITEMS", "items.>", Item, Mode.WORK), handle)
    good, bad_json, refused = b'{"name":"a","quantity":"1"}', b'{"name":1}', b'{"name":"b","quantity":"0"}'
    outputs, dead = intake._apply([_stored(1, good), _stored(2, bad_json), _stored(3, refused)])
    assert [(o.subject, o.payload, o.msg_id) for o in outputs] == [("out.a", good, "1")]
    assert [(r.seq, r.data, r.field) for r in dead] == [(2, bad_json, "name"), (3, refused, "quantity")]
    assert dead[1].reason == "quantity: must be positive"
    assert dead[0].reason.startswith("name: Expected `str`, got `int`")
    assert dead[0].headers == {"Nats-Msg-Id": "m1"}  # the original headers go with it


def test_an_input_of_its_own_decoder_uses_it() -> None:
    def lenient(data: bytes) -> Item:
        return Item(data.decode(), D(1))

    intake = Intake(_rt(), Input("ITEMS", "items.>", Item, Mode.LATEST, decode=lenient), lambda m: [])
    assert intake._decode(b"x") == Item("x", D(1))


def test_only_the_latest_output_of_each_subject_is_kept_in_order() -> None:
    outs = [Outgoing("a", b"1"), Outgoing("b", b"1"), Outgoing("a", b"2")]
    assert [(o.subject, o.payload) for o in latest_per_subject(outs)] == [("a", b"2"), ("b", b"1")]


def test_snapshots_are_for_history_inputs_and_checkpoints_are_named_per_input() -> None:
    snapshots: Snapshotting[Any] = Snapshotting("k", Position, 1, lambda: None, lambda s: None)
    with pytest.raises(ValueError, match="HISTORY"):
        Intake(_rt(), Input("ITEMS", "items.>", Item, Mode.WORK), lambda m: [], snapshots=snapshots)
    assert checkpoint_key("oms", "requests") == "intake.oms.requests"
    intake = Intake(_rt(), Input("ITEMS", "items.>", Item, Mode.WORK, name="items"), lambda m: [])
    assert intake.name == "items"
    assert intake.ready_checks() == {"items": False}


class _Store:
    """A snapshot store that keeps what it is given."""

    stored_in = "inline"

    def __init__(self) -> None:
        self.saved: list[tuple[Any, dict[str, int]]] = []

    async def save(self, state: Any, covers: dict[str, int], version: int) -> int:
        self.saved.append((state, covers))
        return 1


async def test_a_snapshot_waits_until_the_service_says_its_state_is_settled() -> None:
    settled = [False]
    snapshots: Snapshotting[Any] = Snapshotting(
        "k", Position, 1, lambda: "state", lambda s: None, settled=lambda: settled[0]
    )
    rt = cast(Runtime, SimpleNamespace(name="svc", log=SimpleNamespace(info=lambda *a, **k: None)))
    intake = Intake(rt, Input("ITEMS", "items.>", Item, Mode.HISTORY), lambda m: [], snapshots=snapshots)
    store = _Store()
    intake._store = cast(Any, store)
    intake._covered = 7
    await intake._maybe_snapshot(final=True)
    assert store.saved == []  # work in flight: its changes are not stored yet
    settled[0] = True
    await intake._maybe_snapshot(final=True)
    assert store.saved == [("state", {"ITEMS": 7})]
