"""Reading the NATS wire fast for the subscriptions that take their messages in bulk.

nats-py parses every message with a regex, awaits two coroutines for it, parses its headers into a
dict and builds a ``Msg`` object, before anyone has looked at it: about 6 µs a message on the
reference machine, 40 % of what the tick consumers spend. ``BulkParser`` replaces nats-py's parser on
the connection (through ``trader.bus.nats_internals``, the one module that touches nats-py's private
parts and checks its version). For a subscription *routed* to a
sink, it cuts each chunk read from the socket into raw ``(subject, reply, headers, payload)`` tuples
and hands the sink one list per chunk; the headers stay raw bytes, parsed only if someone asks. Every
other message, and every other operation (PING, INFO, -ERR, ...), goes through nats-py exactly as
before, so connecting, reconnecting, requests and JetStream status messages are untouched.

``PushInbox`` is a JetStream push consumer read that way: the bulk consumers' one way in.
"""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import Awaitable, Callable
from typing import Any

import structlog
from nats.aio.client import Client
from nats.aio.msg import Msg
from nats.aio.subscription import Subscription
from nats.errors import ProtocolError
from nats.js import JetStreamContext
from nats.js.api import ConsumerConfig, ConsumerInfo

from trader.bus import nats_internals as internals
from trader.bus.nats_internals import CRLF_SIZE, Parser
from trader.bus.nats_internals import connection_of as connection_of  # for the readers

RawMessage = tuple[bytes, bytes, bytes | None, bytes]  # subject, reply, raw headers or None, payload
Sink = Callable[[list[RawMessage]], None]

_log = structlog.get_logger("trader.bus.wire")
_CRLF = b"\r\n"
_HEADER_LINE = b"NATS/1.0"
_STATUS_AT = len(_HEADER_LINE)  # a space there: a status message (heartbeat, flow control, 404, ...)


def parse_headers(raw: bytes | None) -> dict[str, str] | None:
    """The headers of a data message, as nats-py would have given them."""
    if raw is None:
        return None
    return internals.parse_header_lines(raw[_STATUS_AT + CRLF_SIZE :]) or None


class BulkParser(Parser):
    def __init__(self, nc: Client | None = None) -> None:
        super().__init__(nc)
        self.routes: dict[int, Sink] = {}
        self._done = 0
        self._need = 0  # bytes the first operation in the buffer needs: a big message arriving

    def reset(self) -> None:  # on every (re)connection
        super().reset()
        self._need = 0

    def route(self, sid: int, sink: Sink) -> None:
        """From now on, the data messages of subscription ``sid`` go to ``sink``, one list per read."""
        self.routes[sid] = sink

    def unroute(self, sid: int) -> None:
        self.routes.pop(sid, None)

    async def parse(self, data: bytes = b"") -> None:
        if not self.routes:
            self._need = 0
            await super().parse(data)
            return
        self.buf.extend(data)
        if len(self.buf) < self._need:
            return  # not worth cutting again before the message has all arrived
        self._need = 0
        routed: dict[int, list[RawMessage]] = {}
        try:
            # nats-py's own parsing may have stopped in a message's middle (before the first route).
            begun = internals.begun_message(self)
            if begun is not None and not await self._finish_message(routed, *begun):
                return
            self._done = 0
            try:
                await self._cut(routed)
            finally:
                del self.buf[: self._done]
        finally:
            for sid, messages in routed.items():
                sink = self.routes.get(sid)
                if sink is None:
                    continue
                try:
                    sink(messages)
                except Exception:  # a reader's fault must not stop the connection's read loop
                    _log.exception("bulk reader failed", sid=sid, messages=len(messages))

    async def _cut(self, routed: dict[int, list[RawMessage]]) -> None:
        """Cuts the buffer into operations, up to the first one not complete yet; ``_done`` is where
        the operations not yet taken begin. (This loop runs for every message: it slices one
        immutable copy of the buffer and leaves everything else for later.)"""
        data, routes, nc = bytes(self.buf), self.routes, self.nc
        to_nats_py = internals.message_handler(nc)
        size, find = len(data), data.find
        pos = 0
        while pos < size:
            end = find(_CRLF, pos)
            if end < 0:
                break
            first = data[pos]
            if first != 72 and first != 77:  # neither "HMSG" nor "MSG": a rare operation, for nats-py
                self._done = end + CRLF_SIZE
                await Parser(nc).parse(data[pos : self._done])
                pos = self._done
                continue
            sid, subject, reply, header_size, total = _control_line(data[pos:end])
            start = end + CRLF_SIZE
            stop = start + total
            if stop + CRLF_SIZE > size:
                self._need = stop + CRLF_SIZE - pos  # its control line is read again once it has
                break
            pos = self._done = stop + CRLF_SIZE
            if header_size:
                body = start + header_size
                headers: bytes | None = data[start:body]
                if sid not in routes or data[start + _STATUS_AT] == 32:  # a space: a status message
                    await to_nats_py(sid, subject, reply, data[body:stop], headers)
                    continue
            else:
                body, headers = start, None
                if sid not in routes:
                    await to_nats_py(sid, subject, reply, data[body:stop], headers)
                    continue
            messages = routed.get(sid)
            if messages is None:
                messages = routed[sid] = []
            messages.append((subject, reply, headers, data[body:stop]))

    async def _finish_message(
        self, routed: dict[int, list[RawMessage]], arg: dict[str, Any], header_size: int, needed: int
    ) -> bool:
        """Takes the message nats-py's parser began; False if it has still not all arrived."""
        buf = self.buf
        if len(buf) < needed + CRLF_SIZE:
            return False
        headers = bytes(buf[:header_size]) if header_size else None
        payload = bytes(buf[header_size:needed])
        del buf[: needed + CRLF_SIZE]
        internals.end_begun_message(self)
        sid, subject, reply = arg["sid"], bytes(arg["subject"]), bytes(arg["reply"])
        if sid in self.routes and (headers is None or headers[_STATUS_AT : _STATUS_AT + 1] != b" "):
            routed.setdefault(sid, []).append((subject, reply, headers, payload))
        else:
            await internals.message_handler(self.nc)(sid, subject, reply, payload, headers)
        return True


def _control_line(line: bytes) -> tuple[int, bytes, bytes, int, int]:
    """``MSG <subject> <sid> [reply] <size>`` or ``HMSG <subject> <sid> [reply] <header size> <size>``:
    (sid, subject, reply, header size, total size)."""
    args = line.split()  # the protocol allows any run of spaces and tabs between arguments
    try:
        if args[0] == b"HMSG" and len(args) in (5, 6):
            header_size, total = int(args[-2]), int(args[-1])
            reply = args[3] if len(args) == 6 else b""
            if not 0 <= header_size <= total:
                raise ValueError(line)
        elif args[0] == b"MSG" and len(args) in (4, 5):
            header_size, total = 0, int(args[-1])
            reply = args[3] if len(args) == 5 else b""
        else:
            raise ValueError(line)
        return int(args[2]), args[1], reply, header_size, total
    except ValueError as exc:
        raise ProtocolError("nats: malformed MSG") from exc


def reads_in_bulk(nc: Client) -> bool:
    """The connection was made with a ``BulkParser`` (by ``trader.bus.connection.connect_nats``)."""
    return isinstance(internals.parser_of(nc), BulkParser)


def bulk_parser(nc: Client) -> BulkParser:
    """The connection's ``BulkParser``; a ``TypeError`` saying how to connect for a plain one."""
    parser = internals.parser_of(nc)
    if not isinstance(parser, BulkParser):
        raise TypeError("reading in bulk needs a connection made by trader.bus.connection.connect_nats")
    return parser


def bulk_client() -> Client:
    """A nats-py client, not connected yet, that reads the wire with a ``BulkParser``."""
    nc = Client()
    internals.install_parser(nc, BulkParser(nc))  # before connecting: the read loop never changes parsers
    return nc


async def subscribe_raw(
    nc: Client, subject: str, sink: Sink, status: Callable[[Msg], Awaitable[None]] | None = None
) -> Subscription:
    """A subscription whose data messages go raw to ``sink``, from the very first: it is routed under
    the id nats-py is about to give it (ids are handed out in order). ``status`` gets what the parser
    leaves to nats-py (JetStream status messages). Stop it with ``unsubscribe_raw``."""
    parser = bulk_parser(nc)
    expected = internals.next_subscription_id(nc)
    parser.route(expected, sink)
    try:
        sub = await nc.subscribe(subject, cb=status or _ignore)
    except BaseException:
        parser.unroute(expected)
        raise
    got = internals.subscription_id(sub)
    if got != expected:  # another subscription came first after all
        parser.unroute(expected)
        parser.route(got, sink)
    return sub


async def unsubscribe_raw(sub: Subscription) -> None:
    with contextlib.suppress(Exception):
        await sub.unsubscribe()
    nc = internals.subscription_connection(sub)
    if reads_in_bulk(nc):
        bulk_parser(nc).unroute(internals.subscription_id(sub))


class PushInbox:
    """A push consumer's messages, raw and in bulk: a subscription routed to this inbox before the
    consumer is created on it, so that every message takes the fast way."""

    def __init__(self, nc: Client, status: Callable[[Msg], Awaitable[None]] | None = None) -> None:
        bulk_parser(nc)  # fails now, not at the first message
        self.nc = nc
        self.messages: list[RawMessage] = []  # arrived, not taken yet
        self.received = 0  # messages arrived since the inbox opened
        self._arrived = asyncio.Event()
        self._sub: Subscription | None = None
        self._status = status

    async def open(self, js: JetStreamContext, stream: str, config: ConsumerConfig) -> ConsumerInfo:
        """Creates the consumer ``config`` describes, delivering here. JetStream's status messages
        (heartbeats, flow control) go to ``status`` as nats-py ``Msg``s; without it, nowhere."""
        self._sub = await subscribe_raw(self.nc, self.nc.new_inbox(), self._receive, self._status)
        config.deliver_subject = self._sub.subject
        return await js.add_consumer(stream, config)

    def _receive(self, messages: list[RawMessage]) -> None:
        self.messages.extend(messages)
        self.received += len(messages)
        self._arrived.set()

    @property
    def subject(self) -> str | None:
        """Where the consumer delivers (None before ``open``)."""
        return self._sub.subject if self._sub is not None else None

    def wake(self) -> None:
        """Ends a ``wait`` now, with nothing arrived (the reader has something else to look at)."""
        self._arrived.set()

    def take(self, limit: int | None = None) -> list[RawMessage]:
        """What has arrived, the oldest ``limit`` at most."""
        messages = self.messages
        if limit is None or len(messages) <= limit:
            self.messages = []
            return messages
        self.messages = messages[limit:]
        return messages[:limit]

    async def wait(self, timeout: float) -> bool:
        """Until something arrives (True) or ``timeout`` passes (False)."""
        if self.messages:
            return True
        self._arrived.clear()
        try:
            async with asyncio.timeout(timeout):
                await self._arrived.wait()
        except TimeoutError:
            return False
        return True

    async def ack(self, reply: bytes) -> None:
        """Acknowledges the message ``reply`` came with (and, with ``AckPolicy.ALL``, all before it)."""
        with contextlib.suppress(Exception):  # a lost ack only means a redelivery
            await self.nc.publish(reply.decode())

    async def close(self) -> None:
        if self._sub is not None:
            await unsubscribe_raw(self._sub)
            self._sub = None


async def _ignore(msg: Msg) -> None:
    return None
