"""execution-router, exeq, ptrc and pnl on the real servers; the test plays the oms and the market.

It publishes VenueOrders on ``exec.route.<strategy>`` and ticks on ``market.tick.<venue>.<SYMBOL>`` with
nats-py, and reads back what the services stored: reports in EXEC, positions in POSITIONS, snapshots in
PNL and rows in QuestDB. Each test trades its own symbol, so the tests share one stack and stay independent.
"""

from __future__ import annotations

import asyncio
import itertools
import json
import os
import signal
import time
from collections.abc import AsyncIterator, Awaitable, Callable, Iterator
from decimal import Decimal as D
from pathlib import Path
from typing import Any, TypeVar

import httpx
import msgspec
import pytest
from nats.aio.client import Client as NATS
from nats.js import JetStreamContext
from nats.js.errors import NotFoundError

from tests.stack_helpers import Stack
from trader.bus import dlq
from trader.bus.connection import connect_nats
from trader.messages import ExecutionReport, MarketTick, PnlSnapshot, Position, VenueOrder, encode

pytestmark = pytest.mark.integration

SERVICES = ["execution-router", "exeq", "ptrc", "pnl"]
STRATEGY = "itest"
TAKER_BPS, MAKER_BPS = D(10), D(2)
T = TypeVar("T")
_ids = itertools.count(1)


@pytest.fixture(scope="module")
def stack(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Stack]:
    s = Stack.create(
        Path(tmp_path_factory.mktemp("execution")),
        TRADER_EXEQ__PAPER__TAKER_FEE_BPS=str(TAKER_BPS),
        TRADER_EXEQ__PAPER__MAKER_FEE_BPS=str(MAKER_BPS),
        TRADER_EXEQ__ALGO_INTERVAL_S="0.05",
        TRADER_PNL__SNAPSHOT_INTERVAL_S="0.5",
        TRADER_SUPERVISOR__RESTART_BACKOFF_INITIAL_S="0.2",
        # DUOUSDT has a choice of two venues, which the router makes on price net of each one's fee.
        TRADER_ROUTING__VENUES=json.dumps({"*": ["paper"], "DUOUSDT": ["paper", "cheap"]}),
        TRADER_EXEQ__VENUES=json.dumps(
            {
                "paper": {"kind": "paper", "taker_fee_bps": "10"},
                "cheap": {"kind": "paper", "taker_fee_bps": "2"},
            }
        ),
    )
    s.trader("up", "--detach", "--services", ",".join(SERVICES), check=True)
    _EXEQ_PORT[:] = [s.ports["exeq"]]
    try:
        yield s
    finally:
        s.trader("down", timeout=120)


@pytest.fixture
async def nc(stack: Stack) -> AsyncIterator[NATS]:
    client = await connect_nats(stack.nats_url, "test")
    assert client is not None
    yield client
    await client.close()


# The market and the oms -------------------------------------------------------------------------


def now_ms() -> int:
    return time.time_ns() // 1_000_000


async def tick(
    js: JetStreamContext, symbol: str, bid: str, ask: str, *, size: str = "100", price: str = ""
) -> None:
    trade_id = str(next(_ids))
    message = MarketTick(
        timestamp=now_ms(),
        exchange="mock",  # the paper venue's quotes: the mock feed's
        venue="mock",
        symbol=symbol,
        price=D(price or bid),
        size=D(size),
        volume=D(size),
        bid=D(bid),
        ask=D(ask),
        trade_id=trade_id,
    )
    ack = await js.publish(
        f"market.tick.mock.{symbol}", encode(message), headers={"Nats-Msg-Id": f"test:{symbol}:{trade_id}"}
    )
    # The paper venue fills at the quotes it has seen, as a venue would: an order sent right after a
    # tick may reach exeq first (another consumer). The tests mean the tick to come first: wait for it.
    await eventually(lambda: _exeq_has_seen(ack.seq), f"exeq to see tick {ack.seq}")


async def _exeq_has_seen(seq: int) -> bool:
    async with httpx.AsyncClient() as client:
        health = (await client.get(f"http://127.0.0.1:{_EXEQ_PORT[0]}/health", timeout=5)).json()
    return health.get("last_tick_seq", 0) >= seq


_EXEQ_PORT: list[int] = []  # set by the stack fixture


def venue_order(
    symbol: str, side: str, quantity: str, *, action: str = "new", cid: str | None = None, **fields: Any
) -> VenueOrder:
    cid = cid or f"{symbol.lower()}-{next(_ids)}"
    return VenueOrder(
        action=action,  # type: ignore[arg-type]
        client_order_id=cid,
        venue_client_id=cid,
        strategy=STRATEGY,
        account="paper",
        venue=fields.pop("venue", ""),
        symbol=symbol,
        side=side,  # type: ignore[arg-type]
        quantity=D(quantity),
        **fields,
    )


async def route(js: JetStreamContext, order: VenueOrder) -> VenueOrder:
    msg_id = f"{order.venue_client_id}:{order.action}:test"
    await js.publish(f"exec.route.{order.strategy}", encode(order), headers={"Nats-Msg-Id": msg_id})
    return order


# Reading back -----------------------------------------------------------------------------------


async def stored(js: JetStreamContext, stream: str, prefix: str) -> list[tuple[str, dict[str, str], bytes]]:
    """Every message of ``stream`` whose subject starts with ``prefix``, in order."""
    state = (await js.stream_info(stream)).state
    out = []
    for seq in range(max(state.first_seq, 1), state.last_seq + 1):  # a stream never written: 0, 0
        try:
            msg = await js.get_msg(stream, seq)
        except NotFoundError:
            continue
        if msg.subject.startswith(prefix):
            out.append((msg.subject, msg.headers or {}, msg.data or b""))
    return out


async def reports(js: JetStreamContext, symbol: str, prefix: str = "exec.report.") -> list[ExecutionReport]:
    decoded = [
        msgspec.json.decode(data, type=ExecutionReport) for _, _, data in await stored(js, "EXEC", prefix)
    ]
    return [r for r in decoded if r.symbol == symbol]


async def fills(js: JetStreamContext, symbol: str) -> list[ExecutionReport]:
    return [r for r in await reports(js, symbol) if r.kind == "fill"]


async def latest(js: JetStreamContext, stream: str, subject: str, kind: type[T]) -> T | None:
    try:
        msg = await js.get_last_msg(stream, subject)
    except NotFoundError:
        return None
    return msgspec.json.decode(msg.data, type=kind)


async def eventually(check: Callable[[], Awaitable[T]], what: str, timeout: float = 20) -> T:
    """The first truthy result of ``check``, polled until ``timeout``."""
    deadline = time.monotonic() + timeout
    while True:
        result = await check()
        if result:
            return result
        assert time.monotonic() < deadline, f"timed out waiting for {what}"
        await asyncio.sleep(0.2)


def filled(order: VenueOrder, of: list[ExecutionReport]) -> D:
    return sum((r.last_quantity for r in of if r.client_order_id == order.client_order_id), D(0))


def fee(quantity: D, price: D, bps: D) -> D:
    return quantity * price * bps / 10_000


# Orders and fills -------------------------------------------------------------------------------


async def test_market_order_fills_at_the_quote_with_the_taker_fee(nc: NATS) -> None:
    js = nc.jetstream()
    await tick(js, "MKTUSDT", "100", "101")
    order = await route(js, venue_order("MKTUSDT", "buy", "2"))
    (fill,) = await eventually(lambda: fills(js, "MKTUSDT"), "the market order's fill")
    assert (fill.client_order_id, fill.venue, fill.liquidity) == (order.client_order_id, "paper", "taker")
    assert (fill.last_quantity, fill.last_price) == (D(2), D(101))
    assert fill.fee == fee(D(2), D(101), TAKER_BPS)
    assert [r.kind for r in await reports(js, "MKTUSDT")] == ["accepted", "fill"]
    # The router named the venue, and every report is stored under its exec id.
    (routed,) = [
        (h, d)
        for _, h, d in await stored(js, "EXEC", "exec.order.paper")
        if order.client_order_id.encode() in d
    ]
    assert msgspec.json.decode(routed[1], type=VenueOrder).venue == "paper"
    report_ids = [
        (h["Nats-Msg-Id"], json.loads(d)["exec_id"])
        for _, h, d in await stored(js, "EXEC", "exec.report.paper")
    ]
    assert all(msg_id == exec_id for msg_id, exec_id in report_ids)


async def test_resting_limit_fills_when_the_market_crosses_it(nc: NATS) -> None:
    js = nc.jetstream()
    await tick(js, "LMTUSDT", "100", "101")
    await route(js, venue_order("LMTUSDT", "buy", "1", type="limit", price=D(99)))
    await eventually(lambda: reports(js, "LMTUSDT"), "the limit order's acknowledgement")
    await tick(js, "LMTUSDT", "99.5", "100.5")
    await asyncio.sleep(1)
    assert await fills(js, "LMTUSDT") == [], "a limit below the market must rest"
    await tick(js, "LMTUSDT", "98", "99", size="5")
    (fill,) = await eventually(lambda: fills(js, "LMTUSDT"), "the resting fill")
    assert (fill.last_quantity, fill.last_price, fill.liquidity) == (D(1), D(99), "maker")
    assert fill.fee == fee(D(1), D(99), MAKER_BPS)


async def test_twap_parent_is_sliced_and_its_fills_sum_to_the_parent(nc: NATS) -> None:
    js = nc.jetstream()
    await tick(js, "TWPUSDT", "50", "50.5")
    parent = await route(
        js, venue_order("TWPUSDT", "sell", "1.3", algo="twap", algo_params={"duration_s": "1", "slices": "4"})
    )

    async def complete() -> list[ExecutionReport]:
        got = await fills(js, "TWPUSDT")
        return got if filled(parent, got) >= parent.quantity else []

    got = await eventually(complete, "the TWAP's fills")
    assert filled(parent, got) == D("1.3")
    assert sorted({f.venue_client_id for f in got}) == [f"{parent.venue_client_id}.{n}" for n in range(1, 5)]
    assert all((f.last_price, f.fee) == (D(50), fee(f.last_quantity, D(50), TAKER_BPS)) for f in got)
    children = [
        msgspec.json.decode(d, type=VenueOrder)
        for _, _, d in await stored(js, "EXEC", "exec.algo.order.paper")
    ]
    mine = [c for c in children if c.client_order_id == parent.client_order_id]
    assert sum(c.quantity for c in mine) == parent.quantity
    assert max(c.timestamp for c in mine) - min(c.timestamp for c in mine) >= 700, "slices spread over 1 s"
    # The oms sees the parent: acknowledged once, then filled by the children's fills.
    assert [(r.kind, r.venue_client_id) for r in await reports(js, "TWPUSDT") if r.kind != "fill"] == [
        ("accepted", parent.venue_client_id)
    ]


async def test_with_a_choice_of_venues_the_router_takes_the_best_price_net_of_fees(nc: NATS) -> None:
    js = nc.jetstream()
    await tick(js, "DUOUSDT", "99", "101")  # both paper venues quote the same touch
    await asyncio.sleep(0.5)  # the router's quote
    order = await route(js, venue_order("DUOUSDT", "buy", "1", type="market"))

    async def routed() -> list[VenueOrder]:
        sent = [
            msgspec.json.decode(d, type=VenueOrder) for _, _, d in await stored(js, "EXEC", "exec.order.")
        ]
        return [o for o in sent if o.client_order_id == order.client_order_id]

    (sent,) = await eventually(routed, "the routed order")
    assert sent.venue == "cheap"  # 101 x (1 + 2 bps) beats 101 x (1 + 10 bps)
    fills = await eventually(
        lambda: reports(js, "DUOUSDT", "exec.report.cheap"), "the fill at the cheap venue"
    )
    assert [(r.kind, r.venue) for r in fills][-1] == ("fill", "cheap")


async def test_unroutable_orders_are_rejected_and_garbage_is_dead_lettered(nc: NATS) -> None:
    js = nc.jetstream()
    order = await route(js, venue_order("REJUSDT", "buy", "1", venue="nowhere"))
    await js.publish(f"exec.route.{STRATEGY}", b"{not an order")
    (rejected,) = await eventually(
        lambda: reports(js, "REJUSDT", "exec.report.nowhere"), "the routing rejection"
    )
    assert (rejected.kind, rejected.client_order_id) == ("rejected", order.client_order_id)
    assert "not configured" in (rejected.reason or "")

    async def dead() -> list:
        return await stored(js, "DLQ", "dlq.execution-router.exec.route.")

    ((_, headers, data),) = await eventually(dead, "the dead letter")
    assert data == b"{not an order"
    assert headers[dlq.REASON].startswith("body: malformed JSON")


# Positions and PnL ------------------------------------------------------------------------------


def average_cost(of: list[ExecutionReport]) -> tuple[D, D | None, D, D]:
    """Quantity, average price, realized PnL and fees of a list of fills, at average cost: written here
    again, independently of trader.portfolio."""
    quantity, average, realized, fees = D(0), None, D(0), D(0)
    for f in of:
        signed = f.last_quantity if f.side == "buy" else -f.last_quantity
        fees += f.fee
        price = f.last_price
        assert price is not None
        if quantity == 0 or (quantity > 0) == (signed > 0):
            average = (
                price
                if average is None
                else (average * abs(quantity) + price * abs(signed)) / (abs(quantity) + abs(signed))
            )
        else:
            closed = min(abs(quantity), abs(signed))
            realized += (price - average) * closed * (1 if quantity > 0 else -1)  # type: ignore[operator]
            if abs(signed) > abs(quantity):
                average = price  # flipped: the rest is opened at this price
            elif abs(signed) == abs(quantity):
                average = None
        quantity += signed
    return quantity, average, realized, fees


async def trade(js: JetStreamContext, symbol: str, side: str, quantity: str, bid: str, ask: str) -> None:
    before = len(await fills(js, symbol))
    await tick(js, symbol, bid, ask)
    await route(js, venue_order(symbol, side, quantity))

    async def one_more() -> bool:
        return len(await fills(js, symbol)) > before

    await eventually(one_more, f"{side} {quantity} {symbol}")


async def test_positions_equal_the_sum_of_fills_through_a_flip(nc: NATS) -> None:
    js = nc.jetstream()
    await trade(js, "FLPUSDT", "buy", "2", "99", "100")
    await trade(js, "FLPUSDT", "buy", "1", "102", "103")
    await trade(js, "FLPUSDT", "sell", "4.5", "110", "111")  # through zero: short 1.5
    await trade(js, "FLPUSDT", "buy", "0.5", "104", "105")
    all_fills = await fills(js, "FLPUSDT")
    quantity, average, realized, fees = average_cost(all_fills)
    assert (quantity, realized) == (D(-1), (D(110) - D(101)) * 3 + (D(110) - D(105)) * D("0.5"))

    async def position(subject: str) -> Position | None:
        p = await latest(js, "POSITIONS", subject, Position)
        return p if p is not None and p.last_exec_id == all_fills[-1].exec_id else None

    net = await eventually(lambda: position("position.paper.paper.FLPUSDT"), "the net position")
    mine = await eventually(
        lambda: position(f"position.paper.paper.FLPUSDT.{STRATEGY}"), "the strategy's position"
    )
    for p in (net, mine):
        assert (p.quantity, p.average_price, p.realized_pnl, p.fees) == (quantity, average, realized, fees)
    assert (net.strategy, mine.strategy) == (None, STRATEGY)


async def test_pnl_snapshots_on_pnl_total_and_in_questdb(stack: Stack, nc: NATS) -> None:
    js = nc.jetstream()
    await trade(js, "PNLUSDT", "buy", "2", "199", "200")
    await tick(js, "PNLUSDT", "209", "211", price="210")  # the mark: +10 on 2

    async def marked() -> PnlSnapshot | None:
        s = await latest(js, "PNL", f"pnl.{STRATEGY}", PnlSnapshot)
        net = await latest(js, "POSITIONS", "position.paper.paper.PNLUSDT", Position)
        return s if s is not None and net is not None and s.timestamp > now_ms() - 1000 else None

    strategy_pnl = await eventually(marked, "a fresh snapshot of the strategy")
    assert strategy_pnl.total == strategy_pnl.realized + strategy_pnl.unrealized - strategy_pnl.fees
    total = await latest(js, "PNL", "pnl.total", PnlSnapshot)
    assert total is not None
    assert total.total == total.realized + total.unrealized - total.fees
    # The whole account's fees are exactly the fees of every fill so far.
    every_fill = [
        r
        for r in (
            msgspec.json.decode(d, type=ExecutionReport)
            for _, _, d in await stored(js, "EXEC", "exec.report.")
        )
        if r.kind == "fill"
    ]

    async def settled() -> PnlSnapshot | None:
        s = await latest(js, "PNL", "pnl.total", PnlSnapshot)
        return s if s is not None and s.fees == sum((f.fee for f in every_fill), D(0)) else None

    await eventually(settled, "the total's fees to match the fills")

    def sql(query: str) -> list[dict[str, Any]]:
        body = httpx.get(
            f"http://127.0.0.1:{stack.ports['questdb_http']}/exec", params={"query": query}
        ).json()
        names = [c["name"] for c in body.get("columns", [])]
        return [dict(zip(names, row, strict=True)) for row in body.get("dataset", [])]

    async def pnl_rows() -> list[dict[str, Any]]:
        return sql(f"select * from pnl where scope = '{STRATEGY}' order by ts desc limit 1")

    (row,) = await eventually(pnl_rows, "pnl rows in QuestDB")
    assert D(row["total"]) == D(row["realized"]) + D(row["unrealized"]) - D(row["fees"])

    async def marked_rows() -> list[dict[str, Any]]:
        # Written again when its mark changes: the last row is marked at the last trade price.
        rows = sql("select * from positions where symbol = 'PNLUSDT' and strategy is null order by ts desc")
        return rows if rows and D(rows[0]["mark"]) == D(210) else []

    position, *earlier = await eventually(marked_rows, "the position marked at 210 in QuestDB")
    assert (D(position["quantity"]), D(position["average_price"])) == (D(2), D(200))
    assert D(position["unrealized_pnl"]) == D(20)
    assert position["last_exec_id"] == (await fills(js, "PNLUSDT"))[-1].exec_id
    assert all(D(row["mark"]) != D(210) for row in earlier), "a row is written only when something changed"


# Crashes ---------------------------------------------------------------------------------------


def _component(stack: Stack, name: str) -> dict[str, Any]:
    return next(c for c in stack.status()["components"] if c["name"] == name)


async def _kill_and_wait(stack: Stack, name: str) -> None:
    before = _component(stack, name)
    os.kill(before["pid"], signal.SIGKILL)

    async def back() -> bool:
        c = await asyncio.to_thread(_component, stack, name)
        return c["restarts"] > before["restarts"] and c["ready"]

    await eventually(back, f"{name} restarted", timeout=60)


async def test_exeq_killed_and_restarted_publishes_no_fill_twice(stack: Stack, nc: NATS) -> None:
    js = nc.jetstream()
    symbol = "RSTUSDT"
    await tick(js, symbol, "100", "101", size="1")
    resting = await route(js, venue_order(symbol, "buy", "3", type="limit", price=D(99)))
    twap = await route(
        js, venue_order(symbol, "buy", "2", algo="twap", algo_params={"duration_s": "2", "slices": "4"})
    )
    await tick(js, symbol, "98", "99", size="1")  # fills 1 of the resting 3
    await eventually(lambda: fills(js, symbol), "a first fill")
    await asyncio.sleep(0.3)
    await _kill_and_wait(stack, "exeq")
    await _kill_and_wait(stack, "execution-router")  # it resumes after the last route message it answered
    market = await route(js, venue_order(symbol, "sell", "0.5"))
    for _ in range(12):  # liquidity for every rest, ticks apart as a market would give them
        await tick(js, symbol, "98", "99", size="1")
        await asyncio.sleep(0.25)
    await _kill_and_wait(stack, "ptrc")

    async def done() -> list[ExecutionReport]:
        got = await fills(js, symbol)
        complete = [filled(resting, got), filled(twap, got), filled(market, got)] == [D(3), D(2), D("0.5")]
        return got if complete else []

    got = await eventually(done, "every order filled after the restart", timeout=30)
    await asyncio.sleep(1)  # anything published twice would be there by now
    got = await fills(js, symbol)
    assert [filled(resting, got), filled(twap, got), filled(market, got)] == [D(3), D(2), D("0.5")]
    exec_ids = [f.exec_id for f in got]
    assert len(exec_ids) == len(set(exec_ids))
    acks = [r.venue_client_id for r in await reports(js, symbol) if r.kind == "accepted"]
    assert sorted(acks) == sorted([resting.venue_client_id, twap.venue_client_id, market.venue_client_id])
    routed = [msgspec.json.decode(d, type=VenueOrder) for _, _, d in await stored(js, "EXEC", "exec.order.")]
    assert sorted(o.client_order_id for o in routed if o.symbol == symbol) == sorted(
        o.client_order_id for o in (resting, twap, market)
    ), "each order routed exactly once"
    child_acks = [
        r.venue_client_id for r in await reports(js, symbol, "exec.algo.report.") if r.kind == "accepted"
    ]
    assert len(child_acks) == len(set(child_acks)) == 4
    # ptrc, killed as well, rebuilt the exact position from the fills.
    quantity, average, realized, fees = average_cost(got)

    async def rebuilt() -> Position | None:
        p = await latest(js, "POSITIONS", f"position.paper.paper.{symbol}", Position)
        return p if p is not None and p.last_exec_id == exec_ids[-1] else None

    position = await eventually(rebuilt, "the position after the last fill")
    assert (position.quantity, position.average_price, position.realized_pnl, position.fees) == (
        quantity,
        average,
        realized,
        fees,
    )
