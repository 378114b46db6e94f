"""A durable consumer made by an older version of its service (risk's, before the intake: explicit
acknowledgements, ``order.submit.>`` only) is where the service's work input resumes on a real
nats-server when it has no checkpoint yet: nothing that durable acknowledged comes again, the input
takes the subjects asked now, and the messages after it come once each."""

from __future__ import annotations

import asyncio

import pytest
from nats.aio.msg import Msg
from nats.js.api import AckPolicy, ConsumerConfig, DeliverPolicy, StreamConfig

from tests.stack_helpers import RestartableNats
from trader.bus.connection import connect_nats
from trader.bus.publish import Outgoing
from trader.bus.streams import STATE_BUCKET
from trader.config import Settings
from trader.runtime.intake import Input, Intake, Mode, Received, checkpoint_key
from trader.runtime.service import Runtime

pytestmark = pytest.mark.integration

REQUESTS = Input("ORDERS", ("order.submit.>", "order.cancel.>"), bytes, Mode.WORK, name="risk", decode=bytes)


async def test_a_durable_with_older_subjects_is_where_the_work_input_resumes(
    restartable_nats: RestartableNats,
) -> None:
    rt = Runtime("risk", Settings())
    rt.nc = await connect_nats(restartable_nats.url, "test")
    assert rt.nc is not None
    rt._js = js = rt.nc.jetstream()
    try:
        await js.add_stream(StreamConfig(name="ORDERS", subjects=["order.>"]))
        await js.publish("order.submit.s1", b"submit-1")
        await js.publish("order.cancel.s1", b"cancel-1")
        old = ConsumerConfig(
            durable_name="risk",
            filter_subject="order.submit.>",
            ack_policy=AckPolicy.EXPLICIT,
            deliver_policy=DeliverPolicy.ALL,
        )
        got: asyncio.Queue[Msg] = asyncio.Queue()
        sub = await js.subscribe(
            "order.submit.>", stream="ORDERS", durable="risk", cb=got.put, manual_ack=True, config=old
        )
        first = await asyncio.wait_for(got.get(), 10)
        assert first.data == b"submit-1"
        await first.ack_sync()
        await asyncio.sleep(0.2)  # the acknowledgement stored
        await sub.unsubscribe()

        await js.publish("order.cancel.s1", b"cancel-2")
        await js.publish("order.submit.s1", b"submit-2")
        seen: list[bytes] = []

        def handle(received: Received[bytes]) -> list[Outgoing]:
            seen.append(received.value)
            return []

        intake = Intake(rt, REQUESTS, handle)
        await intake.start()
        reading = asyncio.create_task(intake.run())
        try:
            async with asyncio.timeout(10):
                while b"submit-2" not in seen:
                    await asyncio.sleep(0.05)
            await asyncio.sleep(0.3)
            # What the durable acknowledged does not come again; the messages after it, of both
            # subjects, do, once each. (cancel-1, of the subject it did not have, stored after its last
            # acknowledged message, may: the server tells only where its acknowledgements reach.)
            assert b"submit-1" not in seen
            assert seen[-2:] == [b"cancel-2", b"submit-2"]
            assert len(seen) == len(set(seen))
            info = await js.consumer_info("ORDERS", "risk")
            assert sorted(info.config.filter_subjects or []) == ["order.cancel.>", "order.submit.>"]
            # Its own checkpoint from now on.
            kv = await js.key_value(STATE_BUCKET)
            assert (await kv.get(checkpoint_key("risk", "risk"))).value == b"4"
        finally:
            rt.request_stop()
            await asyncio.wait_for(reading, 10)
            await intake.stop()
    finally:
        await rt.nc.close()
