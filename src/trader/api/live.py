"""The WebSocket's side of the api: who is connected, what each asked for, and the frames to send.

A frame is built once per bus message (``frame``) and handed to every client that asked for it. Each
client has a bounded queue: a client that cannot keep up is cut off (closed with 1013, "try again
later") rather than let the api's memory grow; nothing else waits for a slow browser.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Iterable

import msgspec

CHANNELS = ("orders", "fills", "positions", "pnl", "trading", "actions")
QUEUE_LIMIT = 10_000

_encoder = msgspec.json.Encoder()  # decimals as strings, as everywhere in the api


def frame(kind: str, data: object, bus_ms: int | None) -> bytes:
    """One message to the browser: ``{"type", "data", "bus_ms", "sent_ms"}``."""
    return _encoder.encode(
        {"type": kind, "data": data, "bus_ms": bus_ms, "sent_ms": time.time_ns() // 1_000_000}
    )


class Client:
    """One connected WebSocket: its channels, its market subjects, and what waits to be sent."""

    def __init__(self, name: str) -> None:
        self.name = name  # the token's name
        self.channels: set[str] = set()
        self.subjects: set[str] = set()  # market.tick.<venue>.<SYMBOL>, market.bar.<tf>.<venue>.<SYMBOL>
        self.queue: asyncio.Queue[bytes] = asyncio.Queue(QUEUE_LIMIT)
        self.overflowed = asyncio.Event()

    def push(self, data: bytes) -> None:
        try:
            self.queue.put_nowait(data)
        except asyncio.QueueFull:
            self.overflowed.set()


class Hub:
    """Every connected client; what the bus says goes to those that asked for it."""

    def __init__(self) -> None:
        self.clients: set[Client] = set()
        self.sent = 0

    def join(self, name: str) -> Client:
        client = Client(name)
        self.clients.add(client)
        return client

    def leave(self, client: Client) -> None:
        self.clients.discard(client)

    def wanted(self, channel: str) -> bool:
        return any(channel in c.channels for c in self.clients)

    def broadcast(self, channel: str, kind: str, data: object, bus_ms: int | None) -> None:
        """To every client of ``channel``; the frame is made only when someone listens."""
        listeners = [c for c in self.clients if channel in c.channels]
        if listeners:
            self._send(listeners, frame(kind, data, bus_ms))

    def market(self, subject: str, kind: str, data: object, bus_ms: int | None) -> None:
        listeners = [c for c in self.clients if subject in c.subjects]
        if listeners:
            self._send(listeners, frame(kind, data, bus_ms))

    def _send(self, clients: Iterable[Client], data: bytes) -> None:
        for client in clients:
            client.push(data)
            self.sent += 1

    def subjects(self) -> set[str]:
        """The market subjects some client wants."""
        return {s for c in self.clients for s in c.subjects}
