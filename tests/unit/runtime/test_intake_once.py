"""The intake's mode ONCE (``read_once``): a bounded read of a stream, decoded strictly, refusals
returned with their bytes and reason (never dead-lettered again), counted in the metrics. The reading
itself (``trader.bus.read.replay``) is tested on a real server in tests/integration/test_intake.py."""

from __future__ import annotations

from decimal import Decimal as D
from types import SimpleNamespace
from typing import Any, cast

import msgspec
import pytest

from trader.bus.read import Stored
from trader.marketdata.decode import InvalidMessage
from trader.runtime import intake as intake_module
from trader.runtime.intake import Input, Intake, Mode, decode_once, read_once
from trader.runtime.service import Runtime


class Item(msgspec.Struct, frozen=True):
    name: str
    quantity: D


ONCE = Input("ITEMS", ("items.a", "items.b"), Item, Mode.ONCE, name="warm")


def _stored(seq: int, data: bytes, subject: bytes = b"items.a") -> Stored:
    return Stored.raw(seq, subject, data, b"NATS/1.0\r\nNats-Msg-Id: m1\r\n\r\n", 1_000 + seq)


class _Metrics:
    def __init__(self) -> None:
        self.count = 0

    def count_in(self, n: int = 1) -> None:
        self.count += n


class _Log:
    def __init__(self) -> None:
        self.lines: list[tuple[str, dict[str, Any]]] = []

    def info(self, event: str, **fields: Any) -> None:
        self.lines.append((event, fields))


def _rt() -> Any:
    return SimpleNamespace(name="svc", js=object(), metrics=_Metrics(), log=_Log())


def test_what_is_read_once_is_decoded_in_order_and_what_cannot_be_is_refused_with_bytes_and_reason() -> None:
    good, bad = b'{"name":"a","quantity":"1.50"}', b'{"name":"b","quantity":[1]}'
    found = decode_once(ONCE, [_stored(3, good), _stored(4, bad, b"items.b"), _stored(9, b"{no")])
    assert [(r.seq, r.subject, r.value) for r in found.received] == [(3, "items.a", Item("a", D("1.50")))]
    assert found.received[0].arrival_ms == 1_003
    assert found.received[0].redelivered is False
    assert [(r.seq, r.subject, r.data, r.field) for r in found.refused] == [
        (4, "items.b", bad, "quantity"),
        (9, "items.a", b"{no", "body"),
    ]
    assert found.refused[1].reason.startswith("body: malformed JSON")
    assert found.refused[0].headers == {"Nats-Msg-Id": "m1"}  # the original message, whole


def test_an_input_read_once_of_its_own_decoder_uses_it() -> None:
    def named(data: bytes) -> Item:
        if not data:
            raise InvalidMessage("body", "empty")
        return Item(data.decode(), D(0))

    source = Input("ITEMS", "items.>", Item, Mode.ONCE, decode=named)
    found = decode_once(source, [_stored(1, b"x"), _stored(2, b"")])
    assert [r.value for r in found.received] == [Item("x", D(0))]
    assert [(r.seq, r.reason) for r in found.refused] == [(2, "body: empty")]


async def test_read_once_reads_the_window_asked_counts_it_and_sends_no_dead_letter(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    asked: list[tuple[Any, ...]] = []

    async def replay_messages(js: Any, stream: str, subjects: Any, **kw: Any) -> list[Stored]:
        asked.append((js, stream, subjects, kw))
        return [_stored(5, b'{"name":"a","quantity":"1"}'), _stored(6, b"[]")]

    monkeypatch.setattr(intake_module, "replay_messages", replay_messages)
    rt = _rt()  # no dead_letter at all: calling it would fail
    found = await read_once(cast(Runtime, rt), ONCE, since_ms=1_700_000_000_000, upto=6, timeout_s=3.0)
    assert asked == [
        (
            rt.js,
            "ITEMS",
            ["items.a", "items.b"],
            {"after": 0, "since_ms": 1_700_000_000_000, "upto": 6, "timeout": 3.0},
        )
    ]
    assert [r.seq for r in found.received] == [5]
    assert [r.seq for r in found.refused] == [6]
    assert rt.metrics.count == 2  # every message read is counted in, the refused too
    assert [event for event, _ in rt.log.lines] == ["intake.once_refused"]
    assert rt.log.lines[0][1]["input"] == "warm"

    await read_once(cast(Runtime, rt), Input("ITEMS", "items.a", Item, Mode.ONCE), after=4)
    assert asked[-1][2:] == (["items.a"], {"after": 4, "since_ms": None, "upto": None, "timeout": 60.0})


async def test_mode_once_is_read_with_read_once_and_read_once_reads_nothing_else() -> None:
    with pytest.raises(ValueError, match="read_once"):
        Intake(cast(Runtime, _rt()), ONCE, lambda m: [])
    with pytest.raises(ValueError, match="ONCE"):
        await read_once(cast(Runtime, _rt()), Input("ITEMS", "items.>", Item, Mode.LATEST))
