"""The dashboard in a real headless Chromium (Debian's ``chromium``, driven by Playwright) against a real
stack, as `trader up` runs it: sign in, the chart drawn from QuestDB's bars and then moved by the
WebSocket, an order placed in the form that fills and moves the position, a resting order canceled
from its row, halt (asked to confirm) changing the state and a new order refused, a stopped service
marked down, and a read token seeing no action buttons. Screenshots of each view go to
``test-artifacts/dashboard/`` (gitignored), named in the run's summary."""

from __future__ import annotations

import json
import os
import re
import shutil
import signal
import time
from collections.abc import Callable, Iterator
from decimal import Decimal
from pathlib import Path
from typing import Any

import httpx
import pytest
from playwright.sync_api import Browser, Page, expect, sync_playwright

from tests.stack_helpers import Stack

pytestmark = [pytest.mark.integration, pytest.mark.alone]

CHROMIUM = shutil.which("chromium")
ARTIFACTS = Path(__file__).parents[2] / "test-artifacts" / "dashboard"
# The trading path and the api; alt-feed only to be stopped. No strategy: only the test's orders.
SERVICES = [
    "gateway",
    "alt-feed",
    "normalizer",
    "risk",
    "oms",
    "execution-router",
    "exeq",
    "ptrc",
    "pnl",
    "api",
]
STOPPED = "alt-feed"
WAIT_MS = 15_000


@pytest.fixture(scope="module")
def stack(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Stack]:
    if CHROMIUM is None:
        message = "the browser tests need Debian's chromium: apt-get install chromium"
        if os.environ.get("CI"):
            pytest.fail(message)
        pytest.skip(message)
    s = Stack.create(
        Path(tmp_path_factory.mktemp("dashboard")),
        TRADER_GATEWAY__RATE="40",
        TRADER_GATEWAY__VENUES="{}",  # the mock venue alone: less to run
        TRADER_PNL__SNAPSHOT_INTERVAL_S="0.5",
        # A stopped service stays down for the test to see (the supervisor would restart it at once).
        TRADER_SUPERVISOR__RESTART_BACKOFF_INITIAL_S="600",
        TRADER_SUPERVISOR__RESTART_BACKOFF_MAX_S="600",
    )
    s.trader("up", "--detach", "--services", ",".join(SERVICES), check=True, timeout=600)
    try:
        yield s
    finally:
        s.trader("down", timeout=180)


@pytest.fixture(scope="module")
def tokens(stack: Stack) -> dict[str, str]:
    body = json.loads((stack.data_dir / "secrets" / "api-tokens.json").read_text())
    return {t["role"]: t["token"] for t in body["tokens"]}


@pytest.fixture(scope="module")
def base_url(stack: Stack) -> str:
    return f"http://127.0.0.1:{stack.ports['api']}"


@pytest.fixture(scope="module")
def browser(stack: Stack, pytestconfig: pytest.Config) -> Iterator[Browser]:
    ARTIFACTS.mkdir(parents=True, exist_ok=True)
    with sync_playwright() as p:
        chromium = p.chromium.launch(executable_path=CHROMIUM)
        try:
            yield chromium
        finally:
            chromium.close()
    reporter = pytestconfig.pluginmanager.getplugin("terminalreporter")
    if reporter is not None:
        reporter.write_line(f"dashboard screenshots: {ARTIFACTS}")


@pytest.fixture
def open_page(browser: Browser, base_url: str) -> Iterator[Callable[[], Page]]:
    """New pages, each in a context of its own (its own sessionStorage); at the end, no script error
    and no Content-Security-Policy violation on any of them."""
    contexts, problems = [], []

    def new_page() -> Page:
        context = browser.new_context(base_url=base_url, viewport={"width": 1400, "height": 1000})
        contexts.append(context)
        page = context.new_page()
        page.on("pageerror", lambda error: problems.append(f"script error: {error}"))
        page.on(
            "console",
            lambda m: problems.append(m.text) if "Content Security Policy" in m.text else None,
        )
        return page

    yield new_page
    for context in contexts:
        context.close()
    assert problems == []


def _sign_in(page: Page, token: str) -> None:
    page.goto("/")
    page.fill("#login-token", token)
    page.click("#login-submit")
    expect(page.locator("#dashboard")).to_be_visible()


def _shot(page: Page, name: str) -> None:
    page.screenshot(path=str(ARTIFACTS / f"{name}.png"), full_page=True)


def _until(check: Callable[[], Any], timeout: float, what: str) -> Any:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        found = check()
        if found:
            return found
        time.sleep(0.2)
    raise AssertionError(f"not within {timeout}s: {what}")


def _get(base_url: str, token: str, path: str) -> Any:
    r = httpx.get(base_url + path, headers={"Authorization": f"Bearer {token}"}, timeout=10)
    r.raise_for_status()
    return r.json()


def _bars(base_url: str, token: str, timeframe: str = "1s") -> list[dict[str, Any]]:
    return _get(base_url, token, f"/api/bars?symbol=BTCUSDT&venue=mock&timeframe={timeframe}&limit=50")


def _place(page: Page, side: str, quantity: str, price: str = "") -> str:
    """Submit the form; the id of the order it placed (the form says it first)."""
    result = page.locator("#order-result")
    before = result.inner_text()
    page.fill("#order-symbol", "BTCUSDT")
    page.select_option("#order-side", side)
    page.fill("#order-quantity", quantity)
    page.fill("#order-price", price)
    page.click("#order-submit")
    expect(result).not_to_have_text(before, timeout=WAIT_MS)
    text = result.inner_text()
    assert result.get_attribute("data-status") != "error", text
    return text.split(":")[0]


# Signing in ------------------------------------------------------------------------------------------------


def test_sign_in_refuses_an_unknown_token_and_keeps_the_token_out_of_urls(
    open_page: Callable[[], Page], tokens: dict[str, str]
) -> None:
    page = open_page()
    page.goto("/")
    assert page.url.endswith("/dashboard/")
    expect(page.locator("#login")).to_be_visible()
    _shot(page, "1-login")
    page.fill("#login-token", "not-a-token-of-this-stack")
    page.click("#login-submit")
    expect(page.locator("#login-error")).to_have_text("The api does not know this token.")
    expect(page.locator("#dashboard")).to_be_hidden()

    _sign_in(page, tokens["trade"])
    expect(page.locator("#who")).to_have_text("operator (trade)")
    expect(page.locator("#live-state")).to_have_attribute("data-state", "live", timeout=WAIT_MS)
    assert tokens["trade"] not in page.url
    assert page.evaluate("sessionStorage.getItem('trader.token')") == tokens["trade"]
    assert page.evaluate("localStorage.length") == 0
    assert page.evaluate("document.cookie") == ""
    page.reload()  # the tab keeps it
    expect(page.locator("#who")).to_have_text("operator (trade)")
    page.click("#logout")
    expect(page.locator("#login")).to_be_visible()
    assert page.evaluate("sessionStorage.getItem('trader.token')") is None


# The chart --------------------------------------------------------------------------------------------------


def test_the_chart_draws_candles_from_real_bars_then_moves_live(
    open_page: Callable[[], Page], tokens: dict[str, str], base_url: str
) -> None:
    _until(lambda: len(_bars(base_url, tokens["read"])) >= 5, 60, "five 1s bars of BTCUSDT in QuestDB")
    page = open_page()
    _sign_in(page, tokens["read"])
    page.select_option("#chart-timeframe", "1s")
    page.click("#instrument button[type=submit]")
    legend = page.locator("#chart-legend")
    expect(legend).to_contain_text("BTCUSDT · mock · 1s", timeout=WAIT_MS)
    history = int(legend.get_attribute("data-history") or 0)
    assert history >= 5
    first_last = int(legend.get_attribute("data-last-time") or 0)
    stored = {row["ts"] // 1000 for row in _bars(base_url, tokens["read"])}
    assert first_last in stored or first_last > max(stored) - 2  # a real bar's time (or the one forming)

    # Live: ticks fold into the current candle and new seconds open new candles.
    page.wait_for_function(
        "t => Number(document.querySelector('#chart-legend').dataset.lastTime) >= t + 2",
        arg=first_last,
        timeout=WAIT_MS,
    )
    assert int(legend.get_attribute("data-updates") or 0) > 0
    assert int(legend.get_attribute("data-candles") or 0) > history
    assert page.locator("#chart canvas").count() > 0
    _shot(page, "2-chart")


def test_the_pages_decimal_and_candle_logic(open_page: Callable[[], Page], base_url: str) -> None:
    """The modules the page runs, checked in the browser itself: rounding on decimal strings (never a
    binary float) and ticks folded into candles, a closed bar final."""
    page = open_page()
    page.goto("/dashboard/")
    rounded = page.evaluate(
        """async () => {
            const { roundDecimal } = await import('/dashboard/js/format.js');
            return [['1.23456', 4], ['-0.00004', 4], ['1E-7', 8], ['123', 2], ['-2.5', 0],
                    ['0.99995', 4], ['60000.1', 4], ['0.1', 1]].map(([v, p]) => roundDecimal(v, p));
        }"""
    )
    assert rounded == ["1.2346", "0.0000", "0.00000010", "123.00", "-3", "1.0000", "60000.1000", "0.1"]
    folded = page.evaluate(
        """async () => {
            const { CandleBook } = await import('/dashboard/js/candles.js');
            const book = new CandleBook('1s');
            const row = { open: '10', high: '11', low: '9', close: '10.5', volume: '2', closed: true };
            book.load([{ ts: 1000, ...row }]);
            const tick = (ms, price, size) => book.tick({ timestamp: ms, price, size });
            const ignoredInClosed = tick(1500, '99', '1');
            tick(2100, '10', '1'); tick(2200, '12', '0.5'); tick(2900, '8', '1');
            const late = tick(500, '10', '1');
            const bar = { open: '10', high: '12', low: '8', close: '9', volume: '3', closed: true };
            const closed = book.bar({ start: 2000, ...bar });
            const afterClose = tick(2950, '20', '1');
            return { ignoredInClosed, late, afterClose, closed, candles: book.candles() };
        }"""
    )
    assert folded["ignoredInClosed"] is None
    assert folded["late"] is None
    assert folded["afterClose"] is None
    assert folded["closed"]["historical"] is False
    assert [c["time"] for c in folded["candles"]] == [1, 2]
    assert folded["candles"][1] == {
        "time": 2,
        "open": 10,
        "high": 12,
        "low": 8,
        "close": 9,
        "volume": 3,
        "closed": True,
    }


# Orders --------------------------------------------------------------------------------------------------


def test_an_order_from_the_form_fills_in_the_orders_table_and_moves_the_position(
    open_page: Callable[[], Page], tokens: dict[str, str]
) -> None:
    page = open_page()
    _sign_in(page, tokens["trade"])
    coid = _place(page, "buy", "0.01")
    expect(page.locator("#order-result")).to_have_attribute("data-status", "FILLED", timeout=WAIT_MS)
    row = page.locator(f'#recent-orders tr[data-id="{coid}"]')
    expect(row).to_have_attribute("data-status", "FILLED", timeout=WAIT_MS)
    expect(row).to_contain_text("manual")
    position = page.locator('#positions tr[data-symbol="BTCUSDT"][data-strategy="manual"]')
    # The order is FILLED; the position may show a partial fill for a moment (the paper venue fills
    # what a tick offers), then the whole.
    expect(position).to_have_attribute("data-quantity", re.compile(r"^0\.010*$"), timeout=WAIT_MS)
    expect(page.locator('#pnl tr[data-scope="total"]')).to_have_count(1, timeout=WAIT_MS)
    # The fill on the chart (BTCUSDT, the default instrument).
    page.wait_for_function("() => Number(document.querySelector('#chart-legend').dataset.fills) >= 1")
    _shot(page, "3-order-filled")

    # A second buy moves the position again, live.
    _place(page, "buy", "0.02")
    expect(page.locator("#order-result")).to_have_attribute("data-status", "FILLED", timeout=WAIT_MS)
    expect(position).to_have_attribute("data-quantity", re.compile(r"^0\.030*$"), timeout=WAIT_MS)


def test_a_bad_order_shows_the_apis_reason(open_page: Callable[[], Page], tokens: dict[str, str]) -> None:
    page = open_page()
    _sign_in(page, tokens["trade"])
    page.fill("#order-symbol", "BTCUSDT")
    page.fill("#order-quantity", "-1")
    page.click("#order-submit")
    result = page.locator("#order-result")
    expect(result).to_have_attribute("data-status", "error", timeout=WAIT_MS)
    expect(result).to_contain_text("422")
    expect(result).to_contain_text("quantity")


def test_a_resting_order_is_canceled_from_its_row(
    open_page: Callable[[], Page], tokens: dict[str, str], base_url: str
) -> None:
    page = open_page()
    _sign_in(page, tokens["trade"])
    close = Decimal(_bars(base_url, tokens["read"])[-1]["close"])
    price = str((close * Decimal("0.97")).quantize(Decimal("0.01")))  # inside risk's band, below the market
    coid = _place(page, "buy", "0.01", price)
    row = page.locator(f'#open-orders tr[data-id="{coid}"]')
    expect(row).to_have_attribute("data-status", "ACCEPTED", timeout=WAIT_MS)
    row.locator("button.cancel").click()
    expect(row).to_have_count(0, timeout=WAIT_MS)
    expect(page.locator(f'#recent-orders tr[data-id="{coid}"]')).to_have_attribute("data-status", "CANCELED")


# The trading switch -----------------------------------------------------------------------------------------


def test_halt_asks_first_then_changes_the_state_and_a_new_order_is_refused(
    open_page: Callable[[], Page], tokens: dict[str, str]
) -> None:
    page = open_page()
    _sign_in(page, tokens["trade"])
    trading = page.locator("#trading")
    expect(trading).to_have_attribute("data-mode", "active", timeout=WAIT_MS)
    page.click("#halt")
    expect(page.locator("#confirm")).to_be_visible()
    page.click("#confirm-no")  # asked, and declined: nothing changes
    expect(page.locator("#confirm")).to_be_hidden()
    expect(trading).to_have_attribute("data-mode", "active")

    page.click("#halt")
    expect(page.locator("#confirm-text")).to_contain_text("Halt trading?")
    page.click("#confirm-yes")
    expect(trading).to_have_attribute("data-mode", "halted", timeout=WAIT_MS)
    expect(page.locator("#trading-mode")).to_have_text("halted")
    expect(page.locator("#halt")).to_be_disabled()
    coid = _place(page, "buy", "0.01")
    result = page.locator("#order-result")
    expect(result).to_have_attribute("data-status", "REJECTED", timeout=WAIT_MS)
    expect(result).to_contain_text("halted")
    expect(page.locator(f'#recent-orders tr[data-id="{coid}"]')).to_contain_text("halted")
    _shot(page, "4-halted")

    # A second page sees the switch too, then resume lifts it.
    other = open_page()
    _sign_in(other, tokens["read"])
    expect(other.locator("#trading")).to_have_attribute("data-mode", "halted", timeout=WAIT_MS)
    page.click("#resume")
    page.click("#confirm-yes")
    expect(trading).to_have_attribute("data-mode", "active", timeout=WAIT_MS)
    expect(other.locator("#trading")).to_have_attribute("data-mode", "active", timeout=WAIT_MS)


# Services -------------------------------------------------------------------------------------------------


def test_a_stopped_service_is_marked_down(
    open_page: Callable[[], Page], tokens: dict[str, str], stack: Stack
) -> None:
    page = open_page()
    _sign_in(page, tokens["read"])
    row = page.locator(f'#status tr[data-name="{STOPPED}"]')
    expect(row).to_have_attribute("data-state", "up", timeout=WAIT_MS)
    expect(page.locator('#status tr[data-name="api"]')).to_have_attribute("data-state", "up")
    pid = next(c["pid"] for c in stack.status()["components"] if c["name"] == STOPPED)
    os.kill(pid, signal.SIGTERM)
    expect(row).to_have_attribute("data-state", "down", timeout=WAIT_MS)
    expect(page.locator('#status tr[data-name="api"]')).to_have_attribute("data-state", "up")
    _shot(page, "5-service-down")


# Roles -----------------------------------------------------------------------------------------------------


def test_a_read_token_sees_no_action_buttons(
    open_page: Callable[[], Page], tokens: dict[str, str], base_url: str
) -> None:
    close = Decimal(_bars(base_url, tokens["read"])[-1]["close"])
    body = {
        "symbol": "BTCUSDT",
        "side": "buy",
        "quantity": "0.01",
        "price": str((close * Decimal("0.97")).quantize(Decimal("0.01"))),
    }
    r = httpx.post(
        f"{base_url}/api/orders", json=body, headers={"Authorization": f"Bearer {tokens['trade']}"}
    )
    assert r.status_code == 202, r.text
    coid = r.json()["client_order_id"]

    page = open_page()
    _sign_in(page, tokens["read"])
    expect(page.locator("#who")).to_have_text("viewer (read)")
    expect(page.locator(f'#open-orders tr[data-id="{coid}"]')).to_have_count(1, timeout=WAIT_MS)
    for action in ["#halt", "#reduce-only", "#resume", "#order-form", "button.cancel"]:
        expect(page.locator(action)).to_have_count(0)
    expect(page.locator("#trading")).to_be_visible()  # the state is shown to everyone
    _shot(page, "6-read-only")
    httpx.post(
        f"{base_url}/api/orders/cancel-all", json={}, headers={"Authorization": f"Bearer {tokens['trade']}"}
    ).raise_for_status()
