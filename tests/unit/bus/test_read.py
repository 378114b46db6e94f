"""The outbox and the envelopes of trader.bus.read (no server: pure logic)."""

from __future__ import annotations

import asyncio

from trader.bus.publish import Outbox, Outgoing
from trader.bus.read import Stored
from trader.runtime.consumer import Delivery


async def test_the_outbox_publishes_in_order_and_drains_before_close() -> None:
    published: list[list[str]] = []
    gate = asyncio.Event()

    async def publish(items: list[Outgoing]) -> None:
        await gate.wait()  # an acknowledgement that takes a while
        published.append([o.subject for o in items])

    outbox = Outbox(publish)
    outbox.put([Outgoing("1", b"")])
    await asyncio.sleep(0)  # the first batch is in flight
    outbox.put([Outgoing("2", b"")])
    outbox.put([Outgoing("3", b"")])
    gate.set()
    await outbox.close()
    assert published == [["1"], ["2", "3"]]


RAW = b"NATS/1.0\r\nNats-Msg-Id: risk:a-1\r\nTrader-Exec-Id: e-7\r\n\r\n"


def test_raw_headers_are_parsed_when_asked_for_and_once() -> None:
    stored = Stored.raw(5, b"order.state.s", b"{}", RAW, 1_700_000_000_000)
    assert stored._headers is None  # not parsed yet
    assert stored.headers == {"Nats-Msg-Id": "risk:a-1", "Trader-Exec-Id": "e-7"}
    assert stored.headers is stored.headers  # parsed once
    assert (stored.seq, stored.subject, stored.data, stored.arrival_ms) == (
        5,
        "order.state.s",
        b"{}",
        1_700_000_000_000,
    )


def test_no_headers_and_parsed_headers_and_deliveries() -> None:
    assert Stored.raw(1, b"s", b"", None, 0).headers is None
    assert Stored(1, "s", b"", {"A": "b"}, 0).headers == {"A": "b"}
    delivery = Delivery(9, 123, "exec.report.paper", b"{}", RAW)
    stored = Stored.of(delivery)
    assert (stored.seq, stored.arrival_ms, stored.subject) == (9, 123, "exec.report.paper")
    assert stored.headers == {"Nats-Msg-Id": "risk:a-1", "Trader-Exec-Id": "e-7"}
