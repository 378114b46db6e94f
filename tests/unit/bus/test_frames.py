"""``publish_frame`` against nats-py's own ``_send_publish``: the same operation for any message."""

from __future__ import annotations

import asyncio

import pytest
from hypothesis import given
from hypothesis import strategies as st
from nats.aio.client import Client
from nats.errors import BadHeaderError, BadSubjectError

from trader.bus.wire import publish_frame

TOKEN = st.text(st.characters(codec="ascii", exclude_characters=" \t\r\n.", min_codepoint=33), min_size=1)
SUBJECT = st.lists(TOKEN, min_size=1, max_size=5).map(".".join)
KEY = st.text(
    st.sampled_from("!#$%&'*+-.^_`|~0123456789ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz"),
    min_size=1,
)
VALUE = st.text(st.characters(codec="utf-8", exclude_categories=("Cs",)), max_size=40)


def nats_py_frame(subject: str, reply: str, payload: bytes, headers: dict[str, str] | None) -> bytes:
    nc = Client()
    asyncio.run(nc._send_publish(subject, reply, payload, len(payload), headers))
    (frame,) = nc._pending
    return frame


def operation(frame: bytes) -> tuple[list[bytes], bytes]:
    """The control line's arguments (however spaced) and what follows it."""
    line, _, rest = frame.partition(b"\r\n")
    return line.split(), rest


@given(
    subject=SUBJECT,
    reply=st.one_of(st.just(""), SUBJECT),
    payload=st.binary(max_size=200),
    headers=st.one_of(st.none(), st.dictionaries(KEY, VALUE, max_size=4)),
)
def test_the_frame_is_the_one_nats_py_sends(
    subject: str, reply: str, payload: bytes, headers: dict[str, str] | None
) -> None:
    ours = publish_frame(subject, reply, payload, headers)
    assert operation(ours) == operation(nats_py_frame(subject, reply, payload, headers))


def test_what_nats_py_refuses_is_refused() -> None:
    with pytest.raises(BadSubjectError):
        publish_frame("order.state.a b", "", b"x", None)
    with pytest.raises(BadSubjectError):
        publish_frame("", "", b"x", None)
    with pytest.raises(BadSubjectError):
        publish_frame("order.state", "_INBOX.a\r\nPUB x 1", b"x", None)
    with pytest.raises(BadHeaderError):
        publish_frame("order.state", "", b"x", {"Bad:Key": "v"})


def test_a_value_cannot_end_its_header_early() -> None:
    frame = publish_frame("s", "", b"{}", {"Nats-Msg-Id": "a\r\nInjected: 1"})
    assert frame == b"HPUB s 41 43\r\nNATS/1.0\r\nNats-Msg-Id: a  Injected: 1\r\n\r\n{}\r\n"
