"""BulkParser against nats-py's own parser: the same wire, cut anywhere, gives the same messages in the
same order, the routed ones raw to their sink and everything else to nats-py as before."""

from __future__ import annotations

from typing import Any

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from nats.aio.client import Client
from nats.errors import ProtocolError
from nats.protocol.parser import Parser

from trader.bus.wire import BulkParser, parse_headers, subscribe_raw, unsubscribe_raw

ROUTED, OTHER = 7, 9


class RecordingClient:
    """What a parser calls on its client, recorded in order."""

    def __init__(self) -> None:
        self.calls: list[tuple[Any, ...]] = []

    async def _process_msg(self, sid: int, subject: bytes, reply: bytes, data: bytes, headers: Any) -> None:
        self.calls.append(("msg", sid, bytes(subject), bytes(reply), headers, data))

    async def _process_ping(self) -> None:
        self.calls.append(("ping",))

    async def _process_pong(self) -> None:
        self.calls.append(("pong",))

    async def _process_info(self, info: dict[str, Any]) -> None:
        self.calls.append(("info", info))

    async def _process_err(self, err: str) -> None:
        self.calls.append(("err", err))


def msg(sid: int, subject: bytes, reply: bytes, payload: bytes, headers: bytes | None = None) -> bytes:
    reply_part = b" " + reply if reply else b""
    if headers is None:
        return b"MSG %s %d%s %d\r\n%s\r\n" % (subject, sid, reply_part, len(payload), payload)
    size = len(headers) + len(payload)
    return b"HMSG %s %d%s %d %d\r\n%s%s\r\n" % (
        subject,
        sid,
        reply_part,
        len(headers),
        size,
        headers,
        payload,
    )


def data_headers(msg_id: str) -> bytes:
    return b"NATS/1.0\r\nNats-Msg-Id: %s\r\nTrader-Source-Seq: 12\r\n\r\n" % msg_id.encode()


HEARTBEAT = b"NATS/1.0 100 Idle Heartbeat\r\nNats-Last-Consumer: 3\r\nNats-Last-Stream: 4\r\n\r\n"

payloads = st.binary(max_size=300)
operations = st.one_of(
    st.tuples(st.sampled_from([ROUTED, OTHER]), st.booleans(), st.booleans(), payloads).map(
        lambda t: msg(
            t[0],
            b"market.tick.BTC-USDT",
            b"$JS.ACK.S.c.1.5.5.1795600000000000000.0" if t[1] else b"",
            t[3],
            data_headers(f"id-{len(t[3])}") if t[2] else None,
        )
    ),
    st.just(msg(ROUTED, b"_INBOX.x", b"", b"", HEARTBEAT)),
    st.sampled_from(
        [b"PING\r\n", b"PONG\r\n", b"+OK\r\n", b'INFO {"server_id":"x","max_payload":1048576}\r\n']
    ),
)


async def parse_all(parser: Parser, wire: bytes, cuts: list[int]) -> None:
    start = 0
    for cut in [*sorted({c % (len(wire) + 1) for c in cuts}), len(wire)]:
        await parser.parse(wire[start:cut])
        start = cut


@settings(max_examples=300, deadline=None)
@given(
    ops=st.lists(operations, max_size=30),
    cuts=st.lists(st.integers(min_value=0, max_value=20_000), max_size=12),
)
async def test_the_same_messages_as_nats_py_in_the_same_order(ops: list[bytes], cuts: list[int]) -> None:
    wire = b"".join(ops)
    reference = RecordingClient()
    await parse_all(Parser(reference), wire, cuts)

    client = RecordingClient()
    parser = BulkParser(client)  # type: ignore[arg-type]
    routed: list[tuple[bytes, bytes, bytes | None, bytes]] = []
    parser.route(ROUTED, routed.extend)
    await parse_all(parser, wire, cuts)

    # nats-py gets everything but the routed data messages, in its order ...
    is_routed_data = [
        c[0] == "msg" and c[1] == ROUTED and (c[4] is None or not c[4].startswith(b"NATS/1.0 "))
        for c in reference.calls
    ]
    assert client.calls == [c for c, r in zip(reference.calls, is_routed_data, strict=True) if not r]
    # ... and the sink gets those, raw and in order.
    expected = [(c[2], c[3], c[4], c[5]) for c, r in zip(reference.calls, is_routed_data, strict=True) if r]
    assert routed == expected
    assert not parser.buf  # nothing left over at the end of the wire


async def test_a_message_cut_before_its_payload_arrives_is_completed_by_the_next_read() -> None:
    parser = BulkParser(RecordingClient())  # type: ignore[arg-type]
    routed: list[Any] = []
    parser.route(ROUTED, routed.extend)
    wire = msg(ROUTED, b"a.b", b"r", b"0123456789", data_headers("1"))
    await parser.parse(wire[:-5])
    assert routed == []
    await parser.parse(wire[-5:])
    assert routed == [(b"a.b", b"r", data_headers("1"), b"0123456789")]


async def test_a_message_nats_py_was_in_the_middle_of_when_the_first_route_came_is_finished() -> None:
    client = RecordingClient()
    parser = BulkParser(client)  # type: ignore[arg-type]
    first, second = msg(ROUTED, b"a", b"", b"first"), msg(ROUTED, b"a", b"", b"second")
    await parser.parse(first[:-4])  # nats-py's parser (no route yet) waits for the payload's end
    routed: list[Any] = []
    parser.route(ROUTED, routed.extend)
    await parser.parse(first[-4:] + second)
    assert client.calls == []
    assert routed == [(b"a", b"", None, b"first"), (b"a", b"", None, b"second")]


async def test_after_unroute_messages_go_to_nats_py_again() -> None:
    client = RecordingClient()
    parser = BulkParser(client)  # type: ignore[arg-type]
    routed: list[Any] = []
    parser.route(ROUTED, routed.extend)
    parser.unroute(ROUTED)
    await parser.parse(msg(ROUTED, b"a", b"", b"x"))
    assert routed == []
    assert [c[-1] for c in client.calls] == [b"x"]


@pytest.mark.parametrize(
    "line",
    [
        b"MSG a 1\r\n",
        b"MSG a x 3\r\nabc\r\n",
        b"HMSG a 1 r 3\r\nabc\r\n",
        b"HMSG a 1 r x 3\r\nabc\r\n",
        b"HMSG a 1 r 4 3\r\nabc\r\n",  # more header than message
    ],
)
async def test_a_malformed_message_line_is_a_protocol_error(line: bytes) -> None:
    parser = BulkParser(RecordingClient())  # type: ignore[arg-type]
    parser.route(1, lambda messages: None)
    with pytest.raises(ProtocolError):
        await parser.parse(line)


async def test_an_unknown_operation_is_a_protocol_error_as_in_nats_py() -> None:
    parser = BulkParser(RecordingClient())  # type: ignore[arg-type]
    parser.route(1, lambda messages: None)
    with pytest.raises(ProtocolError):
        await parser.parse(b"BOGUS\r\n")


async def test_arguments_may_be_separated_by_any_run_of_spaces_and_tabs() -> None:
    parser = BulkParser(RecordingClient())  # type: ignore[arg-type]
    got: list[Any] = []
    parser.route(ROUTED, got.extend)
    await parser.parse(b"MSG  a\t%d   r 3\r\nabc\r\n" % ROUTED)
    assert got == [(b"a", b"r", None, b"abc")]


def test_headers_are_parsed_as_nats_py_parses_them() -> None:
    raw = b"NATS/1.0\r\nNats-Msg-Id: a:b:1\r\nX-Empty:\r\nX-Tabbed:\tv\r\n\r\n"
    assert parse_headers(raw) == Client._parse_header_lines(raw[len(b"NATS/1.0\r\n") :])
    assert parse_headers(raw)["Nats-Msg-Id"] == "a:b:1"  # type: ignore[index]
    assert parse_headers(None) is None


async def test_a_sink_that_fails_does_not_stop_the_others_nor_the_next_read() -> None:
    parser = BulkParser(RecordingClient())  # type: ignore[arg-type]
    got: list[Any] = []

    def broken(messages: list[Any]) -> None:
        raise RuntimeError("reader bug")

    parser.route(ROUTED, broken)
    parser.route(OTHER, got.extend)
    await parser.parse(msg(ROUTED, b"a", b"", b"1") + msg(OTHER, b"b", b"", b"2"))
    await parser.parse(msg(OTHER, b"b", b"", b"3"))
    assert [m[-1] for m in got] == [b"2", b"3"]
    assert not parser.buf


async def test_a_big_message_arriving_in_many_reads_comes_whole_once() -> None:
    parser = BulkParser(RecordingClient())  # type: ignore[arg-type]
    got: list[Any] = []
    parser.route(ROUTED, got.extend)
    big = bytes(range(256)) * 4096  # 1 MiB
    wire = msg(ROUTED, b"a", b"r", big, data_headers("big")) + msg(ROUTED, b"a", b"r", b"after")
    for start in range(0, len(wire), 32768):
        await parser.parse(wire[start : start + 32768])
    assert [(m[2], m[3]) for m in got] == [(data_headers("big"), big), (None, b"after")]
    assert not parser.buf
    parser.reset()
    assert parser._need == 0


class SubscribingClient(RecordingClient):
    """Hands out subscription ids as nats-py does; ``jump`` simulates another subscription first."""

    def __init__(self, jump: int = 0) -> None:
        super().__init__()
        self._ps = BulkParser(self)  # type: ignore[arg-type]
        self._sid, self.jump = 0, jump

    async def subscribe(self, subject: str, cb: Any) -> Any:
        self._sid += 1 + self.jump
        return type("Sub", (), {"_id": self._sid, "_conn": self, "unsubscribe": _nothing})()


async def _nothing() -> None:
    return None


@pytest.mark.parametrize("jump", [0, 2])
async def test_a_raw_subscription_is_routed_under_its_own_id_only(jump: int) -> None:
    client = SubscribingClient(jump)
    got: list[Any] = []
    sub = await subscribe_raw(client, "a.>", got.extend)  # type: ignore[arg-type]
    assert list(client._ps.routes) == [sub._id]
    await client._ps.parse(msg(sub._id, b"a.b", b"", b"x"))
    assert got == [(b"a.b", b"", None, b"x")]
    await unsubscribe_raw(sub)
    assert client._ps.routes == {}


async def test_a_connection_nats_py_made_is_refused_by_the_readers_and_the_publisher_saying_how() -> None:
    from trader.bus.publish import publish_acked
    from trader.bus.read import Follower, replay
    from trader.bus.wire import PushInbox, bulk_client, reads_in_bulk

    plain = Client()  # nats-py's own parser: one path only, the bulk one, so it is told at once
    assert not reads_in_bulk(plain)
    assert reads_in_bulk(bulk_client())
    with pytest.raises(TypeError, match="connect_nats"):
        PushInbox(plain)
    with pytest.raises(TypeError, match="connect_nats"):
        await publish_acked(plain.jetstream(), "a", b"1")
    with pytest.raises(TypeError, match="connect_nats"):
        await subscribe_raw(plain, "a", lambda messages: None)

    class Stream:  # what the readers ask before they subscribe
        async def stream_info(self, name: str) -> Any:
            return type("Info", (), {"state": type("State", (), {"last_seq": 5})()})()

    js = plain.jetstream()
    js.stream_info = Stream().stream_info  # type: ignore[method-assign]
    with pytest.raises(TypeError, match="connect_nats"):
        await Follower(js, stream="S", subjects="a", handler=_handler).start()
    with pytest.raises(TypeError, match="connect_nats"):
        await replay(js, "S", "a", _handler)


async def _handler(stored: Any) -> None:
    return None
