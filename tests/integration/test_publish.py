"""Publishing to JetStream on a real nats-server: acknowledgements read in bulk on the publisher's own
inbox give where each message was stored, duplicates by ``Nats-Msg-Id``, and a clear failure for a
subject no stream takes."""

from __future__ import annotations

import contextlib
import itertools
from collections.abc import AsyncIterator

import pytest
from nats.aio.client import Client as NATS
from nats.js.api import StreamConfig

from tests.stack_helpers import Stack
from trader.bus.connection import connect_nats
from trader.bus.publish import Outgoing, publish_acked, publish_batch, publisher_of
from trader.bus.read import Stored, replay

pytestmark = pytest.mark.integration

_streams = itertools.count()


async def _fresh_stream(nc: NATS) -> tuple[str, str]:
    """A new stream and the subject prefix it takes."""
    js = nc.jetstream()
    n = next(_streams)
    name, prefix = f"PUBTEST{n}", f"pt{n}"
    with contextlib.suppress(Exception):
        await js.delete_stream(name)
    await js.add_stream(StreamConfig(name=name, subjects=[f"{prefix}.>"]))
    return name, prefix


def _batch(prefix: str, count: int) -> list[Outgoing]:
    return [
        Outgoing(f"{prefix}.{i % 3}", b"%d" % i, msg_id=f"m{i}", headers={"Trader-N": str(i)})
        for i in range(count)
    ]


async def _stored(nc: NATS, stream: str, prefix: str) -> list[Stored]:
    found: list[Stored] = []

    async def keep(stored: Stored) -> None:
        found.append(stored)

    await replay(nc.jetstream(), stream, f"{prefix}.>", keep)
    return found


@pytest.fixture
async def client(stack: Stack) -> AsyncIterator[NATS]:
    """A connection as the services make it."""
    made = await connect_nats(stack.nats_url, "test")
    assert made is not None
    assert publisher_of(made.jetstream()) is publisher_of(made.jetstream())  # one per connection
    yield made
    await made.close()


async def test_a_batch_is_stored_once_in_order_and_a_repeat_is_all_duplicates(client: NATS) -> None:
    stream, prefix = await _fresh_stream(client)
    items = _batch(prefix, 2_500)

    first = await publish_batch(client.jetstream(), items)
    assert (first.stored, first.duplicates, first.failed, first.errors) == (2_500, 0, [], [])
    again = await publish_batch(client.jetstream(), items)
    assert (again.stored, again.duplicates, again.failed) == (0, 2_500, [])

    stored = await _stored(client, stream, prefix)
    assert [(s.seq, s.subject, s.data) for s in stored] == [
        (i + 1, item.subject, item.payload) for i, item in enumerate(items)
    ]
    assert stored[7].headers == {"Trader-N": "7", "Nats-Msg-Id": "m7"}


async def test_each_acknowledgement_names_the_stream_and_sequence(nc: NATS) -> None:
    stream, prefix = await _fresh_stream(nc)
    futures = [await publish_acked(nc.jetstream(), f"{prefix}.x", b"%d" % i) for i in range(5)]
    acks = [await f for f in futures]
    assert [(a.stream, a.seq, a.duplicate) for a in acks] == [(stream, i + 1, False) for i in range(5)]


async def test_a_subject_no_stream_takes_fails_and_is_given_back(client: NATS) -> None:
    _stream, prefix = await _fresh_stream(client)
    items = [Outgoing(f"{prefix}.ok", b"1"), Outgoing("nostream.here", b"2"), Outgoing(f"{prefix}.ok", b"3")]
    result = await publish_batch(client.jetstream(), items, ack_timeout=5)
    assert result.stored == 2
    assert result.failed == [items[1]]
    assert len(result.errors) == 1
    assert "NoStreamResponse" in result.errors[0]
