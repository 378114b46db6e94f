"""The api's app without a bus: every route but the probes and the docs refuses a request without a
known token (401), a read token cannot act (403), bodies are checked (422 naming the field)."""

from __future__ import annotations

import re
from pathlib import Path

import pytest
from fastapi.testclient import TestClient
from starlette.websockets import WebSocketDisconnect

from trader.config import Settings
from trader.runtime.http import build_probe_app
from trader.services.api import Api

TRADE = "t" * 32
READ = "r" * 32
OPEN = {"/health", "/ready", "/docs", "/docs/oauth2-redirect", "/openapi.json"}


@pytest.fixture
def client(tmp_path: Path) -> TestClient:
    tokens = [
        {"name": "op", "role": "trade", "token": TRADE},
        {"name": "viewer", "role": "read", "token": READ},
    ]
    service = Api(Settings(data_dir=tmp_path, api={"tokens": tokens}))
    probes = build_probe_app("api", lambda: {"status": "ok"}, lambda: {"ready": True}, lambda: b"m 1\n")
    return TestClient(service.http_app(probes))


def _routes(client: TestClient) -> list[tuple[str, str]]:
    """Every (method, path) of the OpenAPI document, but the open ones; ids filled in."""
    found = []
    for path, operations in client.get("/openapi.json").json()["paths"].items():
        if path not in OPEN:
            found += [(method.upper(), re.sub(r"\{[^}]+\}", "some-id", path)) for method in operations]
    return found


def _auth(token: str) -> dict[str, str]:
    return {"Authorization": f"Bearer {token}"}


def test_every_route_but_the_probes_and_docs_needs_a_known_token(client: TestClient) -> None:
    routes = _routes(client)
    assert len(routes) >= 23  # 16 reads (with /metrics) and 7 actions
    for method, path in routes:
        assert client.request(method, path).status_code == 401, (method, path)
        assert client.request(method, path, headers=_auth("x" * 32)).status_code == 401, (method, path)
        assert client.request(method, path, headers={"Authorization": f"Basic {READ}"}).status_code == 401
    assert client.get("/health").status_code == 200
    assert client.get("/ready").status_code == 200


def test_a_read_token_cannot_act(client: TestClient) -> None:
    acts = [(m, p) for m, p in _routes(client) if m in ("POST", "DELETE")]
    assert len(acts) == 7
    for method, path in acts:
        refused = client.request(method, path, headers=_auth(READ), json={})
        assert refused.status_code == 403, (method, path)
        assert READ not in refused.text
        assert "viewer" in refused.json()["detail"]


def test_metrics_need_a_read_token(client: TestClient) -> None:
    assert client.get("/metrics").status_code == 401
    assert client.get("/metrics", headers=_auth(READ)).text == "m 1\n"


@pytest.mark.parametrize(
    ("body", "field"),
    [
        ({"side": "buy", "quantity": "1"}, "symbol"),
        ({"symbol": "BTCUSDT", "side": "buy", "quantity": "0"}, "quantity"),
        ({"symbol": "BTCUSDT", "side": "buy", "quantity": "NaN"}, "quantity"),
        ({"symbol": "BTCUSDT", "side": "buy", "quantity": "1", "price": "-5"}, "price"),
        ({"symbol": "BTCUSDT", "side": "buy", "quantity": "1", "tif": "DAY"}, "tif"),
        ({"symbol": "BTC/USDT", "side": "buy", "quantity": "1"}, "symbol"),
        ({"symbol": "BTCUSDT", "side": "buy", "quantity": "1", "strategy": "a.b"}, "strategy"),
        ({"symbol": "BTCUSDT", "side": "buy", "quantity": "1", "qty": "2"}, "qty"),
    ],
)
def test_a_bad_order_is_422_naming_the_field(client: TestClient, body: dict, field: str) -> None:
    r = client.post("/api/orders", json=body, headers=_auth(TRADE))
    assert r.status_code == 422
    assert field in {str(x) for e in r.json()["detail"] for x in e["loc"]}


def test_a_good_order_waits_for_the_bus(client: TestClient) -> None:
    r = client.post(
        "/api/orders", json={"symbol": "BTCUSDT", "side": "buy", "quantity": "0.01"}, headers=_auth(TRADE)
    )
    assert r.status_code == 503  # not started: nothing is sent


def test_the_websocket_closes_on_an_unknown_token(client: TestClient) -> None:
    with client.websocket_connect("/api/ws") as ws:
        ws.send_json({"op": "auth", "token": "y" * 32})
        with pytest.raises(WebSocketDisconnect) as closed:
            ws.receive_json()
    assert closed.value.code == 4401


def test_the_websocket_takes_a_token_and_refuses_bad_ops(client: TestClient) -> None:
    with client.websocket_connect("/api/ws") as ws:
        ws.send_json({"op": "auth", "token": READ})
        ws.send_json({"op": "subscribe", "channels": ["trading", "nope"]})
        assert "nope" in ws.receive_json()["data"]["reason"]
        ws.send_json({"op": "subscribe", "channels": ["trading"]})
        first = ws.receive_json()
        assert (first["type"], first["data"]["mode"]) == ("trading", "active")
        assert ws.receive_json()["type"] == "subscribed"
        ws.send_json({"op": "subscribe", "ticks": [{"venue": "mock", "symbol": "BTC.*"}]})
        assert ws.receive_json()["type"] == "error"


def test_the_openapi_document_lists_the_api(client: TestClient) -> None:
    paths = client.get("/openapi.json").json()["paths"]
    assert {"/api/orders", "/api/orders/{client_order_id}", "/api/trading/halt", "/api/bars"} <= set(paths)


def test_reads_serve_the_view_as_json_with_decimal_strings(tmp_path: Path) -> None:
    from decimal import Decimal

    from tests.unit.api.test_view import _fill, _order
    from trader.messages import PnlSnapshot

    tokens = [{"name": "viewer", "role": "read", "token": READ}]
    service = Api(Settings(data_dir=tmp_path, api={"tokens": tokens}))
    view = service.ctx.view
    view.apply_order(_order("a", 1, price=Decimal("60000.10")))
    view.apply_report(_fill("e1", "a"))
    zero = Decimal(0)
    view.apply_pnl(
        PnlSnapshot(scope="total", realized=Decimal("1.5"), unrealized=zero, fees=zero, total=zero)
    )
    probes = build_probe_app("api", lambda: {"status": "ok"}, lambda: {"ready": True}, lambda: b"")
    client = TestClient(service.http_app(probes))
    read = _auth(READ)
    orders = client.get("/api/orders", headers=read).json()
    assert orders[0]["price"] == "60000.10"
    detail = client.get("/api/orders/a", headers=read).json()
    assert [r["exec_id"] for r in detail["reports"]] == ["e1"]
    assert client.get("/api/fills", headers=read).json()[0]["last_price"] == "100"
    assert client.get("/api/pnl", headers=read).json()[0]["realized"] == "1.5"
    assert client.get("/api/trading", headers=read).json()["mode"] == "active"
    assert client.get("/api/status", headers=read).json() == {
        "supervisor": None,
        "components": [],
        "trading": {"mode": "active", "reason": None, "since": 0},
    }
