"""The module that reaches into nats-py: it refuses a nats-py it was not written for, and the bulk parser
built on it reads any wire as nats-py does: for the same bytes, cut anywhere, the same messages with the
same subjects, reply subjects, headers and payloads, in the same order (data, headers-only, status and
large messages, routed or not)."""

from __future__ import annotations

import re
from importlib.metadata import version
from pathlib import Path
from typing import Any

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from nats.aio.client import Client
from nats.protocol.parser import Parser

from trader.bus import nats_internals
from trader.bus.nats_internals import SUPPORTED, UnsupportedNatsPy, check_version
from trader.bus.wire import BulkParser, parse_headers

ROUTED, OTHER = 3, 4


def test_the_installed_nats_py_is_the_one_it_was_written_for() -> None:
    assert version("nats-py") == SUPPORTED
    check_version(SUPPORTED)  # no error


@pytest.mark.parametrize("other", ["2.16.1", "2.17.0", "3.0.0", None])
def test_another_nats_py_is_refused_loudly_naming_both_versions(other: str | None) -> None:
    with pytest.raises(UnsupportedNatsPy) as failure:
        check_version(other)
    message = str(failure.value)
    assert f"nats-py=={SUPPORTED}" in message
    assert (other or "(not installed)") in message


def test_no_other_module_of_trader_touches_nats_py_private_parts() -> None:
    private = re.compile(r"(?<!self)\._(ps|process_msg|parse_header_lines|sid|nc)\b|\bsub\._(id|conn)\b")
    source = Path(nats_internals.__file__).parents[1]
    offenders = [
        f"{path.relative_to(source)}: {match.group(0)}"
        for path in source.rglob("*.py")
        if path.name != "nats_internals.py"
        for match in private.finditer(path.read_text())
    ]
    assert offenders == []


class Recorder:
    """What a parser hands its client, recorded as nats-py's client would make it a message."""

    def __init__(self) -> None:
        self.messages: list[tuple[int, str, str, dict[str, str] | None, bytes]] = []
        self._client = Client()

    async def _process_msg(self, sid: int, subject: bytes, reply: bytes, data: bytes, headers: Any) -> None:
        parsed = await self._client._process_headers(headers)
        msg = self._client._build_message(sid, subject, reply, data, parsed)
        self.messages.append((sid, msg.subject, msg.reply, msg.headers, msg.data))

    async def _process_ping(self) -> None:
        return None

    async def _process_pong(self) -> None:
        return None

    async def _process_info(self, info: dict[str, Any]) -> None:
        return None

    async def _process_err(self, err: str) -> None:
        return None


def frame(sid: int, subject: bytes, reply: bytes, payload: bytes, headers: bytes | None) -> bytes:
    reply_part = b" " + reply if reply else b""
    if headers is None:
        return b"MSG %s %d%s %d\r\n%s\r\n" % (subject, sid, reply_part, len(payload), payload)
    total = len(headers) + len(payload)
    return b"HMSG %s %d%s %d %d\r\n%s%s\r\n" % (
        subject,
        sid,
        reply_part,
        len(headers),
        total,
        headers,
        payload,
    )


header_sets = st.one_of(
    st.none(),
    st.just(b"NATS/1.0\r\n\r\n"),
    st.dictionaries(
        st.sampled_from(["Nats-Msg-Id", "Trader-Source-Seq", "X-A", "x-lower"]),
        st.text(alphabet="abcXYZ019:-_ ", max_size=12).map(str.strip),
        min_size=1,
        max_size=3,
    ).map(
        lambda h: (
            b"NATS/1.0\r\n"
            + b"".join(b"%s: %s\r\n" % (k.encode(), v.encode()) for k, v in h.items())
            + b"\r\n"
        )
    ),
)
status_headers = st.sampled_from(
    [
        b"NATS/1.0 100 Idle Heartbeat\r\nNats-Last-Consumer: 3\r\nNats-Last-Stream: 4\r\n\r\n",
        b"NATS/1.0 100 FlowControl Request\r\n\r\n",
        b"NATS/1.0 404 No Messages\r\n\r\n",
        b"NATS/1.0 503\r\n\r\n",
        b"NATS/1.0 409 Consumer Deleted\r\n\r\n",
    ]
)
payloads = st.one_of(
    st.binary(max_size=200),
    st.integers(min_value=60_000, max_value=300_000).map(lambda n: bytes(range(256)) * (n // 256)),
)
subjects = st.sampled_from([b"market.tick.mock.BTC-USDT", b"_INBOX.abc.7", b"a"])
replies = st.sampled_from([b"", b"$JS.ACK.ORDERS.c.1.5.5.1795600000000000000.0", b"_INBOX.r.1"])
data_frames = st.builds(frame, st.sampled_from([ROUTED, OTHER]), subjects, replies, payloads, header_sets)
headers_only = st.builds(
    frame, st.sampled_from([ROUTED, OTHER]), subjects, replies, st.just(b""), header_sets
)
status_frames = st.builds(
    frame, st.sampled_from([ROUTED, OTHER]), subjects, replies, st.just(b""), status_headers
)
others = st.sampled_from([b"PING\r\n", b"PONG\r\n", b"+OK\r\n", b'INFO {"server_id":"x"}\r\n'])
operations = st.one_of(data_frames, headers_only, status_frames, others)


async def feed(parser: Parser, wire: bytes, cuts: list[int]) -> None:
    start = 0
    for cut in [*sorted({c % (len(wire) + 1) for c in cuts}), len(wire)]:
        await parser.parse(wire[start:cut])
        start = cut


@settings(max_examples=200, deadline=None)
@given(ops=st.lists(operations, max_size=20), cuts=st.lists(st.integers(0, 2_000_000), max_size=12))
async def test_the_bulk_parser_gives_the_messages_nats_py_gives(ops: list[bytes], cuts: list[int]) -> None:
    wire = b"".join(ops)
    reference = Recorder()
    await feed(Parser(reference), wire, cuts)

    recorder = Recorder()
    bulk = BulkParser(recorder)  # type: ignore[arg-type]
    raw: list[tuple[bytes, bytes, bytes | None, bytes]] = []
    bulk.route(ROUTED, raw.extend)
    await feed(bulk, wire, cuts)

    # The routed data messages, read raw, as nats-py would have made them ...
    routed = [(ROUTED, s.decode(), r.decode(), parse_headers(h), d) for s, r, h, d in raw]

    # ... merged with what the bulk parser left to nats-py, give exactly nats-py's messages. (Status
    # messages are always left to nats-py, routed or not.)
    def is_routed_data(m: tuple[Any, ...]) -> bool:
        return m[0] == ROUTED and not (m[3] and "Status" in m[3])

    assert routed == [m for m in reference.messages if is_routed_data(m)]
    assert recorder.messages == [m for m in reference.messages if not is_routed_data(m)]
    assert not bulk.buf
