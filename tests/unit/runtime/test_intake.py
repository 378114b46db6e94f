"""The intake's pure parts: strict decoding into the declared type, one refusal rule, outputs."""

from __future__ import annotations

import time
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
    NotYet,
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


class _Metrics:
    def __init__(self) -> None:
        self.errors: list[str] = []

    def count_error(self, kind: str) -> None:
        self.errors.append(kind)


def _work_rt() -> Runtime:
    log = SimpleNamespace(info=lambda *a, **k: None, warning=lambda *a, **k: None)
    return cast(Runtime, SimpleNamespace(name="svc", log=log, metrics=_Metrics()))


def _waiting_for(known: set[str]) -> Any:
    """A handler of items that refer to an earlier one: ``NotYet`` until that one is known."""

    def handle(message: Received[Item]) -> list[Outgoing]:
        name = message.value.name
        if name.startswith("after-") and name.removeprefix("after-") not in known:
            raise NotYet("name", f"nothing known of {name}", error="unknown_item")
        known.add(name)
        return [Outgoing(f"out.{name}", b"", msg_id=f"{name}:{int(message.redelivered)}")]

    return handle


def _item(seq: int, name: str) -> Stored:
    return _stored(seq, msgspec.json.encode(Item(name, D(1))))


def test_a_message_not_takeable_yet_waits_and_the_checkpoint_stays_before_it() -> None:
    known: set[str] = set()
    intake = Intake(_work_rt(), Input("ITEMS", "items.>", Item, Mode.WORK), _waiting_for(known))
    outputs, refused = intake._apply([_item(1, "a"), _item(2, "after-b"), _item(3, "c")])
    assert ([o.subject for o in outputs], refused) == (["out.a", "out.c"], [])
    assert intake._checkpoint_seq(3) == 1  # the deferred message comes again after a crash
    # What it waits for comes in a later batch: offered again then, as possibly seen before.
    outputs, refused = intake._apply([_item(4, "b")])
    intake._retry(outputs, refused, time.monotonic())
    assert [o.msg_id for o in outputs] == ["b:0", "after-b:1"]
    assert (refused, intake._deferred, intake._checkpoint_seq(4)) == ([], [], 4)


def test_a_message_still_not_takeable_after_its_time_is_a_dead_letter_with_the_reason() -> None:
    rt = _work_rt()
    source = Input("ITEMS", "items.>", Item, Mode.WORK, defer_for_s=5.0)
    intake = Intake(rt, source, _waiting_for(set()))
    intake._apply([_item(1, "after-x")])
    outputs: list[Outgoing] = []
    refused: list[Any] = []
    first = intake._deferred[0].first_s
    intake._retry(outputs, refused, first + 4.9)
    assert (len(intake._deferred), refused) == (1, [])  # within its time: waits on
    intake._retry(outputs, refused, first + 5.1)
    assert (outputs, intake._deferred) == ([], [])
    assert [(r.seq, r.reason) for r in refused] == [(1, "name: nothing known of after-x")]
    assert cast(Any, rt.metrics).errors == ["unknown_item"]


def test_not_yet_outside_work_is_refused_at_once_and_redelivery_is_what_the_stream_held_at_start() -> None:
    history = Intake(_work_rt(), Input("ITEMS", "items.>", Item, Mode.HISTORY), _waiting_for(set()))
    _outputs, refused = history._apply([_item(1, "after-x")])
    assert [r.seq for r in refused] == [1]
    work = Intake(_work_rt(), Input("ITEMS", "items.>", Item, Mode.WORK), _waiting_for(set()))
    work._end_seq = 2  # the stream's last at the start: what may have been handled before a crash
    outputs, _ = work._apply([_item(2, "a"), _item(3, "b")])
    assert [o.msg_id for o in outputs] == ["a:1", "b:0"]


class _Bucket:
    def __init__(self) -> None:
        self.puts: list[tuple[str, bytes]] = []

    async def put(self, key: str, value: bytes) -> None:
        self.puts.append((key, value))


async def test_a_checkpoint_every_so_often_is_written_when_due_and_at_a_stop() -> None:
    async def retry(_what: str, operation: Any) -> Any:
        return await operation()

    rt = cast(Runtime, SimpleNamespace(name="svc", retry=retry))
    source = Input("ITEMS", "items.>", Item, Mode.WORK, name="items", checkpoint_every_s=3600)
    intake = Intake(rt, source, lambda m: [])
    bucket = _Bucket()
    intake._kv = cast(Any, bucket)
    intake._done_to = 5
    await intake._checkpoint()  # the first is due at once
    intake._done_to = 9
    await intake._checkpoint()  # not due yet: a crash now hands 6..9 over again
    assert bucket.puts == [("intake.svc.items", b"5")]
    await intake._checkpoint(now=True)  # a stop
    await intake._checkpoint(now=True)  # nothing new: nothing written
    assert bucket.puts == [("intake.svc.items", b"5"), ("intake.svc.items", b"9")]
