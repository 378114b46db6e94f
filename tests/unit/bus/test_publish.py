"""AckedPublisher's reading of JetStream's answers, through the real parser: each future gets its own
answer, an error answer or a garbled one fails only its message, and futures given up on are dropped."""

from __future__ import annotations

import asyncio
from typing import Any

import msgspec
import pytest
from nats.js.errors import NoStreamResponseError, ServiceUnavailableError

from trader.bus.publish import AckedPublisher
from trader.bus.wire import BulkParser

SID = 3


class FakeSubscription:
    def __init__(self, sid: int, subject: str, cb: Any) -> None:
        self._id, self.subject, self.cb = sid, subject, cb


class FakeClient:
    def __init__(self) -> None:
        self._ps = BulkParser(self)  # type: ignore[arg-type]
        self._sid = SID - 1  # nats-py hands out subscription ids in order
        self.published: list[tuple[str, bytes, str, Any]] = []

    def new_inbox(self) -> str:
        return "_INBOX.pub"

    async def subscribe(self, subject: str, cb: Any) -> FakeSubscription:
        self._sid += 1
        self.sub = FakeSubscription(self._sid, subject, cb)
        return self.sub

    async def publish(self, subject: str, payload: bytes, reply: str = "", headers: Any = None) -> None:
        self.published.append((subject, payload, reply, headers))

    async def _process_msg(self, sid: int, subject: bytes, reply: bytes, data: bytes, headers: Any) -> None:
        """What nats-py does with what the parser leaves it: a status message to the callback."""
        msg = type("Msg", (), {"subject": subject.decode(), "headers": headers})()
        await self.sub.cb(msg)

    async def answer(self, reply: str, payload: bytes, headers: bytes | None = None) -> None:
        if headers is None:
            wire = b"MSG %s %d %d\r\n%s\r\n" % (reply.encode(), SID, len(payload), payload)
        else:
            size = len(headers) + len(payload)
            wire = b"HMSG %s %d %d %d\r\n%s%s\r\n" % (
                reply.encode(),
                SID,
                len(headers),
                size,
                headers,
                payload,
            )
        await self._ps.parse(wire)


async def test_each_future_gets_its_own_answer_whatever_their_order() -> None:
    nc = FakeClient()
    publisher = AckedPublisher(nc)  # type: ignore[arg-type]
    futures = [await publisher.publish(f"s.{i}", b"x", {"Nats-Msg-Id": str(i)}) for i in range(3)]
    assert nc.sub.subject == "_INBOX.pub.*"
    assert [p[3] for p in nc.published] == [{"Nats-Msg-Id": str(i)} for i in range(3)]
    replies = [p[2] for p in nc.published]
    assert len(set(replies)) == 3
    for seq, reply in zip((12, 10, 11), reversed(replies), strict=True):
        await nc.answer(reply, b'{"stream":"S","seq":%d}' % seq)
    acks = [f.result() for f in futures]
    assert [(a.stream, a.seq, a.duplicate) for a in acks] == [
        ("S", 11, False),
        ("S", 10, False),
        ("S", 12, False),
    ]
    assert publisher._futures == {}


async def test_an_error_or_a_garbled_answer_fails_only_its_message() -> None:
    nc = FakeClient()
    publisher = AckedPublisher(nc)  # type: ignore[arg-type]
    refused, garbled, fine = [await publisher.publish("s", b"x", None) for _ in range(3)]
    error = b'{"error":{"code":503,"err_code":10077,"description":"maximum messages exceeded"}}'
    await nc.answer(nc.published[0][2], error)
    await nc.answer(nc.published[1][2], b"{not json")
    await nc.answer(nc.published[2][2], b'{"stream":"S","seq":1,"duplicate":true}')
    with pytest.raises(ServiceUnavailableError, match="maximum messages exceeded"):
        refused.result()
    with pytest.raises(msgspec.DecodeError):
        garbled.result()
    assert fine.result().duplicate


async def test_no_stream_for_the_subject_is_a_status_message_and_fails_its_message() -> None:
    nc = FakeClient()
    publisher = AckedPublisher(nc)  # type: ignore[arg-type]
    future = await publisher.publish("nowhere", b"x", None)
    await nc.answer(nc.published[0][2], b"", headers=b"NATS/1.0 503\r\n\r\n")
    with pytest.raises(NoStreamResponseError):
        future.result()


async def test_futures_given_up_on_are_forgotten_and_a_late_answer_is_ignored() -> None:
    nc = FakeClient()
    publisher = AckedPublisher(nc)  # type: ignore[arg-type]
    late, waiting = await publisher.publish("s", b"x", None), await publisher.publish("s", b"y", None)
    late.cancel()
    publisher.forget_unanswered()
    assert list(publisher._futures.values()) == [waiting]
    await nc.answer(nc.published[0][2], b'{"stream":"S","seq":1}')  # nobody waits for it any more
    await nc.answer(nc.published[1][2], b'{"stream":"S","seq":2}')
    assert waiting.result().seq == 2
    await asyncio.sleep(0)
