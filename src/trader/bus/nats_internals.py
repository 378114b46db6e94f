"""The only place that reaches into nats-py's private parts, for the bulk parser (``trader.bus.wire``).

nats-py has no hook to read a subscription's messages raw, so the bulk parser replaces the
connection's parser (``Client._ps``), hands what it does not take to ``Client._process_msg``, parses
headers with ``Client._parse_header_lines``, and needs the ids nats-py gives subscriptions (``_sid``,
``Subscription._id``) and the connection behind a JetStream context (``_nc``). None of that is
nats-py's promise: it was written against ``SUPPORTED`` (pinned in pyproject.toml), and importing
this module with any other nats-py installed fails at once, saying so, rather than misreading the wire.
``tests/unit/bus/test_nats_internals.py`` checks the bulk parser against nats-py's own, message by message.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from importlib.metadata import PackageNotFoundError, version
from typing import Any, cast

from nats.aio.client import Client
from nats.aio.subscription import Subscription
from nats.js import JetStreamContext
from nats.protocol.parser import AWAITING_CONTROL_LINE, AWAITING_MSG_PAYLOAD, CRLF_SIZE, Parser

SUPPORTED = "2.16.0"

__all__ = [
    "AWAITING_CONTROL_LINE",
    "AWAITING_MSG_PAYLOAD",
    "CRLF_SIZE",
    "SUPPORTED",
    "Parser",
    "UnsupportedNatsPy",
    "begun_message",
    "check_version",
    "connection_of",
    "end_begun_message",
    "install_parser",
    "message_handler",
    "next_subscription_id",
    "parse_header_lines",
    "parser_of",
    "subscription_connection",
    "subscription_id",
]

ProcessMsg = Callable[[int, bytes, bytes, bytes, bytes | None], Awaitable[None]]


class UnsupportedNatsPy(ImportError):
    """The nats-py installed is not the one the bulk parser was written for."""


def check_version(installed: str | None) -> None:
    """Raises ``UnsupportedNatsPy`` unless ``installed`` is the nats-py version this module knows."""
    if installed != SUPPORTED:
        raise UnsupportedNatsPy(
            f"trader reads the NATS wire through nats-py {SUPPORTED}'s private parser, but nats-py "
            f"{installed or '(not installed)'} is installed: install nats-py=={SUPPORTED} (as pyproject.toml "
            "pins it), or check trader.bus.nats_internals against the new version and its differential "
            "test (tests/unit/bus/test_nats_internals.py) before changing SUPPORTED"
        )


def _installed() -> str | None:
    try:
        return version("nats-py")
    except PackageNotFoundError:
        return None


check_version(_installed())


def install_parser(nc: Client, parser: Parser) -> None:
    """Makes ``parser`` the connection's; before connecting (the read loop never changes parsers)."""
    nc._ps = parser


def parser_of(nc: Client) -> Parser:
    return nc._ps


def message_handler(nc: Client) -> ProcessMsg:
    """What nats-py does with a message its parser has cut: a ``Msg`` for its subscription."""
    # nats-py annotates the headers as bytes; it passes None when a message has none.
    return cast(ProcessMsg, nc._process_msg)


def parse_header_lines(lines: bytes) -> dict[str, str]:
    """nats-py's parsing of the header lines after ``NATS/1.0\\r\\n``."""
    return Client._parse_header_lines(lines)


def next_subscription_id(nc: Client) -> int:
    """The id nats-py will give the connection's next subscription (it counts up from the last)."""
    return nc._sid + 1


def subscription_id(sub: Subscription) -> int:
    return sub._id


def subscription_connection(sub: Subscription) -> Client:
    return sub._conn


def connection_of(js: JetStreamContext) -> Client:
    """The connection a JetStream context works through."""
    return js._nc


def begun_message(parser: Parser) -> tuple[Any, int, int] | None:
    """The message nats-py's own parsing stopped in the middle of: (its ``MSG`` arguments, header size,
    total size); None when it stopped between operations."""
    if parser.state != AWAITING_MSG_PAYLOAD:
        return None
    return parser.msg_arg, parser.header_needed, parser.needed


def end_begun_message(parser: Parser) -> None:
    """nats-py's parser is between operations again (its begun message taken)."""
    parser.state, parser.header_needed = AWAITING_CONTROL_LINE, 0
