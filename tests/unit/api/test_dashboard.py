"""The dashboard's files as the api serves them (no bus): the page and its modules without a token,
under a Content-Security-Policy that keeps it to the api's own origin; ``/api/whoami`` telling the page
which role its token has; every file the page loads is one the package ships."""

from __future__ import annotations

import re
import tomllib
from fnmatch import fnmatch
from pathlib import Path

import pytest
from fastapi.testclient import TestClient

from trader.api.dashboard import STATIC_DIR
from trader.config import Settings
from trader.runtime.http import build_probe_app
from trader.services.api import Api

TRADE = "t" * 32
READ = "r" * 32
ROOT = Path(__file__).parents[3]
VENDOR = "vendor/lightweight-charts/lightweight-charts.standalone.production.mjs"


@pytest.fixture
def client(tmp_path: Path) -> TestClient:
    tokens = [
        {"name": "op", "role": "trade", "token": TRADE},
        {"name": "viewer", "role": "read", "token": READ},
    ]
    service = Api(Settings(data_dir=tmp_path, api={"tokens": tokens}))
    probes = build_probe_app("api", lambda: {"status": "ok"}, lambda: {"ready": True}, lambda: b"m 1\n")
    return TestClient(service.http_app(probes))


def test_the_root_sends_a_browser_to_the_dashboard(client: TestClient) -> None:
    r = client.get("/", follow_redirects=False)
    assert r.status_code == 307
    assert r.headers["location"] == "/dashboard/"
    page = client.get("/dashboard/")
    assert page.status_code == 200
    assert page.headers["content-type"].startswith("text/html")
    assert 'src="js/app.js"' in page.text


def test_the_page_is_kept_to_the_apis_origin(client: TestClient) -> None:
    r = client.get("/dashboard/")
    policy = dict(p.strip().split(" ", 1) for p in r.headers["content-security-policy"].split(";"))
    assert policy["default-src"] == "'none'"
    assert policy["script-src"] == "'self'"
    assert policy["connect-src"] == "'self'"
    assert policy["frame-ancestors"] == "'none'"
    assert policy["form-action"] == "'none'"  # a token typed into a form never goes into a URL
    assert r.headers["x-content-type-options"] == "nosniff"
    assert r.headers["referrer-policy"] == "no-referrer"


@pytest.mark.parametrize("path", ["js/app.js", "js/candles.js", VENDOR])
def test_modules_are_served_as_javascript(client: TestClient, path: str) -> None:
    r = client.get(f"/dashboard/{path}")
    assert r.status_code == 200
    assert r.headers["content-type"].startswith("text/javascript")


def test_the_page_loads_nothing_from_elsewhere() -> None:
    """No CDN: every script, style and import is a relative path to a file that exists."""
    for path in STATIC_DIR.rglob("*"):
        if path.suffix not in (".html", ".js", ".css"):
            continue
        text = path.read_text()
        for ref in re.findall(r'(?:src|href)="([^"]+)"|from "([^"]+)"', text):
            target = ref[0] or ref[1]
            if target.startswith("https://www.tradingview.com/"):  # the attribution link the license asks for
                continue
            if target == "data:,":  # no favicon (rather than a request that 404s)
                continue
            assert not re.match(r"^[a-z]+:|^//", target), (path, target)
            assert (path.parent / target).resolve().is_file(), (path, target)


def test_the_package_ships_every_dashboard_file() -> None:
    """pyproject's package data covers each file (a non-editable install has the page)."""
    config = tomllib.loads((ROOT / "pyproject.toml").read_text())
    patterns = config["tool"]["setuptools"]["package-data"]["trader.api"]
    served = [p.relative_to(STATIC_DIR.parent).as_posix() for p in STATIC_DIR.rglob("*") if p.is_file()]
    wanted = [p for p in served if not p.endswith(".md")]
    assert {"static/index.html", f"static/{VENDOR}", "static/vendor/lightweight-charts/NOTICE"} <= set(wanted)
    missing = [p for p in wanted if not any(fnmatch(p, pattern) for pattern in patterns)]
    assert missing == []


def test_the_charts_attribution_is_on_the_page() -> None:
    notice = (STATIC_DIR / "vendor" / "lightweight-charts" / "NOTICE").read_text()
    assert "TradingView, Inc." in notice
    page = (STATIC_DIR / "index.html").read_text()
    assert "Copyright (c) 2023 TradingView, Inc. https://www.tradingview.com/" in page
    assert "attributionLogo: true" in (STATIC_DIR / "js" / "chart.js").read_text()


def test_whoami_says_the_tokens_name_and_role_never_the_token(client: TestClient) -> None:
    assert client.get("/api/whoami").status_code == 401
    assert client.get("/api/whoami", headers={"Authorization": f"Bearer {'x' * 32}"}).status_code == 401
    read = client.get("/api/whoami", headers={"Authorization": f"Bearer {READ}"})
    assert read.json() == {"name": "viewer", "role": "read", "can_trade": False}
    trade = client.get("/api/whoami", headers={"Authorization": f"Bearer {TRADE}"})
    assert trade.json() == {"name": "op", "role": "trade", "can_trade": True}
    assert TRADE not in trade.text
