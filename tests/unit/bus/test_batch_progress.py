"""The lag of a durable consumer's batch (the oms's and risk's), for the runtime's watch of stalls."""

from __future__ import annotations

from nats.aio.msg import Msg

from trader.bus.read import batch_progress
from trader.runtime.health import ConsumerWatch


def message(seq: int, stored_ms: int, pending: int) -> Msg:
    reply = f"$JS.ACK.ORDERS.risk.1.{seq}.{seq}.{stored_ms * 1_000_000}.{pending}"
    return Msg(_client=None, subject="order.submit.s", reply=reply, data=b"{}")  # type: ignore[arg-type]


def test_a_batch_tells_what_is_pending_behind_its_last_message() -> None:
    batch = [message(7, 1_795_600_000_000, 900), message(8, 1_795_600_000_500, 899)]
    assert batch_progress(batch) == (899, 1_795_600_000_500)
    assert batch_progress([]) == (0, None)


def test_a_consumer_far_behind_is_a_problem_and_an_idle_one_is_not() -> None:
    consumers = ConsumerWatch()
    stored = 1_795_600_000_000
    consumers.note("requests", *batch_progress([message(8, stored, 5_000)]), now=0.0)
    behind = consumers.problems(now=1.0, now_ms=stored + 3_600_000)
    assert [p.reason for p in behind] == [
        "consumer requests is 60 min behind its stream (5,000 messages not yet taken)"
    ]
    consumers.note("requests", *batch_progress([]), now=2.0)  # idle: caught up, nothing pending
    assert consumers.problems(now=3.0, now_ms=stored + 7_200_000) == []
