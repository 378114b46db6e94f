"""exeq trading through a ``kind: ccxt`` venue on a real NATS, against the local Binance REST fake.

A VenueOrder on ``exec.order.binance`` becomes an order at the (fake) venue and its reports on
``exec.report.binance``. Then exeq stops; meanwhile the venue fills one order and ends another; exeq
starts again and publishes what it missed exactly once (and nothing more on a further restart). One
order's id is longer than Binance takes (36): it goes there mapped, and is found again after the restart.

Balances: the fake moves them on fills as Binance does. The first start records a baseline; the restart
finds the venue's balances moved exactly by the fills published since (those made while exeq was down
included): no mismatch. A deposit made behind exeq's back before the last restart is a mismatch of that
asset and amount, logged, counted and in /health.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import signal
import sys
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

from tests.fakes.fake_binance_rest import FakeBinanceRest
from tests.stack_helpers import Stack, nats_only
from trader.bus.connection import connect_nats
from trader.execution.venues.ccxt_live import CLIENT_ID_RULES, map_client_id
from trader.messages import ExecutionReport, VenueOrder, encode

pytestmark = pytest.mark.integration

T = TypeVar("T")
LIVE2 = "itest-live2-" + "x" * 30  # too long for Binance as it is
LIVE2_AT_VENUE = map_client_id(LIVE2, CLIENT_ID_RULES["binance"])


@pytest.fixture(scope="module")
def nats_stack(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Stack]:
    """Only a NATS server: exeq provisions its streams itself."""
    with nats_only(Path(tmp_path_factory.mktemp("ccxt-exeq"))) as stack:
        yield stack


@pytest.fixture
async def fake() -> AsyncIterator[FakeBinanceRest]:
    server = FakeBinanceRest()
    await server.start()
    yield server
    await server.stop()


@pytest.fixture
async def nc(nats_stack: Stack) -> AsyncIterator[NATS]:
    client = await connect_nats(nats_stack.nats_url, "test")
    assert client is not None
    yield client
    await client.close()


class ExeqProcess:
    """``trader service run exeq`` with one ccxt venue, started and stopped on demand. The fake venue
    runs in the test's event loop, so every wait here yields to it."""

    def __init__(self, stack: Stack, fake: FakeBinanceRest) -> None:
        venue = {
            "kind": "ccxt",
            "exchange": "binance",
            "base_url": f"http://127.0.0.1:{fake.port}",
            "poll_interval_s": 0.2,
            "api_key_env": "ITEST_BINANCE_KEY",
            "api_secret_env": "ITEST_BINANCE_SECRET",
            "retries": 2,
            "backoff_s": 0.05,
            "timeout_ms": 5000,
            "rate_limit": False,
        }
        self.env = {
            **stack.env,
            "TRADER_EXEQ__VENUES": json.dumps({"binance": venue}),
            "ITEST_BINANCE_KEY": "itest-key",
            "ITEST_BINANCE_SECRET": "itest-secret",
        }
        self.port = stack.ports["exeq"]
        self.log_path = stack.data_dir / "exeq.log"
        self.process: asyncio.subprocess.Process | None = None

    def log(self) -> str:
        return self.log_path.read_text(errors="replace")[-4000:]

    def events(self, name: str, since: int = 0) -> list[dict[str, Any]]:
        """exeq's JSON log lines with event ``name``, from byte ``since`` of its log on."""
        lines = self.log_path.read_bytes()[since:].decode(errors="replace").splitlines()
        parsed = [json.loads(line) for line in lines if line.startswith("{")]
        return [p for p in parsed if p.get("event") == name]

    def log_size(self) -> int:
        return self.log_path.stat().st_size if self.log_path.exists() else 0

    async def health(self) -> dict[str, Any]:
        async with httpx.AsyncClient() as client:
            body: dict[str, Any] = (
                await client.get(f"http://127.0.0.1:{self.port}/health", timeout=5)
            ).json()
            return body

    async def start(self) -> None:
        with self.log_path.open("ab") as log:  # the child keeps its own copy of the descriptor
            self.process = await asyncio.create_subprocess_exec(
                sys.executable, "-m", "trader", "service", "run", "exeq", env=self.env, stdout=log, stderr=log
            )
        await eventually(self._ready, "exeq ready", timeout=60, log=self.log)

    async def _ready(self) -> bool:
        assert self.process is not None
        assert self.process.returncode is None, "exeq exited:\n" + self.log()
        with contextlib.suppress(httpx.HTTPError):
            async with httpx.AsyncClient() as client:
                return (await client.get(f"http://127.0.0.1:{self.port}/ready", timeout=2)).status_code == 200
        return False

    async def metrics(self) -> str:
        async with httpx.AsyncClient() as client:
            return (await client.get(f"http://127.0.0.1:{self.port}/metrics", timeout=5)).text

    async def stop(self) -> int:
        process, self.process = self.process, None
        if process is None:
            return 0
        if process.returncode is None:
            process.send_signal(signal.SIGTERM)
        try:
            return await asyncio.wait_for(process.wait(), 30)
        except TimeoutError:
            process.kill()
            await process.wait()
            raise


async def eventually(
    check: Callable[[], Awaitable[T]], what: str, timeout: float = 20, log: Callable[[], str] = str
) -> T:
    deadline = time.monotonic() + timeout
    while True:
        result = await check()
        if result:
            return result
        assert time.monotonic() < deadline, f"timed out waiting for {what}\n{log()}"
        await asyncio.sleep(0.1)


@pytest.fixture
async def exeq(nats_stack: Stack, fake: FakeBinanceRest) -> AsyncIterator[ExeqProcess]:
    process = ExeqProcess(nats_stack, fake)
    yield process
    await process.stop()


async def send(js: JetStreamContext, vcid: str, quantity: str, price: str) -> VenueOrder:
    order = VenueOrder(
        action="new",
        client_order_id=vcid,
        venue_client_id=vcid,
        strategy="itest",
        account="live",
        venue="binance",
        symbol="BTCUSDT",
        side="buy",
        quantity=D(quantity),
        type="limit",
        price=D(price),
        timestamp=time.time_ns() // 1_000_000,
    )
    await js.publish("exec.order.binance", encode(order), headers={"Nats-Msg-Id": f"{vcid}:new:itest"})
    return order


async def reports(js: JetStreamContext) -> list[tuple[str, ExecutionReport]]:
    """Every report on ``exec.report.binance``, in order, with its Nats-Msg-Id."""
    state = (await js.stream_info("EXEC")).state
    out = []
    for seq in range(state.first_seq, state.last_seq + 1):
        with contextlib.suppress(NotFoundError):
            msg = await js.get_msg("EXEC", seq)
            if msg.subject == "exec.report.binance":
                report = msgspec.json.decode(msg.data or b"", type=ExecutionReport)
                out.append(((msg.headers or {}).get("Nats-Msg-Id", ""), report))
    return out


def summary(got: list[tuple[str, ExecutionReport]]) -> list[tuple[str, str, D]]:
    return [(r.exec_id, r.kind, r.last_quantity) for _, r in got]


async def test_exeq_trades_through_ccxt_and_publishes_fills_made_while_it_was_down_once(
    nc: NATS, fake: FakeBinanceRest, exeq: ExeqProcess
) -> None:
    js = nc.jetstream()
    start = exeq.log_size()
    await exeq.start()
    (first,) = exeq.events("exeq.balances_first_baseline", since=start)
    assert first["venue"] == "binance"
    await send(js, "live1", "0.5", "59000.50")
    await send(js, LIVE2, "0.2", "58000")

    async def count(n: int) -> list[tuple[str, ExecutionReport]]:
        got = await reports(js)
        return got if len(got) >= n else []

    accepted = await eventually(lambda: count(2), "both orders accepted", log=exeq.log)
    assert sorted((r.venue_client_id, r.kind) for _, r in accepted) == [
        (LIVE2, "accepted"),
        ("live1", "accepted"),
    ]
    assert LIVE2_AT_VENUE != LIVE2
    assert fake.order_by_client_id(LIVE2_AT_VENUE).quantity == D("0.2")
    at_venue = fake.order_by_client_id("live1")
    assert (at_venue.quantity, at_venue.price, at_venue.side) == (D("0.5"), D("59000.50"), "BUY")
    fake.fill("live1", "0.2", "59000.50", "0.0118001")
    await eventually(lambda: count(3), "the fill while up", log=exeq.log)

    assert await exeq.stop() == 0
    # While exeq is down: live1 fills further, live2 fills a little and the venue expires it.
    missed = fake.fill("live1", "0.1", "59000.40", "0.00590040")
    fake.fill(LIVE2_AT_VENUE, "0.05", "58000", "0.0029")
    fake.venue_cancel(LIVE2_AT_VENUE, "EXPIRED")

    restart = exeq.log_size()
    await exeq.start()
    got = await eventually(lambda: count(6), "the fills made while exeq was down", log=exeq.log)
    await asyncio.sleep(1.5)  # several polls: anything published twice would be there now
    got = await reports(js)
    mine = sorted(summary(got))
    assert mine == sorted(
        [
            ("binance:live1:1", "accepted", D(0)),
            ("binance:live1:2", "fill", D("0.2")),
            ("binance:live1:3", "fill", D("0.1")),
            (f"binance:{LIVE2}:1", "accepted", D(0)),
            (f"binance:{LIVE2}:2", "fill", D("0.05")),
            (f"binance:{LIVE2}:3", "expired", D(0)),
        ]
    ), exeq.log()
    assert all(msg_id == r.exec_id for msg_id, r in got)
    caught = next(r for _, r in got if r.exec_id == "binance:live1:3")
    assert (caught.last_price, caught.fee, caught.venue_order_id) == (
        missed.price,
        D("0.0059004"),
        str(fake.order_by_client_id("live1").order_id),
    )
    assert "exeq.reconcile_mismatch" not in exeq.log()
    # The venue's balances moved by exactly the three fills since the first start (two made while down).
    assert exeq.events("exeq.balance_mismatch") == [], exeq.log()
    (checked,) = exeq.events("exeq.balances_reconciled", since=restart)
    assert (checked["venue"], checked["fills"], checked["since_seq"]) == ("binance", 3, first["seq"])
    spent = D("0.2") * D("59000.50") + D("0.1") * D("59000.40") + D("0.05") * D("58000")
    usdt = D(100000) - spent - D("0.0118001") - D("0.0059004") - D("0.0029")
    assert fake.balances == {"BTC": D("1.35"), "USDT": usdt}
    assert (await exeq.health())["balance_mismatches"] == []
    # live1 was adopted, not sent again; its next fill is published once.
    assert len(fake.new_orders()) == 2
    fake.fill("live1", "0.1", "59000.50", "0")
    await eventually(lambda: count(7), "the fill after the restart", log=exeq.log)
    gauge = 'trader_venue_balance{asset="USDT",service="exeq",venue="binance"} '
    assert f"{gauge}{float(usdt)!r}" in await exeq.metrics()  # as fetched at the restart

    # One more restart, live1 still open (0.4 of 0.5 filled): nothing to catch up, nothing published again.
    # Meanwhile 0.25 BTC arrives that no order explains: a mismatch of BTC (USDT moved by the last fill only).
    assert await exeq.stop() == 0
    fake.deposit("BTC", "0.25")
    last = exeq.log_size()
    await exeq.start()
    await asyncio.sleep(1.0)
    again = await reports(js)
    assert len(again) == 7
    assert ("binance:live1:3", "fill", D("0.1")) in summary(again)
    assert [r.exec_id for _, r in again][-1] == "binance:live1:4"
    (mismatch,) = exeq.events("exeq.balance_mismatch", since=last)
    assert mismatch["level"] == "warning"
    venue_btc = D("1.35") + D("0.1") + D("0.25")
    assert (mismatch["venue"], mismatch["asset"], mismatch["fills"]) == ("binance", "BTC", 1)
    figures = [D(mismatch[k]) for k in ("expected", "venue_balance", "difference")]
    assert figures == [venue_btc - D("0.25"), venue_btc, D("0.25")]  # exact, as Decimal strings
    assert [(m["asset"], m["difference"]) for m in (await exeq.health())["balance_mismatches"]] == [
        ("BTC", "0.25")
    ]
    errors = 'trader_errors_total{kind="reconcile.mismatch",service="exeq"} 1.0'
    assert errors in await exeq.metrics()
    assert fake.balances["BTC"] == venue_btc  # reported, not corrected
