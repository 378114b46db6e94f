"""Parity of a backtest with paper trading, on the real stack.

The market maker trades in paper mode over the mock feed for a minute and a half (its ticks land in the lake
through sink-ticks, its orders in ORDERS, its fills in EXEC); then `trader.backtest` runs the same
configuration over the same ticks, read back from the lake, from the tick that made the first live
order to a cut a few seconds before the end. Both must have sent the same orders and made the same
fills (side, quantity, price, fee, liquidity, tick time) in the same order, so the same position and
realized PnL.

What the test holds equal that the docs say differs otherwise (docs/backtest.md): the venue's latency
is 0 on both sides and the feed is slow (2 ticks/s), so that each live order reaches exeq before the
next tick does, as in the backtest, where nothing takes time; the market maker's refresh is long and
risk's rate limit high, since live both count wall-clock time and the backtest event time.
"""

from __future__ import annotations

import asyncio
import json
import time
from collections.abc import Iterator
from decimal import Decimal
from pathlib import Path

import msgspec
import pytest

from tests.stack_helpers import Stack
from trader.backtest.data import DataRange, LakeTicks
from trader.backtest.engine import BacktestEngine
from trader.bus.connection import connect_nats
from trader.messages import ExecutionReport, OrderRequest
from trader.portfolio import PositionTracker

pytestmark = pytest.mark.integration

STRATEGY = {
    "name": "parity-mm",
    "kind": "market_maker",
    "symbols": ["ETHUSDT"],
    "params": {
        "spread_bps": "2",
        "quantity": "0.1",
        "max_position": "0.5",
        "refresh_s": "100000",
        "tick_size": "0.01",
    },
}
RUN_S = 90
CUT_MARGIN_MS = 3_000


@pytest.fixture(scope="module")
def paper(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Stack]:
    stack = Stack.create(
        Path(tmp_path_factory.mktemp("parity")),
        TRADER_SERVICES=json.dumps(["gateway", "sink-ticks", "strategy", "risk", "oms", "exeq"]),
        TRADER_GATEWAY__SYMBOLS=json.dumps(["ETHUSDT"]),
        TRADER_GATEWAY__VENUES="{}",
        TRADER_GATEWAY__RATE="2",
        TRADER_GATEWAY__VOLATILITY="3",
        TRADER_GATEWAY__SEED="16",
        TRADER_STRATEGY__STRATEGIES=json.dumps([STRATEGY]),
        TRADER_EXEQ__PAPER__LATENCY_MS="0",
        TRADER_RISK__MAX_ORDERS_PER_SECOND="100000",
        TRADER_SINK_TICKS__SMALL_BATCH_SECONDS="1",
    )
    stack.trader("up", "--detach", check=True, timeout=600)
    try:
        yield stack
    finally:
        stack.trader("down", timeout=180)


async def _stored(stack: Stack, stream: str, prefix: str) -> list[bytes]:
    nc = await connect_nats(stack.nats_url, "test")
    assert nc is not None
    js = nc.jetstream()
    state = (await js.stream_info(stream)).state
    found = []
    for seq in range(state.first_seq, state.last_seq + 1):
        msg = await js.get_msg(stream, seq)
        if msg.subject.startswith(prefix):
            found.append(msg.data or b"")
    await nc.close()
    return found


def _wait_for_lake(stack: Stack, until_ms: int, timeout_s: float = 120) -> LakeTicks:
    """Until sink-ticks has written every tick up to ``until_ms``."""
    deadline = time.monotonic() + timeout_s
    settings = stack.settings()
    while True:
        try:
            source = LakeTicks(settings)
            if source.count(DataRange(until_ms, until_ms + 60_000, ("ETHUSDT",))):
                return source
        except Exception:  # the table is not there yet
            pass
        if time.monotonic() > deadline:
            raise AssertionError(f"the lake has no tick after {until_ms} within {timeout_s} s")
        time.sleep(1)


@pytest.fixture(scope="module")
def both(paper: Stack) -> dict[str, object]:
    time.sleep(RUN_S)
    cut_ms = int(time.time() * 1000) - CUT_MARGIN_MS
    time.sleep(CUT_MARGIN_MS / 1000)  # what happened up to the cut is all on the bus by now
    requests = [
        msgspec.json.decode(d, type=OrderRequest)
        for d in asyncio.run(_stored(paper, "ORDERS", "order.submit."))
    ]
    reports = [
        msgspec.json.decode(d, type=ExecutionReport)
        for d in asyncio.run(_stored(paper, "EXEC", "exec.report."))
    ]
    source = _wait_for_lake(paper, cut_ms)
    assert requests, "the market maker sent no order in paper mode"
    # The live strategy's first order answered its first tick: the backtest starts at that tick.
    first_order_ms = requests[0].timestamp
    seen = [t for t in source.ticks(DataRange(first_order_ms - 60_000, first_order_ms + 1, ("ETHUSDT",)))]
    start_ms = [t for t in seen if t.venue == "mock"][-1].timestamp
    settings = paper.settings()
    engine = BacktestEngine(settings, settings.strategy.strategies, start_ms)
    engine.start(source.ticks(DataRange(start_ms - 60_000, start_ms, ("ETHUSDT",))))
    for tick in source.ticks(DataRange(start_ms, cut_ms + 1, ("ETHUSDT",))):
        engine.on_tick(tick)
    print(  # what was compared, shown with -s
        f"parity: {len([r for r in requests if r.timestamp <= cut_ms - 1_000])} live orders, "
        f"{len([r for r in reports if r.kind == 'fill' and r.timestamp <= cut_ms])} live fills, "
        f"backtest from {start_ms} to {cut_ms}"
    )
    return {
        "cut_ms": cut_ms,
        "live_requests": [r for r in requests if r.timestamp <= cut_ms - 1_000],
        "live_fills": [r for r in reports if r.kind == "fill" and r.timestamp <= cut_ms],
        "backtest_orders": [o for o in engine.records.orders if o.version == 1],
        "backtest_fills": engine.records.fills,
        "engine": engine,
    }


def _first_difference(live: list, backtest: list, live_at: list[int], backtest_at: list[int]) -> str:
    """Where two sequences part, with their times, for the failure message."""
    n = next(
        (i for i, (a, b) in enumerate(zip(live, backtest, strict=False)) if a != b),
        min(len(live), len(backtest)),
    )

    def at(items: list, i: int) -> object:
        return items[i] if i < len(items) else "-"

    rows = [
        f"#{i}: live {at(live, i)} at {at(live_at, i)}; backtest {at(backtest, i)} at {at(backtest_at, i)}"
        for i in range(max(n - 2, 0), n + 3)
    ]
    return f"{len(live)} live, {len(backtest)} backtest; first difference at #{n}:\n" + "\n".join(rows)


def test_the_same_orders_in_the_same_order(both: dict) -> None:
    live = [(r.side, r.type, r.quantity, r.price, r.post_only) for r in both["live_requests"]]
    backtest = [(o.side, o.type, o.quantity, o.price, o.post_only) for o in both["backtest_orders"]]
    assert live, "no live order before the cut"
    live_at = [r.timestamp for r in both["live_requests"]]
    backtest_at = [o.created for o in both["backtest_orders"]]
    assert backtest[: len(live)] == live, _first_difference(live, backtest, live_at, backtest_at)


def test_the_same_fills_in_the_same_order(both: dict) -> None:
    live = [
        (f.side, f.last_quantity, f.last_price, f.fee, f.liquidity, f.timestamp) for f in both["live_fills"]
    ]
    backtest = [
        (f["side"], f["quantity"], f["price"], f["fee"], f["liquidity"], f["timestamp"])
        for f in both["backtest_fills"]
    ]
    assert live, "the market maker had no fill in a minute and a half: nothing to compare"
    assert backtest == live, _first_difference(
        live, backtest, [f[-1] for f in live], [f[-1] for f in backtest]
    )


def test_the_same_position_and_realized_pnl(both: dict) -> None:
    tracker = PositionTracker()
    for fill in both["live_fills"]:
        tracker.apply(fill)
    [live] = tracker.strategy_positions("parity-mm")
    engine: BacktestEngine = both["engine"]
    [simulated] = engine.positions.strategy_positions("parity-mm")
    assert (simulated.quantity, simulated.realized_pnl, simulated.fees) == (
        live.quantity,
        live.realized_pnl,
        live.fees,
    )
    assert simulated.quantity == engine.runners["parity-mm"].ctx.position("ETHUSDT")
    assert isinstance(simulated.realized_pnl, Decimal)
