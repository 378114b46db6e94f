"""The strategy service on the real servers: bars in, OrderRequests out, rejections seen, the kill
switch honoured, and a restart after SIGKILL that rebuilds open orders and positions from the streams.

One stack (`--services strategy`) runs four ma_cross strategies on 1 s bars with windows 2 and 3, one
per symbol so that the tests do not share a strategy, and two strategies that cannot load. The test
plays the rest of the flow itself: it publishes bars, ticks, order states and fills with nats-py.
The warm-up test freezes the service, publishes bars, and kills it: the supervisor's restart warms up
from them while more bars keep coming.
"""

from __future__ import annotations

import asyncio
import json
import os
import signal
import time
from collections.abc import AsyncIterator, Callable, Iterator
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
from trader.bus.streams import STATE_BUCKET, TRADING_STATE_KEY, order_state_subject
from trader.messages import ExecutionReport, MarketTick, Order, OrderRequest, TradingState, encode
from trader.strategies.testing import make_bar

pytestmark = pytest.mark.integration

D = Decimal
PARAMS = {"fast": "2", "slow": "3", "timeframe": "1s", "quantity": "0.5"}
STRATEGIES = [
    {"name": "mac-a", "kind": "ma_cross", "symbols": ["BTCUSDT"], "params": PARAMS},
    {"name": "mac-b", "kind": "ma_cross", "symbols": ["ETHUSDT"], "params": PARAMS},
    {"name": "mac-c", "kind": "ma_cross", "symbols": ["SOLUSDT"], "params": PARAMS},
    {
        "name": "mac-w",
        "kind": "ma_cross",
        "symbols": ["ADAUSDT"],
        "params": {**PARAMS, "allow_short": "true"},
        "warmup_bars": 5,  # more than slow: a cross among them, which must send nothing
    },
    {"name": "broken-kind", "kind": "nowhere.at_all:Strategy", "symbols": ["XRPUSDT"]},
    {
        "name": "broken-params",
        "kind": "ma_cross",
        "symbols": ["XRPUSDT"],
        "params": {"fast": "9", "slow": "3"},
    },
]
# With windows 2 and 3: below at the 3rd close, a cross up at the 5th, down at the 7th, up at the 9th.
CLOSES = ["10", "9", "8", "9", "12", "11", "8", "7", "12"]
QUIET_S = 1.5  # how long "nothing was published" is watched for


@pytest.fixture(scope="module")
def stack(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Stack]:
    s = Stack.create(
        Path(tmp_path_factory.mktemp("strategy")),
        TRADER_STRATEGY__STRATEGIES=json.dumps(STRATEGIES),
        TRADER_SUPERVISOR__RESTART_BACKOFF_INITIAL_S="0.2",
    )
    up = s.trader("up", "--detach", "--services", "strategy")
    try:
        # The two strategies that cannot load leave the service degraded: up says so and exits 1.
        assert up.returncode == 1, up.stdout + up.stderr + s.log("supervisor")
        assert "strategy broken-kind could not be loaded" in up.stderr, up.stderr
        yield s
    finally:
        s.trader("down", timeout=120)


@pytest.fixture
async def js(stack: Stack) -> AsyncIterator[JetStreamContext]:
    nc = await connect_nats(stack.nats_url, "test")
    assert nc is not None
    yield nc.jetstream()
    await nc.close()


# Helpers -----------------------------------------------------------------------------------------


def health(stack: Stack) -> dict[str, Any]:
    return httpx.get(f"http://127.0.0.1:{stack.ports['strategy']}/health", timeout=5).json()


async def wait_health(stack: Stack, predicate: Callable[[dict[str, Any]], bool], what: str) -> dict[str, Any]:
    deadline = time.monotonic() + 30
    last: dict[str, Any] = {}
    while time.monotonic() < deadline:
        try:
            last = health(stack)
            if predicate(last):
                return last
        except (httpx.HTTPError, KeyError, TypeError):
            pass  # restarting, or not there yet
        await asyncio.sleep(0.2)
    raise AssertionError(f"{what}; last health: {json.dumps(last)[:3000]}\n{stack.log('strategy')}")


async def publish_bar(js: JetStreamContext, symbol: str, start: int, close: str | int) -> None:
    bar = make_bar(start, close, symbol, timeframe="1s")
    headers = {"Nats-Msg-Id": f"t:{symbol}:{start}"}
    await js.publish(f"market.bar.1s.mock.{symbol}", encode(bar), headers=headers)


async def publish_bars(js: JetStreamContext, symbol: str, closes: list[str], first_start: int) -> int:
    """Bars one second apart; returns the start of the next one."""
    start = first_start
    for close in closes:
        await publish_bar(js, symbol, start, close)
        start += 1_000
    return start


async def next_request(sub: Any, timeout: float = 10) -> tuple[OrderRequest, dict[str, str]]:
    msg = await sub.next_msg(timeout=timeout)
    return msgspec.json.decode(msg.data, type=OrderRequest), dict(msg.headers or {})


async def assert_quiet(sub: Any) -> None:
    try:
        msg = await sub.next_msg(timeout=QUIET_S)
    except NatsTimeout:
        return
    raise AssertionError(f"unexpected message on {msg.subject}: {msg.data!r}")


async def publish_state(
    js: JetStreamContext, request: OrderRequest, status: str, version: int, **terms: Any
) -> None:
    order = Order(
        client_order_id=request.client_order_id,
        strategy=request.strategy,
        account=request.account,
        symbol=request.symbol,
        side=request.side,
        type=request.type,
        quantity=request.quantity,
        status=status,  # type: ignore[arg-type]
        version=version,
        **terms,
    )
    await js.publish(
        order_state_subject(request.strategy),
        encode(order),
        headers={"Nats-Msg-Id": f"{request.client_order_id}:{version}"},
    )


async def fill_completely(js: JetStreamContext, request: OrderRequest, price: str) -> None:
    """What the oms and exeq would publish for a market order filled at once."""
    await publish_state(js, request, "NEW", 1)
    await publish_state(js, request, "ACCEPTED", 2)
    report = ExecutionReport(
        exec_id=f"fill-{request.client_order_id}",
        kind="fill",
        client_order_id=request.client_order_id,
        strategy=request.strategy,
        account=request.account,
        venue="paper",
        symbol=request.symbol,
        side=request.side,
        last_quantity=request.quantity,
        last_price=D(price),
        fee=D("0.01"),
        liquidity="taker",
    )
    await js.publish("exec.report.paper", encode(report), headers={"Nats-Msg-Id": report.exec_id})
    await publish_state(js, request, "FILLED", 3, filled_quantity=request.quantity, average_price=D(price))


def strategy_pid(stack: Stack) -> int:
    return next(c["pid"] for c in stack.status()["components"] if c["name"] == "strategy")


def now_s_ms() -> int:
    return (time.time_ns() // 1_000_000_000) * 1_000


# Tests -------------------------------------------------------------------------------------------


async def test_bad_strategies_are_reported_and_the_others_run(stack: Stack) -> None:
    details = await wait_health(stack, lambda h: h["rebuilt"], "the service did not rebuild")
    failed = details["failed_strategies"]
    assert set(failed) == {"broken-kind", "broken-params"}
    assert "cannot import nowhere.at_all" in failed["broken-kind"]
    assert "must be below slow" in failed["broken-params"]
    running = details["strategies"]
    assert set(running) == {"mac-a", "mac-b", "mac-c", "mac-w"}
    assert all(s["started"] for s in running.values())
    # The whole log: stack.log keeps its last 4,000 characters, and one strategy.rebuilt line is about 3,000.
    log = (stack.data_dir / "logs" / "strategy.log").read_text()
    assert "strategy.load_failed" in log
    assert "broken-kind" in log
    assert details["status"] == "degraded"
    not_loaded = [p for p in details["problems"] if "could not be loaded" in p["reason"]]
    assert [p["reason"].split(":")[0] for p in not_loaded] == [
        "strategy broken-kind could not be loaded",
        "strategy broken-params could not be loaded",
    ]


async def test_a_cross_sends_one_order_request_and_a_rejection_is_seen(
    stack: Stack, js: JetStreamContext
) -> None:
    await wait_health(stack, lambda h: h["rebuilt"], "the service did not rebuild")
    submits = await js.subscribe("order.submit.mac-a", ordered_consumer=True)
    dead = await js.subscribe("dlq.strategy.>", ordered_consumer=True)
    # Ticks: a good one is taken in, a malformed one goes to the dead letters with the reason.
    tick = MarketTick(
        timestamp=time.time_ns() // 1_000_000,
        exchange="mock",
        venue="mock",
        symbol="BTCUSDT",
        price=D("9"),
        size=D(1),
        volume=D(1),
    )
    await js.publish("market.tick.mock.BTCUSDT", encode(tick))
    await js.publish("market.tick.mock.BTCUSDT", b"{not json")
    letter = await dead.next_msg(timeout=10)
    assert letter.subject == "dlq.strategy.market.tick.mock.BTCUSDT"
    assert letter.data == b"{not json"
    assert "malformed JSON" in (letter.headers or {})["Trader-Dlq-Reason"]

    start = await publish_bars(js, "BTCUSDT", CLOSES[:4], now_s_ms())
    await assert_quiet(submits)  # no cross yet
    start = await publish_bars(js, "BTCUSDT", CLOSES[4:5], start)
    buy, headers = await next_request(submits)
    assert (buy.strategy, buy.symbol, buy.side, buy.type, buy.quantity) == (
        "mac-a",
        "BTCUSDT",
        "buy",
        "market",
        D("0.5"),
    )
    assert buy.account == "paper"
    assert buy.reduce_only is False
    assert buy.client_order_id.startswith("mac-a-")
    assert headers["Nats-Msg-Id"] == buy.client_order_id
    await assert_quiet(submits)  # one order per cross

    # A state that is not an Order goes to the dead letters; the service goes on.
    await js.publish(order_state_subject("mac-a"), b'{"client_order_id": 7}')
    letter = await dead.next_msg(timeout=10)
    assert letter.subject == "dlq.strategy.order.state.mac-a"
    assert "not an Order" in (letter.headers or {})["Trader-Dlq-Reason"]

    reason = "position limit: 0.5 would exceed 0.1 BTCUSDT"
    await publish_state(js, buy, "REJECTED", 2, reason=reason)
    seen = await wait_health(
        stack,
        lambda h: (
            (h["strategies"]["mac-a"]["last_rejection"] or {}).get("client_order_id") == buy.client_order_id
        ),
        "the strategy did not see its order rejected",
    )
    mac_a = seen["strategies"]["mac-a"]
    assert mac_a["last_rejection"]["reason"] == reason
    assert mac_a["open_orders"] == 0
    assert mac_a["state"]["BTCUSDT"]["blocked"] == reason

    # The denied buy is not retried; the cross down leaves it flat; the next cross up buys again.
    start = await publish_bars(js, "BTCUSDT", CLOSES[5:8], start)
    await assert_quiet(submits)
    await publish_bars(js, "BTCUSDT", CLOSES[8:9], start)
    again, _ = await next_request(submits)
    assert again.side == "buy"
    assert again.client_order_id != buy.client_order_id


async def test_halted_trading_sends_no_order_request(stack: Stack, js: JetStreamContext) -> None:
    kv = await js.key_value(STATE_BUCKET)
    submits = await js.subscribe("order.submit.mac-b", ordered_consumer=True)
    halted = TradingState(mode="halted", reason="test kill switch", since=time.time_ns() // 1_000_000)
    await kv.put(TRADING_STATE_KEY, encode(halted))
    try:
        await wait_health(stack, lambda h: h["trading"]["mode"] == "halted", "the halt was not seen")
        await publish_bars(js, "ETHUSDT", CLOSES[:5], now_s_ms())
        details = await wait_health(
            stack, lambda h: h["strategies"]["mac-b"]["suppressed"] == 1, "the submit was not suppressed"
        )
        await assert_quiet(submits)
        rejection = details["strategies"]["mac-b"]["last_rejection"]
        assert "halted" in rejection["reason"]
        assert "test kill switch" in rejection["reason"]
        assert details["strategies"]["mac-b"]["open_orders"] == 0
        assert "strategy.submit_suppressed" in stack.log("strategy")
    finally:
        await kv.put(TRADING_STATE_KEY, encode(TradingState(mode="active")))
    await wait_health(stack, lambda h: h["trading"]["mode"] == "active", "trading did not resume")


async def test_a_killed_service_rebuilds_orders_and_position_and_never_reuses_an_id(
    stack: Stack, js: JetStreamContext
) -> None:
    await wait_health(stack, lambda h: h["rebuilt"], "the service did not rebuild")
    submits = await js.subscribe("order.submit.mac-c", ordered_consumer=True)
    start = await publish_bars(js, "SOLUSDT", CLOSES[:5], now_s_ms())
    buy, _ = await next_request(submits)
    await fill_completely(js, buy, "12")
    await wait_health(
        stack,
        lambda h: (
            h["strategies"]["mac-c"]["positions"].get("SOLUSDT") == "0.5"
            and h["strategies"]["mac-c"]["open_orders"] == 0
        ),
        "the fill was not applied",
    )
    start = await publish_bars(js, "SOLUSDT", CLOSES[5:7], start)  # the cross down: sell to flat
    sell, _ = await next_request(submits)
    assert (sell.side, sell.quantity, sell.reduce_only) == ("sell", D("0.5"), True)

    old_pid = strategy_pid(stack)
    os.kill(old_pid, signal.SIGKILL)
    rebuilt = await wait_health(
        stack, lambda h: h["pid"] != old_pid and h["rebuilt"], "the service did not come back"
    )
    mac_c = rebuilt["strategies"]["mac-c"]
    assert mac_c["positions"]["SOLUSDT"] == "0.5", "the position comes from the fills in EXEC"
    assert mac_c["open_orders"] == 1, "the sell in flight comes from its request in ORDERS"
    assert rebuilt["strategies"]["mac-a"]["last_rejection"] is not None, "states of the other strategies too"

    # The in-flight sell holds further orders back until its fill; the warm-up primed the averages
    # with the last 3 bars ([12 11 8]: fast below).
    assert mac_c["warmup"]["bars"] == 3
    start = await publish_bars(js, "SOLUSDT", ["12", "13", "14", "5", "20"], start)
    await assert_quiet(submits)
    await fill_completely(js, sell, "8")
    await wait_health(
        stack,
        lambda h: D(h["strategies"]["mac-c"]["positions"]["SOLUSDT"]) == 0,
        "the sell fill was not applied",
    )
    # [14 5 20]: fast 12.5 > slow 13 is false; [5 20 21]: fast 20.5 > slow 15.33: a cross up.
    await publish_bars(js, "SOLUSDT", ["21"], start)
    again, _ = await next_request(submits)
    assert again.side == "buy"
    old_ids = {buy.client_order_id, sell.client_order_id}
    assert again.client_order_id not in old_ids
    session = int(again.client_order_id.split("-")[2])
    assert all(session > int(i.split("-")[2]) for i in old_ids), "a new session, above the old ones"


async def test_a_restarted_service_warms_up_from_history_and_acts_on_live_bars_only(
    stack: Stack, js: JetStreamContext
) -> None:
    await wait_health(stack, lambda h: h["rebuilt"], "the service did not rebuild")
    submits = await js.subscribe("order.submit.mac-w", ordered_consumer=True)
    old_pid = strategy_pid(stack)
    os.kill(old_pid, signal.SIGSTOP)  # frozen: it hears nothing of what follows
    try:
        # Two bars too old to be wanted, then the warm-up's 5 with a cross up at the last: had the
        # warm-up traded it, the first live order would be a buy of 0.5 and the later one a sell of 1.
        start = await publish_bars(js, "ADAUSDT", ["50", "50", *CLOSES[:5]], now_s_ms())
    finally:
        os.kill(old_pid, signal.SIGKILL)
    # Rising closes (fast stays above: no cross) while the service comes back: each lands before
    # the warm-up's read or after it, and must be fed exactly once either way.
    published: list[int] = []
    close = 13
    deadline = time.monotonic() + 30
    back_at: float | None = None
    while time.monotonic() < deadline and (back_at is None or time.monotonic() < back_at + 0.5):
        await publish_bar(js, "ADAUSDT", start, close)
        published.append(start)
        start, close = start + 1_000, close + 1
        await asyncio.sleep(0.1)
        if back_at is None and _restarted(stack, old_pid):
            back_at = time.monotonic()  # a few more after it, surely live
    warmed = await wait_health(
        stack,
        lambda h: h["pid"] != old_pid and h["strategies"]["mac-w"]["live_bars"] > 0,
        "the service did not come back and take live bars",
    )
    warmup = warmed["strategies"]["mac-w"]["warmup"]
    assert warmup["done"] is True
    assert warmup["bars"] == 5, "the last 5 closed bars, not fewer, not the older ones"
    assert warmup["orders_dropped"] == 0
    last_warm = warmup["last_start"]["1s.ADAUSDT"]
    live = [s for s in published if s > last_warm]
    assert last_warm in published or last_warm == published[0] - 1_000, "the latest bar before live ones"
    done = await wait_health(
        stack,
        lambda h: h["strategies"]["mac-w"]["live_bars"] >= len(live),
        "live bars were missed",
    )
    await assert_quiet(submits)  # nothing from the warm-up's cross, nor from the rising bars
    assert health(stack)["strategies"]["mac-w"]["live_bars"] == len(live), "a bar was fed twice"
    assert done["strategies"]["mac-w"]["state"]["ADAUSDT"]["target"] is None

    # The first live cross (down, short allowed) trades at once: a sell of 0.5 from flat.
    await publish_bar(js, "ADAUSDT", start, "1")
    sell, _ = await next_request(submits)
    assert (sell.strategy, sell.side, sell.quantity, sell.reduce_only) == ("mac-w", "sell", D("0.5"), False)
    await assert_quiet(submits)


def _restarted(stack: Stack, old_pid: int) -> bool:
    try:
        details = health(stack)
    except (httpx.HTTPError, ValueError):
        return False  # not back yet
    return bool(details["pid"] != old_pid and details["rebuilt"])
