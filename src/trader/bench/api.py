"""`trader bench api`: the operator api's read latency with a long order history, and its WebSocket's
delivery delay from the bus to a client.

On the servers of `trader up --detach --services ''`: the benchmark writes a history of ``orders``
orders (each NEW, ACCEPTED, FILLED, with a fill report) to ORDERS and EXEC, starts the api itself
with a read token of its own (never printed), waits until it is ready (the time it took to read the
history is a figure too), then:

- reads: each main GET ``requests`` times, one after another, over HTTP on loopback: p50, p99, max;
- the WebSocket: a client subscribed to ``fills``; fill reports published to EXEC at each rate for
  ``seconds``; the delay of each from its publish to its arrival at the client (one clock: the
  benchmark publishes and receives): p50, p99, max, and how many arrived.

The api is stopped at the end. Figures depend on the machine and what else runs on it.
"""

from __future__ import annotations

import asyncio
import json
import os
import secrets
import subprocess
import sys
import time
import uuid
from decimal import Decimal
from typing import Any

import httpx
import msgspec

from trader.bench.ingest import stop_processes
from trader.bench.trading import latency_figures
from trader.bus.connection import connect_nats
from trader.bus.publish import Outgoing, publish_batch
from trader.bus.streams import exec_report_subject, order_state_subject
from trader.config import Settings
from trader.messages import ExecutionReport, Order, encode
from trader.stack.state import read_state

STRATEGY = "bench-api"
READS = (
    "/api/orders?limit=100",
    "/api/orders?status=open",
    "/api/orders?strategy=bench-api&symbol=BTCUSDT&status=FILLED&limit=50",
    "/api/orders/{coid}",
    "/api/fills?limit=100",
    "/api/positions",
    "/api/pnl",
    "/api/trading",
)


def _states(run: str, i: int, now: int) -> list[Order]:
    coid = f"{STRATEGY}-{run}-{i}"
    base = Order(
        client_order_id=coid,
        strategy=STRATEGY,
        account="paper",
        symbol="BTCUSDT",
        side="buy" if i % 2 else "sell",
        type="limit",
        quantity=Decimal("0.01"),
        price=Decimal("60000.5"),
        status="NEW",
        version=1,
        created=now,
        updated=now,
    )
    accepted = msgspec.structs.replace(base, status="ACCEPTED", version=2, updated=now + 1)
    filled = msgspec.structs.replace(
        base,
        status="FILLED",
        version=3,
        updated=now + 2,
        filled_quantity=Decimal("0.01"),
        average_price=Decimal("60000.5"),
    )
    return [base, accepted, filled]


def _fill(run: str, key: str, coid: str, now: int) -> ExecutionReport:
    return ExecutionReport(
        exec_id=f"{run}-{key}",
        kind="fill",
        client_order_id=coid,
        strategy=STRATEGY,
        account="paper",
        venue="bench",
        symbol="BTCUSDT",
        side="buy",
        last_quantity=Decimal("0.01"),
        last_price=Decimal("60000.5"),
        timestamp=now,
    )


async def _write_history(js: Any, run: str, orders: int) -> None:
    now = time.time_ns() // 1_000_000
    batch: list[Outgoing] = []
    for i in range(orders):
        for state in _states(run, i, now):
            msg_id = f"{state.client_order_id}:{state.version}"
            batch.append(Outgoing(order_state_subject(STRATEGY), encode(state), msg_id=msg_id))
        report = _fill(run, f"h{i}", f"{STRATEGY}-{run}-{i}", now)
        batch.append(Outgoing(exec_report_subject("bench"), encode(report), msg_id=report.exec_id))
        if len(batch) >= 4_000:
            await _publish(js, batch)
            batch = []
    await _publish(js, batch)


async def _publish(js: Any, batch: list[Outgoing]) -> None:
    result = await publish_batch(js, batch)
    if result.failed:
        raise RuntimeError(f"{len(result.failed)} history messages not stored: {result.errors[:3]}")


def _spawn_api(settings: Settings, token: str) -> subprocess.Popen[bytes]:
    env = {
        **os.environ,
        "TRADER_API__TOKENS": json.dumps([{"name": "bench", "role": "read", "token": token}]),
    }
    settings.log_dir.mkdir(parents=True, exist_ok=True)
    with settings.log_file("api").open("ab") as log:
        argv = [sys.executable, "-m", "trader", "service", "run", "api"]
        return subprocess.Popen(argv, stdout=log, stderr=subprocess.STDOUT, env=env)


async def _wait_ready(client: httpx.AsyncClient, proc: subprocess.Popen[bytes], timeout_s: float) -> float:
    started = time.monotonic()
    while time.monotonic() - started < timeout_s:
        if proc.poll() is not None:
            raise RuntimeError("the api exited while starting: see `trader logs api`")
        try:
            if (await client.get("/ready")).status_code == 200:
                return time.monotonic() - started
        except httpx.HTTPError:
            pass
        await asyncio.sleep(0.1)
    raise RuntimeError(f"the api was not ready within {timeout_s:.0f}s")


async def _reads(client: httpx.AsyncClient, coid: str, requests: int) -> dict[str, Any]:
    figures = {}
    for path in READS:
        url = path.format(coid=coid)
        took = []
        for _ in range(requests):
            began = time.perf_counter()
            response = await client.get(url)
            took.append(time.perf_counter() - began)
            if response.status_code != 200:
                raise RuntimeError(f"GET {url}: {response.status_code} {response.text[:200]}")
        figures[path] = {**latency_figures(took), "bytes": len(response.content)}
    return figures


async def _websocket_delay(
    settings: Settings, nc: Any, token: str, run: str, rate: int, seconds: float
) -> dict:
    from websockets.asyncio.client import connect

    sent: dict[str, float] = {}
    delays: list[float] = []
    url = f"ws://{settings.bind_host}:{settings.ports.api}/api/ws"
    async with connect(url, additional_headers={"Authorization": f"Bearer {token}"}, max_queue=None) as ws:
        await ws.send(json.dumps({"op": "subscribe", "channels": ["fills"]}))
        while json.loads(await ws.recv())["type"] != "subscribed":
            pass

        async def receive() -> None:
            async for text in ws:
                message = json.loads(text)
                if message["type"] == "fill":
                    at = sent.get(message["data"]["exec_id"])
                    if at is not None:
                        delays.append(time.perf_counter() - at)

        receiver = asyncio.create_task(receive())
        total = int(rate * seconds)
        subject = exec_report_subject("bench")
        began = time.perf_counter()
        for i in range(total):
            due = began + i / rate
            if (wait := due - time.perf_counter()) > 0:
                await asyncio.sleep(wait)
            key = f"w{rate}-{i}"
            report = _fill(run, key, f"{STRATEGY}-{run}-0", time.time_ns() // 1_000_000)
            sent[report.exec_id] = time.perf_counter()
            await nc.publish(subject, encode(report), headers={"Nats-Msg-Id": report.exec_id})
        await nc.flush()
        deadline = time.monotonic() + 10
        while len(delays) < total and time.monotonic() < deadline:
            await asyncio.sleep(0.1)
        receiver.cancel()
        achieved = total / (time.perf_counter() - began)
    return {
        "rate_per_s": rate,
        "sent": total,
        "received": len(delays),
        "publish_rate_achieved": round(achieved, 1),
        **latency_figures(delays),
    }


async def run_api_bench(
    settings: Settings, *, orders: int, requests: int, rates: list[int], seconds: float
) -> dict[str, Any]:
    state = read_state(settings.run_dir)
    if state is None or state.phase not in ("ready", "degraded"):
        raise RuntimeError("the stack is not running: start it with `trader up --detach --services ''` first")
    if any(c["name"] == "api" for c in state.components):
        raise RuntimeError("an api runs already: start the servers only, `trader up --detach --services ''`")
    run = uuid.uuid4().hex[:8]
    token = secrets.token_urlsafe(32)
    nc = await connect_nats(settings.effective_nats_url, "bench-api")
    assert nc is not None
    proc = None
    try:
        began = time.perf_counter()
        await _write_history(nc.jetstream(), run, orders)
        written_s = time.perf_counter() - began
        proc = _spawn_api(settings, token)
        base = f"http://{settings.bind_host}:{settings.ports.api}"
        headers = {"Authorization": f"Bearer {token}"}
        async with httpx.AsyncClient(base_url=base, headers=headers, timeout=30) as client:
            ready_s = await _wait_ready(client, proc, 300)
            health = (await client.get("/health")).json()
            reads = await _reads(client, f"{STRATEGY}-{run}-{orders // 2}", requests)
        live = [await _websocket_delay(settings, nc, token, run, rate, seconds) for rate in rates]
        return {
            "orders_written": orders,
            "history_write_s": round(written_s, 2),
            "orders_in_api": health.get("orders"),
            "api_ready_s": round(ready_s, 2),
            "requests_per_read": requests,
            "reads": reads,
            "websocket": live,
        }
    finally:
        await nc.close()
        if proc is not None:
            stop_processes({"api": proc})
