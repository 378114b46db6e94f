"""A durable consumer made by an older version of its service with fewer subjects (risk's, before it
judged cancel-replaces: ``order.submit.>`` only) takes the subjects asked now on a real nats-server,
keeping its place: nothing it acknowledged comes again, and the new subject's messages come from then on."""

from __future__ import annotations

import asyncio

import pytest
from nats.aio.msg import Msg
from nats.js.api import StreamConfig

from tests.stack_helpers import RestartableNats
from trader.bus.connection import connect_nats
from trader.bus.read import DurableConsumer

pytestmark = pytest.mark.integration


async def _drain(inbox: asyncio.Queue[Msg], count: int) -> list[Msg]:
    got = [await asyncio.wait_for(inbox.get(), 10) for _ in range(count)]
    for msg in got:
        await msg.ack()
    return got


async def test_a_durable_with_older_subjects_takes_the_new_ones_and_keeps_its_place(
    restartable_nats: RestartableNats,
) -> None:
    nc = await connect_nats(restartable_nats.url, "test")
    assert nc is not None
    js = nc.jetstream()
    try:
        await js.add_stream(StreamConfig(name="ORDERS", subjects=["order.>"]))
        await js.publish("order.submit.s1", b"submit-1")
        await js.publish("order.cancel.s1", b"cancel-1")
        old_inbox: asyncio.Queue[Msg] = asyncio.Queue()
        old = DurableConsumer(js, stream="ORDERS", name="risk", subjects=["order.submit.>"], inbox=old_inbox)
        await old.start()
        assert [m.data for m in await _drain(old_inbox, 1)] == [b"submit-1"]
        await asyncio.sleep(0.2)  # the acknowledgement stored
        await old.stop()

        await js.publish("order.cancel.s1", b"cancel-2")
        await js.publish("order.submit.s1", b"submit-2")
        inbox: asyncio.Queue[Msg] = asyncio.Queue()
        new = DurableConsumer(
            js, stream="ORDERS", name="risk", subjects=["order.submit.>", "order.cancel.>"], inbox=inbox
        )
        await new.start()
        try:
            # cancel-1 was stored before the durable's last acknowledged message: behind it.
            assert [m.data for m in await _drain(inbox, 2)] == [b"cancel-2", b"submit-2"]
            info = await js.consumer_info("ORDERS", "risk")
            assert sorted(info.config.filter_subjects or []) == ["order.cancel.>", "order.submit.>"]
            await asyncio.sleep(0.3)
            assert inbox.empty()
        finally:
            await new.stop()
    finally:
        await nc.close()
