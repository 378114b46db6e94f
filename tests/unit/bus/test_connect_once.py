"""`connect_once`, the connection of a short-lived command: against a server that never answers it gives
up after its two quick tries with `NatsUnreachable`, rather than retrying."""

from __future__ import annotations

import asyncio

import pytest

from trader.bus.connection import NatsUnreachable, connect_once


async def test_a_silent_server_is_tried_at_most_twice_then_unreachable() -> None:
    tries = 0
    held: list[asyncio.StreamWriter] = []

    async def accept(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        nonlocal tries
        tries += 1
        held.append(writer)  # never sends INFO: the client's handshake times out

    server = await asyncio.start_server(accept, "127.0.0.1", 0)
    port = server.sockets[0].getsockname()[1]
    try:
        with pytest.raises(NatsUnreachable, match=f"cannot reach NATS at nats://127.0.0.1:{port}"):
            await connect_once(f"nats://127.0.0.1:{port}", "test", timeout=0.2)
        await asyncio.sleep(0.3)  # a retry after giving up would connect here
    finally:
        for writer in held:
            writer.close()
        server.close()
    assert 1 <= tries <= 2
