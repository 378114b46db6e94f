"""The ccxt live venue against a local fake of Binance spot's REST API (no NATS, no internet)."""

from __future__ import annotations

import asyncio
import json
from collections.abc import AsyncIterator
from decimal import Decimal as D
from pathlib import Path
from types import SimpleNamespace
from typing import Any

import pytest
from pydantic import SecretStr

from tests.venues.fake_binance_rest import DROP, FakeBinanceRest
from trader.config import ExeqSettings, Settings, VenueConfig
from trader.execution.venues import venue_class
from trader.execution.venues.ccxt_live import CcxtVenue, CcxtVenueSettings, Credentials, load_credentials
from trader.messages import ExecutionReport, VenueOrder
from trader.services.exeq import ExecutionDesk, Exeq

KEY, SECRET = "test-key-4f7a9c", "test-secret-b81e22"


def order(vcid: str = "o1", **changes: Any) -> VenueOrder:
    fields: dict[str, Any] = {
        "action": "new",
        "client_order_id": vcid.partition(".")[0],
        "venue_client_id": vcid,
        "strategy": "s1",
        "account": "acc",
        "venue": "binance",
        "symbol": "BTCUSDT",
        "side": "buy",
        "quantity": D("0.5"),
        "type": "limit",
        "price": D("59000.50"),
        "timestamp": 1,
    }
    return VenueOrder(**{**fields, **changes})


@pytest.fixture
async def fake() -> AsyncIterator[FakeBinanceRest]:
    server = FakeBinanceRest()
    await server.start()
    yield server
    await server.stop()


class Venue:
    def __init__(self, fake: FakeBinanceRest, **settings: Any) -> None:
        self.reports: list[ExecutionReport] = []
        base = {"exchange": "binance", "base_url": f"http://127.0.0.1:{fake.port}", "poll_interval_s": 3600}
        self.adapter = CcxtVenue(
            CcxtVenueSettings(**{**base, "backoff_s": 0.01, "rate_limit": False, **settings}),
            name="binance",
            report_listener=self.reports.append,
            credentials=Credentials(SecretStr(KEY), SecretStr(SECRET)),
        )


@pytest.fixture
async def venue(fake: FakeBinanceRest) -> AsyncIterator[Venue]:
    v = Venue(fake)
    await v.adapter.start()
    yield v
    await v.adapter.close()


def posted(fake: FakeBinanceRest) -> list[dict[str, str]]:
    return [p for method, path, p in fake.requests if method == "POST" and path == "/api/v3/order"]


async def test_submit_limit_is_accepted_with_our_client_id_and_exact_terms(
    fake: FakeBinanceRest, venue: Venue
) -> None:
    reports = await venue.adapter.submit(order(tif="IOC"))
    assert [r.kind for r in reports] == ["accepted"]
    sent = posted(fake)[-1]
    assert sent["newClientOrderId"] == "o1"
    assert (sent["type"], sent["side"], sent["timeInForce"]) == ("LIMIT", "BUY", "IOC")
    assert (D(sent["quantity"]), D(sent["price"])) == (D("0.5"), D("59000.50"))
    assert reports[0].venue_order_id == str(fake.order_by_client_id("o1").order_id)
    assert reports[0].venue_client_id == "o1"


async def test_partial_then_full_fill_are_reported_once_each_with_exact_decimals(
    fake: FakeBinanceRest, venue: Venue
) -> None:
    await venue.adapter.submit(order())
    t1 = fake.fill("o1", "0.2", "59000.50", "0.01180010", "USDT", maker=True)
    await venue.adapter.poll()
    t2 = fake.fill("o1", "0.3", "59000.50", "0.00030000", "BTC", maker=False)  # fee in the base asset
    await venue.adapter.poll()
    await venue.adapter.poll()  # nothing new
    fills = venue.reports
    assert [r.kind for r in fills] == ["fill", "fill"]
    assert [r.exec_id for r in fills] == [f"binance:{t1.trade_id}", f"binance:{t2.trade_id}"]
    assert [(r.last_quantity, r.last_price) for r in fills] == [
        (D("0.2"), D("59000.50")),
        (D("0.3"), D("59000.50")),
    ]
    assert fills[0].fee == D("0.0118001")
    assert fills[1].fee == D("0.0003") * D("59000.5")  # converted to the quote at the fill price
    assert [r.liquidity for r in fills] == ["maker", "taker"]
    assert await venue.adapter.open_orders() == []  # filled: no longer polled


async def test_market_order_fills_at_once_and_is_not_reported_again(
    fake: FakeBinanceRest, venue: Venue
) -> None:
    reports = await venue.adapter.submit(order("m1", type="market", price=None, quantity=D("0.01")))
    assert [r.kind for r in reports] == ["accepted", "fill"]
    assert (reports[1].last_quantity, reports[1].last_price, reports[1].fee) == (
        D("0.01"),
        D("60000"),
        D("0.6"),
    )
    assert "price" not in posted(fake)[-1]
    await venue.adapter.poll()
    assert venue.reports == []


async def test_cancel_and_a_cancel_the_venue_refuses(fake: FakeBinanceRest, venue: Venue) -> None:
    await venue.adapter.submit(order())
    reports = await venue.adapter.cancel(order(action="cancel"))
    assert [(r.kind, r.reason) for r in reports] == [("canceled", "canceled on request")]
    assert fake.order_by_client_id("o1").status == "CANCELED"
    refused = await venue.adapter.cancel(order("nope", action="cancel"))
    assert refused[0].kind == "rejected"
    assert refused[0].reason is not None
    assert "Unknown order sent." in refused[0].reason


async def test_insufficient_balance_is_rejected_with_the_venues_reason(venue: Venue) -> None:
    reports = await venue.adapter.submit(order(quantity=D("100")))
    assert [r.kind for r in reports] == ["rejected"]
    assert reports[0].reason is not None
    assert "Account has insufficient balance for requested action." in reports[0].reason
    assert reports[0].reason.startswith("InsufficientFunds")


async def test_post_only_goes_as_limit_maker_and_is_rejected_when_it_would_take(
    fake: FakeBinanceRest, venue: Venue
) -> None:
    taking = await venue.adapter.submit(order("p1", post_only=True, price=D("60001")))
    assert taking[0].kind == "rejected"
    assert posted(fake)[-1]["type"] == "LIMIT_MAKER"
    resting = await venue.adapter.submit(order("p2", post_only=True))
    assert resting[0].kind == "accepted"


async def test_replace_is_cancel_then_new_for_what_is_left(fake: FakeBinanceRest, venue: Venue) -> None:
    await venue.adapter.submit(order())
    fake.fill("o1", "0.2", "59000.50", "0.01")
    await venue.adapter.poll()
    first = fake.order_by_client_id("o1")
    reports = await venue.adapter.replace(order(action="replace", quantity=D("0.6"), price=D("59001")))
    assert [r.kind for r in reports] == ["replaced"]
    assert (reports[0].last_quantity, reports[0].last_price) == (D("0.6"), D("59001"))
    second = fake.order_by_client_id("o1")
    assert first.status == "CANCELED"
    assert (second.order_id != first.order_id, second.quantity, second.price) == (True, D("0.4"), D("59001"))
    fake.fill("o1", "0.4", "59001", "0.02")
    await venue.adapter.poll()
    assert [r.last_quantity for r in venue.reports] == [D("0.2"), D("0.4")]
    assert await venue.adapter.open_orders() == []


async def test_an_order_the_venue_expires_is_reported_expired(fake: FakeBinanceRest, venue: Venue) -> None:
    await venue.adapter.submit(order())
    fake.fill("o1", "0.1", "59000.50", "0")
    fake.venue_cancel("o1", "EXPIRED")
    await venue.adapter.poll()
    assert [r.kind for r in venue.reports] == ["fill", "expired"]
    assert venue.reports[1].reason == "expired at the venue: 0.4 unfilled"


async def test_5xx_and_a_dropped_connection_are_retried(fake: FakeBinanceRest, venue: Venue) -> None:
    fake.fail_next(503, DROP, 502)
    reports = await venue.adapter.submit(order())
    assert [r.kind for r in reports] == ["accepted"]
    assert len(posted(fake)) == 4  # three failed tries, then the answer
    assert len(fake.orders) == 1


async def test_a_retry_of_a_submit_that_reached_the_venue_adopts_it(
    fake: FakeBinanceRest, venue: Venue
) -> None:
    fake.add_open_order("o1", "BUY", "0.5", "59000.50")  # as if the first try had got there
    reports = await venue.adapter.submit(order())
    assert [r.kind for r in reports] == ["accepted"]
    assert len(fake.orders) == 1


async def test_a_submit_with_no_answer_is_confirmed_by_polling(fake: FakeBinanceRest) -> None:
    v = Venue(fake, retries=1)
    await v.adapter.start()
    try:
        fake.fail_next(503, 503)
        assert await v.adapter.submit(order()) == []  # unknown: nothing invented
        await v.adapter.poll()
        assert [r.kind for r in v.reports] == ["rejected"]  # the venue never had it
    finally:
        await v.adapter.close()


async def test_balances_are_decimals(venue: Venue) -> None:
    assert await venue.adapter.balances() == {"BTC": D("1"), "USDT": D("100000")}


async def test_reconcile_reports_unknown_missing_and_quantity_mismatches(fake: FakeBinanceRest) -> None:
    fake.add_open_order("stranger", "SELL", "0.1", "61000")
    fake.add_open_order("kept", "BUY", "0.5", "59000.50")
    old = fake.fill("kept", "0.1", "59000.50", "0")  # filled before the restart
    fake.add_open_order("short", "BUY", "0.5", "59000.50")
    v = Venue(fake)
    await v.adapter.start()
    try:
        believed = [(order("kept"), D("0.1")), (order("short"), D("0.2")), (order("gone"), D("0"))]
        mismatches = await v.adapter.reconcile(believed)
        assert sorted((m.kind, m.venue_client_id) for m in mismatches) == [
            ("missing_at_venue", "gone"),
            ("quantity", "short"),
            ("unknown_at_venue", "stranger"),
        ]
        before = len(posted(fake))
        # exeq's restore gives the adapter its open orders back: those at the venue are adopted, not
        # sent again, and their old trades are not reported again; the missing one is not sent.
        rest = await v.adapter.submit(order("kept", quantity=D("0.4")))
        assert [r.kind for r in rest] == ["accepted"]
        assert await v.adapter.submit(order("gone")) == []
        assert len(posted(fake)) == before
        new = fake.fill("kept", "0.4", "59000.50", "0")
        await v.adapter.poll()
        assert [r.exec_id for r in v.reports] == [f"binance:{new.trade_id}"]
        assert f"binance:{old.trade_id}" not in {r.exec_id for r in v.reports}
    finally:
        await v.adapter.close()


# Credentials, settings, wiring ---------------------------------------------------------------------


def test_credentials_from_the_environment_and_never_in_a_repr(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("TRADER_BINANCE_MAIN_API_KEY", KEY)
    monkeypatch.setenv("TRADER_BINANCE_MAIN_API_SECRET", SECRET)
    settings = CcxtVenueSettings(exchange="binance")
    credentials = load_credentials("binance-main", settings)
    assert credentials is not None
    assert credentials.api_key.get_secret_value() == KEY
    adapter = CcxtVenue(settings, name="binance-main")
    assert adapter.exchange.apiKey == KEY
    shown = " ".join(
        [
            repr(adapter),
            str(adapter),
            repr(settings),
            repr(credentials),
            str(credentials),
            repr(vars(adapter)),
        ]
    )
    assert KEY not in shown
    assert SECRET not in shown


def test_credentials_from_named_variables_or_a_secret_file(
    monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    monkeypatch.setenv("MY_KEY", "k1")
    monkeypatch.setenv("MY_SECRET", "s1")
    named = load_credentials("x", CcxtVenueSettings(api_key_env="MY_KEY", api_secret_env="MY_SECRET"))
    assert named is not None
    assert named.api_secret.get_secret_value() == "s1"
    path = tmp_path / "binance.json"
    path.write_text(json.dumps({"api_key": "k2", "api_secret": "s2"}))
    filed = load_credentials("x", CcxtVenueSettings(secret_file=path))
    assert filed is not None
    assert filed.api_key.get_secret_value() == "k2"
    assert load_credentials("nobody", CcxtVenueSettings()) is None


async def test_nothing_logged_shows_the_secret(
    fake: FakeBinanceRest, capsys: pytest.CaptureFixture[str]
) -> None:
    v = Venue(fake)
    await v.adapter.start()
    fake.fail_next(503)
    await v.adapter.submit(order())
    await v.adapter.submit(order("big", quantity=D("100")))
    await v.adapter.close()
    out = capsys.readouterr()
    assert "venue.retry" in out.out + out.err  # something was logged
    assert KEY not in out.out + out.err
    assert SECRET not in out.out + out.err


async def test_testnet_switches_to_the_sandbox_and_base_url_overrides_every_host() -> None:
    testnet = CcxtVenue(CcxtVenueSettings(exchange="binance"), name="b")
    assert "testnet" in testnet.exchange.urls["api"]["private"]
    live = CcxtVenue(CcxtVenueSettings(exchange="binance", testnet=False), name="b")
    assert live.exchange.urls["api"]["private"] == "https://api.binance.com/api/v3"
    local = CcxtVenue(CcxtVenueSettings(exchange="binance", base_url="http://127.0.0.1:9"), name="b")
    assert local.exchange.urls["api"]["private"] == "http://127.0.0.1:9/api/v3"
    for adapter in (testnet, live, local):
        await adapter.close()


async def test_exeq_builds_the_ccxt_adapter_from_its_venue_config() -> None:
    assert venue_class("ccxt") is CcxtVenue
    config = VenueConfig(kind="ccxt", exchange="binance", testnet=False, base_url="http://127.0.0.1:9")
    exeq = Exeq(Settings(exeq=ExeqSettings(venues={"live": config})))
    exeq._venue_reports = asyncio.Queue()
    adapter = exeq._adapter("live", "ccxt")
    assert isinstance(adapter, CcxtVenue)
    assert (adapter.name, adapter.exchange_id, adapter.settings.testnet) == ("live", "binance", False)
    assert adapter.settings.base_url == "http://127.0.0.1:9"
    await adapter.close()


class _Recorder:
    def __init__(self) -> None:
        self.errors: list[str] = []
        self.warnings: list[tuple[str, dict[str, Any]]] = []

    def count_error(self, kind: str, n: int = 1) -> None:
        self.errors.append(kind)

    def warning(self, event: str, **fields: Any) -> None:
        self.warnings.append((event, fields))


async def test_exeq_logs_and_counts_every_mismatch_and_changes_nothing(fake: FakeBinanceRest) -> None:
    fake.add_open_order("stranger", "SELL", "0.1", "61000")
    v = Venue(fake)
    await v.adapter.start()
    try:
        exeq = Exeq(Settings())
        exeq.desk = ExecutionDesk({"binance": v.adapter}, publish=_no_publish, clock=lambda: 0)
        exeq.desk._track(order("gone"))
        exeq.desk._track(order("parent", algo="twap"))  # an algo parent never reaches the venue
        recorder = _Recorder()
        rt = SimpleNamespace(metrics=recorder, log=recorder)
        await exeq._reconcile(rt)  # type: ignore[arg-type]
        assert recorder.errors == ["reconcile.mismatch", "reconcile.mismatch"]
        assert sorted(f["venue_client_id"] for _, f in recorder.warnings) == ["gone", "stranger"]
        assert {e for e, _ in recorder.warnings} == {"exeq.reconcile_mismatch"}
        assert not exeq.desk.orders[("binance", "gone")].ended  # believed open still: nothing overwritten
    finally:
        await v.adapter.close()


async def _no_publish(items: list[Any]) -> None:
    raise AssertionError("reconcile publishes nothing")
