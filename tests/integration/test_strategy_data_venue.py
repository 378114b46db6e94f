"""Mock data never reaches a strategy on live data, on the real servers: a strategy trading the live
venue ``binance`` hears of binance's bars only, while the mock feed's bars of the same symbol cross
first; its orders name binance.

One stack (`--services strategy`): the test publishes the bars itself with nats-py.
"""

from __future__ import annotations

import asyncio
import json
import time
from collections.abc import AsyncIterator, Iterator
from decimal import Decimal
from pathlib import Path
from typing import Any

import httpx
import msgspec
import pytest
from nats.errors import TimeoutError as NatsTimeout
from nats.js import JetStreamContext

from tests.stack_helpers import Stack
from trader.bus.connection import connect_nats
from trader.bus.streams import bar_subject
from trader.messages import OrderRequest, encode
from trader.strategies.testing import make_bar

pytestmark = pytest.mark.integration

PARAMS = {"fast": "2", "slow": "3", "timeframe": "1s", "quantity": "0.5"}
# A live strategy: its data venue is unset, so it is its venue's own (live-gateway's binance).
STRATEGY = {
    "name": "live-mac",
    "kind": "ma_cross",
    "symbols": ["BTCUSDT"],
    "params": PARAMS,
    "venue": "binance",
}
# With windows 2 and 3: a cross up at the 5th close.
CLOSES = ["10", "9", "8", "9", "12"]


@pytest.fixture(scope="module")
def stack(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Stack]:
    s = Stack.create(
        Path(tmp_path_factory.mktemp("data-venue")),
        TRADER_STRATEGY__STRATEGIES=json.dumps([STRATEGY]),
        TRADER_EXEQ__VENUES=json.dumps({"paper": {}, "binance": {"kind": "ccxt"}}),
        TRADER_ROUTING__VENUES=json.dumps({"*": ["paper", "binance"]}),
        TRADER_LIVE_GATEWAY__VENUES=json.dumps({"binance": {"symbols": ["BTCUSDT"]}}),
    )
    s.trader("up", "--detach", "--services", "strategy", check=True)
    try:
        yield s
    finally:
        s.trader("down", timeout=120)


@pytest.fixture
async def js(stack: Stack) -> AsyncIterator[JetStreamContext]:
    nc = await connect_nats(stack.nats_url, "test")
    assert nc is not None
    yield nc.jetstream()
    await nc.close()


def health(stack: Stack) -> dict[str, Any]:
    return httpx.get(f"http://127.0.0.1:{stack.ports['strategy']}/health", timeout=5).json()


async def publish_bars(js: JetStreamContext, venue: str, body_venue: str, first_start: int) -> None:
    """CLOSES as 1s bars on ``venue``'s subject, each saying ``body_venue`` in its body."""
    for i, close in enumerate(CLOSES):
        start = first_start + i * 1_000
        bar = make_bar(start, close, "BTCUSDT", timeframe="1s", venue=body_venue)
        headers = {"Nats-Msg-Id": f"{venue}:{body_venue}:{start}"}
        await js.publish(bar_subject("1s", venue, "BTCUSDT"), encode(bar), headers=headers)


async def assert_quiet(sub: Any) -> None:
    try:
        msg = await sub.next_msg(timeout=1.5)
    except NatsTimeout:
        return
    raise AssertionError(f"unexpected message on {msg.subject}: {msg.data!r}")


async def test_a_live_strategy_trades_on_its_venues_bars_only(stack: Stack, js: JetStreamContext) -> None:
    deadline = time.monotonic() + 30
    while not (details := health(stack)).get("rebuilt") and time.monotonic() < deadline:
        await asyncio.sleep(0.2)
    running = details["strategies"]["live-mac"]
    assert running["data_venue"] == "binance"
    submits = await js.subscribe("order.submit.live-mac", ordered_consumer=True)
    start = (time.time_ns() // 1_000_000_000) * 1_000

    await publish_bars(js, "mock", "mock", start)  # the mock feed crosses: not this strategy's market
    await publish_bars(js, "binance", "mock", start + 10_000)  # mock bodies on its subject: refused
    await assert_quiet(submits)
    assert health(stack)["strategies"]["live-mac"]["foreign_data_refused"] == len(CLOSES)

    await publish_bars(js, "binance", "binance", start + 20_000)
    msg = await submits.next_msg(timeout=10)
    buy = msgspec.json.decode(msg.data, type=OrderRequest)
    assert (buy.side, buy.quantity, buy.venue) == ("buy", Decimal("0.5"), "binance")
