"""The operator api on the real stack, as `trader up` runs it: the token file, every endpoint, the auth
rules (no token 401, wrong token 401, read token cannot act 403), an order through risk to a fill and a
position, the kill switch halting and canceling within a second, the WebSocket pushing a fill and ticks,
bad input answered 422 with the field, the order rate limit."""

from __future__ import annotations

import asyncio
import json
import stat
import time
from collections.abc import AsyncIterator, Iterator
from decimal import Decimal
from pathlib import Path
from typing import Any

import httpx
import pytest
import websockets
from websockets.asyncio.client import connect as ws_connect

from tests.stack_helpers import Stack
from trader.bus.connection import connect_nats

pytestmark = pytest.mark.integration

READS = [
    "/api/status",
    "/api/trading",
    "/api/streams",
    "/api/orders",
    "/api/orders/nope",
    "/api/fills",
    "/api/positions",
    "/api/pnl",
    "/api/pnl/history",
    "/api/bars?symbol=BTCUSDT&timeframe=1s",
    "/api/spreads",
    "/api/features",
    "/api/dlq",
    "/api/lake",
    "/api/actions",
    "/metrics",
]
ACTIONS = [
    ("POST", "/api/orders", {"symbol": "BTCUSDT", "side": "buy", "quantity": "0.01"}),
    ("DELETE", "/api/orders/nope", None),
    ("POST", "/api/orders/cancel-all", {}),
    ("POST", "/api/trading/halt", {}),
    ("POST", "/api/trading/reduce-only", {}),
    ("POST", "/api/trading/resume", {}),
    ("POST", "/api/dlq/replay", {"dry_run": True}),
]
RATE_PER_S = 5
BURST = 10


@pytest.fixture(scope="module")
def stack(tmp_path_factory: pytest.TempPathFactory) -> Iterator[tuple[Stack, str]]:
    s = Stack.create(
        Path(tmp_path_factory.mktemp("api")),
        TRADER_GATEWAY__RATE="100",
        TRADER_PNL__SNAPSHOT_INTERVAL_S="0.5",
        TRADER_API__ORDER_RATE_PER_S=str(RATE_PER_S),
        TRADER_API__ORDER_BURST=str(BURST),
    )
    # Every default service but the strategies: only the test's orders.
    services = [name for name in s.settings().services if name != "strategy"]
    up = s.trader("up", "--detach", "--services", ",".join(services), check=True, timeout=600)
    try:
        yield s, up.stdout + up.stderr
    finally:
        s.trader("down", timeout=180)


def _tokens(stack: Stack) -> dict[str, str]:
    body = json.loads((stack.data_dir / "secrets" / "api-tokens.json").read_text())
    return {t["role"]: t["token"] for t in body["tokens"]}


@pytest.fixture
async def api(stack: tuple[Stack, str]) -> AsyncIterator[tuple[httpx.AsyncClient, dict[str, str]]]:
    s, _ = stack
    # A loaded 2-core machine kept the api over 15 s on a request (a clean-clone run): not a speed test.
    async with httpx.AsyncClient(base_url=f"http://127.0.0.1:{s.ports['api']}", timeout=60) as client:
        yield client, _tokens(s)


def _auth(token: str) -> dict[str, str]:
    return {"Authorization": f"Bearer {token}"}


async def _until(check: Any, timeout: float, what: str, every: float = 0.05) -> Any:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        found = await check()
        if found:
            return found
        await asyncio.sleep(every)
    raise AssertionError(f"not within {timeout}s: {what}")


async def _order(client: httpx.AsyncClient, token: str, coid: str) -> dict[str, Any] | None:
    r = await client.get(f"/api/orders/{coid}", headers=_auth(token))
    return r.json() if r.status_code == 200 else None


async def _submit(client: httpx.AsyncClient, token: str, **body: Any) -> str:
    r = await client.post("/api/orders", json=body, headers=_auth(token))
    assert r.status_code == 202, r.text
    return r.json()["client_order_id"]


# Tokens and auth -----------------------------------------------------------------------------------


def test_trader_up_makes_a_private_token_file_and_says_where_once(stack: tuple[Stack, str]) -> None:
    s, output = stack
    path = s.data_dir / "secrets" / "api-tokens.json"
    assert stat.S_IMODE(path.stat().st_mode) == 0o600
    assert output.count(str(path)) == 1
    tokens = _tokens(s)
    assert set(tokens) == {"read", "trade"}
    for token in tokens.values():
        assert token not in output
        assert token not in s.log("api")
        assert token not in s.trader("config", "--json").stdout


async def test_health_and_ready_answer_without_a_token_and_nothing_else_does(
    api: tuple[httpx.AsyncClient, dict[str, str]],
) -> None:
    client, tokens = api
    assert (await client.get("/health")).status_code == 200
    assert (await client.get("/ready")).status_code == 200
    for path in READS:
        assert (await client.get(path)).status_code == 401, path
        assert (await client.get(path, headers=_auth("not-a-token-at-all"))).status_code == 401, path
    for method, path, body in ACTIONS:
        assert (await client.request(method, path, json=body)).status_code == 401, path
        wrong = await client.request(method, path, json=body, headers=_auth(tokens["read"] + "x"))
        assert wrong.status_code == 401, path
        refused = await client.request(method, path, json=body, headers=_auth(tokens["read"]))
        assert refused.status_code == 403, path
        assert tokens["read"] not in refused.text


async def test_every_read_answers_with_a_read_token(api: tuple[httpx.AsyncClient, dict[str, str]]) -> None:
    client, tokens = api
    read = _auth(tokens["read"])
    for path in READS:
        r = await client.get(path, headers=read)
        assert r.status_code == (404 if path.endswith("/nope") else 200), (path, r.text)
    status = (await client.get("/api/status", headers=read)).json()
    assert {"api", "oms", "risk", "nats"} <= {c["name"] for c in status["components"]}
    assert status["trading"]["mode"] == "active"
    streams = (await client.get("/api/streams", headers=read)).json()
    assert "OPERATOR" in {s["stream"] for s in streams["streams"]}
    assert streams["history"]["room_bytes"] > 0
    assert isinstance((await client.get("/api/spreads", headers=read)).json(), list)  # [] while absent
    assert (await client.get("/api/features?timeframe=7m", headers=read)).json() == []  # no such table
    lake = (await client.get("/api/lake", headers=read)).json()
    assert "market_ticks" in {t["table"] for t in lake}
    assert "trader_messages_in_total" in (await client.get("/metrics", headers=read)).text

    async def bars() -> list[dict[str, Any]]:
        r = await client.get("/api/bars?symbol=BTCUSDT&venue=mock&timeframe=1s&limit=5", headers=read)
        return r.json()

    found = await _until(bars, 30, "1s bars of BTCUSDT in QuestDB", every=0.5)
    assert found[0]["ts"] < found[-1]["ts"]
    assert Decimal(found[-1]["close"]) > 0
    assert (await client.get("/openapi.json")).json()["info"]["title"] == "trader api"


async def test_a_bad_order_gets_422_naming_the_field(api: tuple[httpx.AsyncClient, dict[str, str]]) -> None:
    client, tokens = api
    trade = _auth(tokens["trade"])
    cases = [
        ({"symbol": "BTCUSDT", "side": "buy", "quantity": "-1"}, "quantity"),
        ({"symbol": "BTCUSDT", "side": "hold", "quantity": "1"}, "side"),
        ({"symbol": "BTCUSDT", "side": "buy", "quantity": "abc"}, "quantity"),
        ({"symbol": "BTC USDT", "side": "buy", "quantity": "1"}, "symbol"),
        ({"symbol": "NOSUCH", "side": "buy", "quantity": "1"}, "symbol"),  # no market data
        ({"symbol": "BTCUSDT", "side": "buy", "quantity": "1", "qty": "1"}, "qty"),
    ]
    for body, field in cases:
        r = await client.post("/api/orders", json=body, headers=trade)
        assert r.status_code == 422, (body, r.text)
        assert field in [str(x) for e in r.json()["detail"] for x in e["loc"]], r.text
        assert all(e["msg"] for e in r.json()["detail"])


# Orders, fills, positions, the WebSocket --------------------------------------------------------------


async def test_an_order_goes_through_risk_to_a_fill_a_position_and_the_websocket(
    stack: tuple[Stack, str], api: tuple[httpx.AsyncClient, dict[str, str]]
) -> None:
    s, _ = stack
    client, tokens = api
    url = f"ws://127.0.0.1:{s.ports['api']}/api/ws"
    async with ws_connect(url) as ws:
        await ws.send(json.dumps({"op": "auth", "token": tokens["read"]}))
        await ws.send(
            json.dumps(
                {
                    "op": "subscribe",
                    "channels": ["orders", "fills", "positions", "actions"],
                    "ticks": [{"venue": "mock", "symbol": "BTCUSDT"}],
                }
            )
        )
        seen: dict[str, list[dict[str, Any]]] = {}
        while "subscribed" not in seen:  # the action's event goes only to those subscribed when it is made
            message = json.loads(await asyncio.wait_for(ws.recv(), 15))
            seen.setdefault(message["type"], []).append(message)
        coid = await _submit(client, tokens["trade"], symbol="BTCUSDT", side="buy", quantity="0.01")

        def filled() -> Decimal:  # the paper venue may fill in parts (a tick's size is what it offers)
            mine = [f["data"] for f in seen.get("fill", []) if f["data"]["client_order_id"] == coid]
            return sum((Decimal(f["last_quantity"]) for f in mine), Decimal(0))

        def submitted() -> bool:  # the action's event, before or after the fill
            return any(a["data"]["action"] == "submit_order" for a in seen.get("action", []))

        deadline = time.monotonic() + 15
        while time.monotonic() < deadline and not (
            filled() >= Decimal("0.01")
            and any(p["data"].get("strategy") == "manual" for p in seen.get("position", []))
            and submitted()
        ):
            message = json.loads(await asyncio.wait_for(ws.recv(), 15))
            seen.setdefault(message["type"], []).append(message)
    assert filled() == Decimal("0.01"), seen.keys()
    assert seen.get("tick")
    assert seen["tick"][0]["data"]["symbol"] == "BTCUSDT"
    assert any(o["data"]["client_order_id"] == coid for o in seen.get("order", []))
    assert submitted(), seen.get("action")

    read = _auth(tokens["read"])

    async def filled_order() -> dict[str, Any] | None:  # the view applies the last state after the fill
        found = await _order(client, tokens["read"], coid)
        return found if found is not None and found["order"]["status"] == "FILLED" else None

    detail = await _until(filled_order, 15, "the order FILLED in /api/orders/{id}")
    assert detail["order"]["status"] == "FILLED"
    assert [st["version"] for st in detail["states"]] == sorted(st["version"] for st in detail["states"])
    assert any(r["kind"] == "fill" for r in detail["reports"])
    listed = (
        await client.get("/api/orders?status=FILLED&symbol=BTCUSDT&strategy=manual", headers=read)
    ).json()
    assert coid in {o["client_order_id"] for o in listed}
    assert coid not in {
        o["client_order_id"] for o in (await client.get("/api/orders?status=open", headers=read)).json()
    }
    fill_list = (await client.get("/api/fills?symbol=BTCUSDT", headers=read)).json()
    assert coid in {f["client_order_id"] for f in fill_list}

    async def manual_position() -> dict[str, Any] | None:
        found = (await client.get("/api/positions?strategy=manual", headers=read)).json()
        return next((p for p in found if p["symbol"] == "BTCUSDT"), None)

    async def whole_position() -> dict[str, Any] | None:
        # The order is FILLED; the position may still be at a partial fill for a moment (pnl lags).
        position = await manual_position()
        return position if position and Decimal(position["quantity"]) >= Decimal("0.01") else None

    position = await _until(whole_position, 5, "the manual BTCUSDT position of the whole fill")
    assert Decimal(position["quantity"]) == Decimal("0.01")
    actions = (await client.get("/api/actions", headers=read)).json()
    mine = next(a for a in actions if a["params"].get("client_order_id") == coid)
    assert (mine["actor"], mine["role"], mine["outcome"]) == ("operator", "trade", "accepted")
    assert tokens["trade"] not in json.dumps(actions)

    async def pnl_rows() -> list[dict[str, Any]]:
        return (await client.get("/api/pnl/history?scope=total&limit=10", headers=read)).json()

    rows = await _until(pnl_rows, 10, "PnL rows in QuestDB", every=0.5)
    assert rows[0]["ts"] <= rows[-1]["ts"]
    assert any(p["scope"] == "total" for p in (await client.get("/api/pnl", headers=read)).json())


async def test_websocket_refuses_an_unknown_token(stack: tuple[Stack, str]) -> None:
    s, _ = stack
    async with ws_connect(f"ws://127.0.0.1:{s.ports['api']}/api/ws") as ws:
        await ws.send(json.dumps({"op": "auth", "token": "wrong-token-of-some-length"}))
        with pytest.raises(websockets.ConnectionClosed) as closed:
            await asyncio.wait_for(ws.recv(), 5)
    assert closed.value.rcvd is not None
    assert closed.value.rcvd.code == 4401


# Cancels and the trading switch -----------------------------------------------------------------------


async def _resting(client: httpx.AsyncClient, tokens: dict[str, str], symbol: str = "BTCUSDT") -> str:
    """A buy 3 % below the last trade (within risk's 5 % price band): it rests, open, until canceled."""
    read = _auth(tokens["read"])

    async def last_close() -> Decimal | None:
        r = await client.get(f"/api/bars?symbol={symbol}&venue=mock&timeframe=1s&limit=1", headers=read)
        rows = r.json()
        return Decimal(rows[-1]["close"]) if rows else None

    price = ((await _until(last_close, 30, f"a 1s bar of {symbol}", every=0.5)) * Decimal("0.97")).quantize(
        Decimal("0.01")
    )
    coid = await _submit(
        client, tokens["trade"], symbol=symbol, side="buy", quantity="0.01", price=str(price)
    )

    async def accepted() -> bool:
        found = await _order(client, tokens["read"], coid)
        assert found is None or found["order"]["status"] != "REJECTED", found
        return found is not None and found["order"]["status"] == "ACCEPTED"

    await _until(accepted, 10, f"order {coid} accepted")
    return coid


async def _status(client: httpx.AsyncClient, tokens: dict[str, str], coid: str) -> str | None:
    found = await _order(client, tokens["read"], coid)
    return None if found is None else found["order"]["status"]


async def test_cancel_one_and_cancel_all(api: tuple[httpx.AsyncClient, dict[str, str]]) -> None:
    client, tokens = api
    trade = _auth(tokens["trade"])
    one = await _resting(client, tokens)
    assert (await client.delete(f"/api/orders/{one}", headers=trade)).status_code == 202
    await _until(lambda: _canceled(client, tokens, [one]), 5, "the order canceled")
    assert (await client.delete(f"/api/orders/{one}", headers=trade)).status_code == 409  # already ended
    btc, eth = await _resting(client, tokens), await _resting(client, tokens, "ETHUSDT")
    r = await client.post("/api/orders/cancel-all", json={"symbol": "BTCUSDT"}, headers=trade)
    assert r.status_code == 202
    assert r.json()["canceled"] == [btc]
    await _until(lambda: _canceled(client, tokens, [btc]), 5, "BTCUSDT canceled")
    assert await _status(client, tokens, eth) == "ACCEPTED"
    r = await client.post("/api/orders/cancel-all", json={}, headers=trade)
    assert eth in r.json()["canceled"]
    await _until(lambda: _canceled(client, tokens, [eth]), 5, "the rest canceled")


async def _canceled(client: httpx.AsyncClient, tokens: dict[str, str], ids: list[str]) -> bool:
    return all([await _status(client, tokens, coid) == "CANCELED" for coid in ids])


async def test_halt_cancels_within_a_second_refuses_new_orders_and_resume_lifts_it(
    api: tuple[httpx.AsyncClient, dict[str, str]],
) -> None:
    client, tokens = api
    trade, read = _auth(tokens["trade"]), _auth(tokens["read"])
    resting = await _resting(client, tokens)
    halted_at = time.monotonic()
    r = await client.post("/api/trading/halt", json={"reason": "test halt"}, headers=trade)
    assert r.status_code == 200
    assert r.json()["trading"]["mode"] == "halted"
    await _until(lambda: _canceled(client, tokens, [resting]), 1.0, "the open order canceled by the halt")
    assert time.monotonic() - halted_at < 1.0
    assert (await client.get("/api/trading", headers=read)).json()["mode"] == "halted"
    denied = await _submit(client, tokens["trade"], symbol="BTCUSDT", side="buy", quantity="0.01")
    await _until(lambda: _is(client, tokens, denied, "REJECTED"), 5, "a new order denied while halted")

    r = await client.post("/api/trading/reduce-only", json={}, headers=trade)
    assert r.json()["trading"]["mode"] == "reduce_only"
    r = await client.post("/api/trading/resume", json={"reason": "test over"}, headers=trade)
    assert r.json()["trading"]["mode"] == "active"
    actions = [a["action"] for a in (await client.get("/api/actions?limit=3", headers=read)).json()]
    assert actions == ["resume", "reduce_only", "submit_order"]


async def _is(client: httpx.AsyncClient, tokens: dict[str, str], coid: str, status: str) -> bool:
    return await _status(client, tokens, coid) == status


# Dead letters -------------------------------------------------------------------------------------------


async def test_dead_letters_are_listed_and_replayed(
    stack: tuple[Stack, str], api: tuple[httpx.AsyncClient, dict[str, str]]
) -> None:
    s, _ = stack
    client, tokens = api
    nc = await connect_nats(s.nats_url, "test")
    assert nc is not None
    try:
        await nc.jetstream().publish("market.tick.mock.BADTICK", b'{"not": "a tick"}')
    finally:
        await nc.close()

    async def letters() -> list[dict[str, Any]]:
        found = (await client.get("/api/dlq?limit=50", headers=_auth(tokens["read"]))).json()
        return [x for x in found if x["subject"] == "market.tick.mock.BADTICK"]

    found = await _until(letters, 10, "the bad tick in the dead letters", every=0.3)
    assert found[0]["reason"]
    assert found[0]["payload"] == '{"not": "a tick"}'
    r = await client.post("/api/dlq/replay", json={"dry_run": True}, headers=_auth(tokens["trade"]))
    assert r.status_code == 200
    assert "market.tick.mock.BADTICK" in {m["subject"] for m in r.json()["messages"]}


# Rate limit (last: it spends the trade token's burst) -----------------------------------------------


async def test_order_endpoints_are_rate_limited(api: tuple[httpx.AsyncClient, dict[str, str]]) -> None:
    client, tokens = api
    await asyncio.sleep(BURST / RATE_PER_S)  # the bucket full again
    bad = {"symbol": "BTCUSDT", "side": "buy", "quantity": "-1"}  # refused after the limit: nothing sent

    async def one() -> httpx.Response:
        return await client.post("/api/orders", json=bad, headers=_auth(tokens["trade"]))

    began = time.monotonic()
    answers = await asyncio.gather(*(one() for _ in range(BURST * 3)))
    elapsed = time.monotonic() - began
    codes = [r.status_code for r in answers]
    assert set(codes) == {422, 429}
    assert BURST <= codes.count(422) <= BURST + RATE_PER_S * elapsed + 1
    assert all(int(r.headers["Retry-After"]) >= 1 for r in answers if r.status_code == 429)
    # The trading switch is never rate limited.
    r = await client.post("/api/trading/resume", json={}, headers=_auth(tokens["trade"]))
    assert r.status_code == 200
