"""The ccxt live venue against local fakes of Binance spot's and OKX's REST APIs (no NATS, no internet).

The main tests run against both venues (``case``): what differs is only what each says on the wire.
"""

from __future__ import annotations

import asyncio
import json
from collections.abc import AsyncIterator
from dataclasses import dataclass
from decimal import ROUND_HALF_EVEN, Context, Underflow, getcontext, localcontext
from decimal import Decimal as D
from pathlib import Path
from types import SimpleNamespace
from typing import Any

import ccxt.async_support as ccxt
import msgspec
import pytest
from prometheus_client import CollectorRegistry
from pydantic import SecretStr

from tests.fakes.fake_binance_rest import DROP, FakeBinanceRest
from tests.fakes.fake_okx_rest import FakeOkxRest
from trader.bus.publish import Outgoing
from trader.config import ExeqSettings, Settings, VenueConfig
from trader.execution.balances import BalanceBaseline
from trader.execution.desk import ExecutionDesk
from trader.execution.venues import PaperVenue, PaperVenueSettings, venue_class
from trader.execution.venues.ccxt_live import (
    CLIENT_ID_RULES,
    CcxtVenue,
    CcxtVenueSettings,
    Credentials,
    load_credentials,
    map_client_id,
)
from trader.messages import ExecutionReport, ReportKind, VenueOrder, encode
from trader.services.exeq import Exeq

KEY, SECRET, PASSPHRASE = "test-key-4f7a9c", "test-secret-b81e22", "test-pass-77d0"
# Ids of ours a venue refuses as they are: an algo child (OKX: not alphanumeric) and a strategy's long id
# (longer than either venue allows).
CHILD, LONG = "twap:parent-42.1", "mm-BTCUSDT-" + "9" * 30

Fake = FakeBinanceRest | FakeOkxRest


@dataclass(frozen=True)
class Case:
    """One venue: its fake, and how it says what the tests check."""

    exchange: str
    wire: dict[str, str]  # a limit IOC buy of o1, as sent
    qty_key: str
    price_key: str
    ended_status: str  # an order the venue ends on its own
    ended_kind: ReportKind
    market_fills_at_once: bool  # the venue's answer to a market order has its fills
    unknown_cancel: str  # the venue's reason for refusing the cancel of an unknown order
    insufficient: str

    def fake(self) -> Fake:
        if self.exchange == "okx":
            return FakeOkxRest(api_key=KEY, secret=SECRET, passphrase=PASSPHRASE)
        return FakeBinanceRest()


CASES = {
    "binance": Case(
        "binance",
        {"newClientOrderId": "o1", "type": "LIMIT", "side": "BUY", "timeInForce": "IOC"},
        "quantity",
        "price",
        "EXPIRED",
        "expired",
        True,
        "Unknown order sent.",
        "Account has insufficient balance for requested action.",
    ),
    "okx": Case(
        "okx",
        {"clOrdId": "o1", "ordType": "ioc", "side": "buy", "tdMode": "cash", "instId": "BTC-USDT"},
        "sz",
        "px",
        "canceled",
        "canceled",
        False,
        "Order cancellation failed as the order has been filled, canceled or does not exist.",
        "Order failed. Insufficient USDT balance in account.",
    ),
}


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


@pytest.fixture(params=list(CASES))
def case(request: pytest.FixtureRequest) -> Case:
    return CASES[request.param]


@pytest.fixture
async def fake(case: Case) -> AsyncIterator[Fake]:
    server = case.fake()
    await server.start()
    yield server
    await server.stop()


class Venue:
    def __init__(self, fake: Fake, exchange: str = "binance", **settings: Any) -> None:
        self.reports: list[ExecutionReport] = []
        base = {"exchange": exchange, "base_url": f"http://127.0.0.1:{fake.port}", "poll_interval_s": 3600}
        self.adapter = CcxtVenue(
            CcxtVenueSettings(**{**base, "backoff_s": 0.01, "rate_limit": False, **settings}),
            name=exchange,
            report_listener=self.reports.append,
            credentials=Credentials(SecretStr(KEY), SecretStr(SECRET), SecretStr(PASSPHRASE)),
        )


@pytest.fixture
async def venue(case: Case, fake: Fake) -> AsyncIterator[Venue]:
    v = Venue(fake, case.exchange)
    await v.adapter.start()
    yield v
    await v.adapter.close()


def posted(fake: Fake) -> list[dict[str, Any]]:
    return fake.new_orders()


def at_venue(case: Case, vcid: str) -> str:
    """The client id the venue knows our ``vcid`` by."""
    return map_client_id(vcid, CLIENT_ID_RULES[case.exchange])


def trade_requests(fake: Fake) -> list[dict[str, Any]]:
    trade_paths = ("/api/v3/myTrades", "/api/v5/trade/fills-history", "/api/v5/trade/fills")
    return [params for _, path, params in fake.requests if path in trade_paths]


async def test_submit_limit_is_accepted_with_our_client_id_and_exact_terms(
    case: Case, fake: Fake, venue: Venue
) -> None:
    reports = await venue.adapter.submit(order(tif="IOC"))
    assert [r.kind for r in reports] == ["accepted"]
    sent = posted(fake)[-1]
    assert {k: sent.get(k) for k in case.wire} == case.wire
    assert (D(sent[case.qty_key]), D(sent[case.price_key])) == (D("0.5"), D("59000.50"))
    assert reports[0].venue_order_id == str(fake.order_by_client_id("o1").order_id)
    assert (reports[0].venue_client_id, reports[0].venue) == ("o1", case.exchange)


async def test_partial_then_full_fill_are_reported_once_each_with_exact_decimals(
    case: Case, fake: Fake, venue: Venue
) -> None:
    await venue.adapter.submit(order())
    t1 = fake.fill("o1", "0.2", "59000.50", "0.01180010", "USDT", maker=True)
    await venue.adapter.poll()
    t2 = fake.fill("o1", "0.3", "59000.50", "0.00030000", "BTC", maker=False)  # fee in the base asset
    await venue.adapter.poll()
    await venue.adapter.poll()  # nothing new
    fills = venue.reports
    assert [r.kind for r in fills] == ["fill", "fill"]
    assert [r.exec_id for r in fills] == [f"{case.exchange}:{t1.trade_id}", f"{case.exchange}:{t2.trade_id}"]
    assert [(r.last_quantity, r.last_price) for r in fills] == [
        (D("0.2"), D("59000.50")),
        (D("0.3"), D("59000.50")),
    ]
    assert fills[0].fee == D("0.0118001")
    assert fills[1].fee == D("0.0003") * D("59000.5")  # converted to the quote at the fill price
    assert [r.liquidity for r in fills] == ["maker", "taker"]
    assert await venue.adapter.open_orders() == []  # filled: no longer polled


async def test_ccxt_leaves_the_services_decimal_context_as_it_was(
    case: Case, fake: Fake, venue: Venue
) -> None:
    """ccxt's decimal_to_precision sets ROUND_HALF_UP and traps Underflow on the context it runs in:
    exeq's own arithmetic (fees, slices) must keep rounding as every other service does."""
    with localcontext(Context()) as ours:  # Python's default: half-even, no Underflow trap
        await venue.adapter.submit(order(tif="IOC"))  # amount_to_precision, price_to_precision
        await venue.adapter.submit(order(venue_client_id="o2", type="market", price=None))
        fake.fill("o1", "0.2", "59000.50", "0.01180010", "USDT", maker=True)
        await venue.adapter.poll()
        await venue.adapter.cancel(order())
        assert getcontext() is ours
        assert (ours.rounding, ours.traps[Underflow]) == (ROUND_HALF_EVEN, False)


async def test_market_order_fills_once_at_the_venues_price(case: Case, fake: Fake, venue: Venue) -> None:
    answered = await venue.adapter.submit(order("m1", type="market", price=None, quantity=D("0.01")))
    assert len(answered) == (2 if case.market_fills_at_once else 1)  # else the fill comes by polling
    await venue.adapter.poll()
    await venue.adapter.poll()
    reports = answered + venue.reports
    assert [r.kind for r in reports] == ["accepted", "fill"]
    assert (reports[1].last_quantity, reports[1].last_price, reports[1].fee) == (
        D("0.01"),
        D("60000"),
        D("0.6"),
    )
    assert case.price_key not in posted(fake)[-1]


async def test_cancel_and_a_cancel_the_venue_refuses(case: Case, fake: Fake, venue: Venue) -> None:
    await venue.adapter.submit(order())
    reports = await venue.adapter.cancel(order(action="cancel"))
    assert [(r.kind, r.reason) for r in reports] == [("canceled", "canceled on request")]
    assert fake.order_by_client_id("o1").status.lower() == "canceled"
    refused = await venue.adapter.cancel(order("nope", action="cancel"))
    assert refused[0].kind == "rejected"
    assert refused[0].reason is not None
    assert refused[0].reason.startswith("cancel rejected: OrderNotFound: ")
    assert case.unknown_cancel in refused[0].reason


async def test_insufficient_balance_is_rejected_with_the_venues_reason(case: Case, venue: Venue) -> None:
    reports = await venue.adapter.submit(order(quantity=D("100")))
    assert [r.kind for r in reports] == ["rejected"]
    assert reports[0].reason is not None
    assert reports[0].reason.startswith("InsufficientFunds: ")
    assert case.insufficient in reports[0].reason


# Binance only: replace (whether OKX lets a new order reuse a canceled order's client id is not known
# here) and post-only (OKX takes a post-only order that would take, then cancels it).
binance_only = pytest.mark.parametrize("case", ["binance"], indirect=True)


@binance_only
async def test_post_only_goes_as_limit_maker_and_is_rejected_when_it_would_take(
    fake: FakeBinanceRest, venue: Venue
) -> None:
    taking = await venue.adapter.submit(order("p1", post_only=True, price=D("60001")))
    assert taking[0].kind == "rejected"
    assert posted(fake)[-1]["type"] == "LIMIT_MAKER"
    resting = await venue.adapter.submit(order("p2", post_only=True))
    assert resting[0].kind == "accepted"


@binance_only
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


async def test_an_order_the_venue_ends_is_reported_with_its_fills(
    case: Case, fake: Fake, venue: Venue
) -> None:
    await venue.adapter.submit(order())
    fake.fill("o1", "0.1", "59000.50", "0")
    fake.venue_cancel("o1", case.ended_status)
    await venue.adapter.poll()
    assert [r.kind for r in venue.reports] == ["fill", case.ended_kind]
    assert venue.reports[1].reason == f"{case.ended_kind} at the venue: 0.4 unfilled"


async def test_5xx_and_a_dropped_connection_are_retried(fake: Fake, venue: Venue) -> None:
    fake.fail_next(503, DROP, 502)
    reports = await venue.adapter.submit(order())
    assert [r.kind for r in reports] == ["accepted"]
    assert len(posted(fake)) == 4  # three failed tries, then the answer
    assert len(fake.orders) == 1


@pytest.mark.parametrize("vcid", ["o1", CHILD])
async def test_a_retry_of_a_submit_that_reached_the_venue_adopts_it(
    case: Case, fake: Fake, venue: Venue, vcid: str
) -> None:
    # As if the first try had got there: by the id the venue knows it by.
    there = fake.add_open_order(at_venue(case, vcid), "BUY", "0.5", "59000.50")
    reports = await venue.adapter.submit(order(vcid))
    assert [r.kind for r in reports] == ["accepted"]
    assert reports[0].venue_order_id == str(there.order_id)
    assert len(fake.orders) == 1


@pytest.mark.parametrize("vcid", ["o1", LONG])
async def test_a_submit_with_no_answer_is_confirmed_by_polling(case: Case, fake: Fake, vcid: str) -> None:
    v = Venue(fake, case.exchange, retries=1)
    await v.adapter.start()
    try:
        fake.fail_next(503, 503)
        assert await v.adapter.submit(order(vcid)) == []  # unknown: nothing invented
        await v.adapter.poll()
        assert [r.kind for r in v.reports] == ["rejected"]  # the venue never had it
        fake.fail_next(503, 503)
        assert await v.adapter.submit(order(vcid)) == []
        fake.add_open_order(at_venue(case, vcid), "BUY", "0.5", "59000.50")  # this time it got there
        await v.adapter.poll()
        assert [(r.kind, r.venue_client_id) for r in v.reports[1:]] == [("accepted", vcid)]
    finally:
        await v.adapter.close()


# Client ids: ours as each venue accepts them -----------------------------------------------------------


def test_a_client_id_is_kept_when_the_venue_accepts_it_and_else_mapped_within_its_rule() -> None:
    okx, binance = CLIENT_ID_RULES["okx"], CLIENT_ID_RULES["binance"]
    assert map_client_id("o1", okx) == "o1"
    assert map_client_id(CHILD, binance) == CHILD  # '.', ':' and '-' are fine at Binance
    similar = ["a.1", "a-1", "a:1", "a/1", LONG, LONG + "0", "x" * 40 + "1", "x" * 40 + "2"]
    for rule in (okx, binance):
        mapped = [map_client_id(vcid, rule) for vcid in similar]
        assert all(rule.accepts(m) and len(m) <= rule.max_len for m in mapped), mapped
        assert len(set(mapped)) == len(similar)  # no two of ours collide
        assert mapped == [map_client_id(vcid, rule) for vcid in similar]  # deterministic
    assert map_client_id(CHILD, okx).startswith("twapparent421")  # still readable
    assert map_client_id("a1", okx) == "a1" != map_client_id("a.1", okx)


async def test_ids_a_venue_refuses_are_mapped_for_submit_fill_and_cancel(
    case: Case, fake: Fake, venue: Venue
) -> None:
    for vcid in (CHILD, LONG):
        reports = await venue.adapter.submit(order(vcid))
        assert [(r.kind, r.venue_client_id) for r in reports] == [("accepted", vcid)]
    sent = [p.get("clOrdId") or p.get("newClientOrderId") for p in posted(fake)]
    assert sent == [at_venue(case, CHILD), at_venue(case, LONG)]
    assert LONG not in sent
    trade = fake.fill(at_venue(case, CHILD), "0.1", "59000.50", "0")
    await venue.adapter.poll()
    assert [(r.venue_client_id, r.exec_id) for r in venue.reports] == [
        (CHILD, f"{case.exchange}:{trade.trade_id}")
    ]
    # A fresh adapter cancels by client id (it has no venue order id for it).
    other = await started(case, fake)
    try:
        canceled = await other.adapter.cancel(order(LONG, action="cancel"))
        assert [(r.kind, r.venue_client_id) for r in canceled] == [("canceled", LONG)]
        assert fake.order_by_client_id(at_venue(case, LONG)).status.lower() == "canceled"
    finally:
        await other.adapter.close()


async def test_exeq_may_forget_an_ended_order_and_never_a_working_one(
    case: Case, fake: Fake, venue: Venue
) -> None:
    await venue.adapter.submit(order(CHILD, quantity=D("0.1")))
    await venue.adapter.submit(order("working"))
    fake.fill(at_venue(case, CHILD), "0.1", "59000.50", "0")
    await venue.adapter.poll()
    assert [r.kind for r in venue.reports] == ["fill"]
    venue.adapter.forget(CHILD)
    venue.adapter.forget("working")  # the venue still works it: kept, and polled on
    assert set(venue.adapter._orders) == {"working"}  # type: ignore[attr-defined]
    assert venue.adapter._our_id(at_venue(case, CHILD)) == at_venue(case, CHILD)  # type: ignore[attr-defined]
    assert [o.venue_client_id for o in await venue.adapter.open_orders()] == ["working"]
    fake.fill(at_venue(case, "working"), "0.5", "59000.50", "0")
    await venue.adapter.poll()
    assert [r.kind for r in venue.reports] == ["fill", "fill"]


async def test_after_a_restart_reconcile_recognises_orders_by_their_mapped_ids(
    case: Case, fake: Fake
) -> None:
    first = await started(case, fake)
    for vcid in (CHILD, LONG):
        await first.adapter.submit(order(vcid))
    await first.adapter.close()
    missed = fake.fill(at_venue(case, CHILD), "0.2", "59000.50", "0")
    fake.venue_cancel(at_venue(case, LONG), case.ended_status)  # found by client id: not open
    fake.add_open_order("stranger", "SELL", "0.1", "61000")
    v = await started(case, fake)
    try:
        found = await v.adapter.reconcile([(order(CHILD), D(0)), (order(LONG), D(0))])
        assert [(m.kind, m.venue_client_id) for m in found.mismatches] == [("unknown_at_venue", "stranger")]
        assert [(r.venue_client_id, r.kind, r.exec_id) for r in found.reports[1:2]] == [
            (CHILD, "fill", f"{case.exchange}:{missed.trade_id}")
        ]
        assert [(r.venue_client_id, r.kind) for r in found.reports] == [
            (CHILD, "accepted"),
            (CHILD, "fill"),
            (LONG, "accepted"),
            (LONG, case.ended_kind),
        ]
        sent = len(posted(fake))
        assert [r.kind for r in await v.adapter.submit(order(CHILD))] == ["accepted"]  # adopted
        assert await v.adapter.submit(order(LONG)) == []  # ended there: not sent again
        assert len(posted(fake)) == sent
    finally:
        await v.adapter.close()


# Trades, page by page --------------------------------------------------------------------------------

MANY_TRADES = {"okx": 201, "binance": 1001}  # more than two pages of OKX's 100, one of Binance's 1000


async def test_an_order_with_more_trades_than_a_page_is_reconciled_and_polled_whole(
    case: Case, fake: Fake
) -> None:
    first = await started(case, fake)
    await first.adapter.submit(order("big"))
    await first.adapter.close()
    n = MANY_TRADES[case.exchange]
    trades = [fake.fill("big", "0.0001", "59000.50", "0") for _ in range(n)]
    v = await started(case, fake)
    try:
        found = await v.adapter.reconcile([(order("big"), D("0.0003"))])  # exeq had the first 3
        assert found.mismatches == []
        fills = [r for r in found.reports if r.kind == "fill"]
        assert [r.exec_id for r in fills] == [f"{case.exchange}:{t.trade_id}" for t in trades[3:]]
        assert sum(r.last_quantity for r in fills) == D("0.0001") * (n - 3)
        cursor = "after" if case.exchange == "okx" else "fromId"
        assert sum(cursor in p for p in trade_requests(fake)) >= 2
        # Adopted on restore; a poll then reads only the newest page, and reports the new trade once.
        assert [r.kind for r in await v.adapter.submit(order("big"))] == ["accepted"]
        asked = len(trade_requests(fake))
        last = fake.fill("big", "0.0001", "59000.50", "0")
        await v.adapter.poll()
        assert [r.exec_id for r in v.reports] == [f"{case.exchange}:{last.trade_id}"]
        assert len(trade_requests(fake)) == asked + 1
    finally:
        await v.adapter.close()


async def test_balances_are_decimals(venue: Venue) -> None:
    assert await venue.adapter.balances() == {"BTC": D("1"), "USDT": D("100000")}


# Reconcile: what exeq believes against what the venue has ----------------------------------------------


async def started(case: Case, fake: Fake) -> Venue:
    v = Venue(fake, case.exchange)
    await v.adapter.start()
    return v


async def test_reconcile_reports_unknown_missing_and_quantity_mismatches(case: Case, fake: Fake) -> None:
    fake.add_open_order("stranger", "SELL", "0.1", "61000")
    fake.add_open_order("kept", "BUY", "0.5", "59000.50")
    old = fake.fill("kept", "0.1", "59000.50", "0")  # filled before the restart, and published
    fake.add_open_order("short", "BUY", "0.5", "59000.50")
    v = await started(case, fake)
    try:
        believed = [(order("kept"), D("0.1")), (order("short"), D("0.2")), (order("gone"), D("0"))]
        found = await v.adapter.reconcile(believed)
        assert sorted((m.kind, m.venue_client_id) for m in found.mismatches) == [
            ("missing_at_venue", "gone"),
            ("quantity", "short"),  # we have fills the venue does not
            ("unknown_at_venue", "stranger"),
        ]
        assert found.reports == []  # nothing happened that exeq has not seen, and nothing is guessed
        before = len(posted(fake))
        # exeq's restore gives the adapter its open orders back: those at the venue are adopted, not
        # sent again, and their old trades are not reported again; the missing one is not sent.
        rest = await v.adapter.submit(order("kept", quantity=D("0.4")))
        assert [r.kind for r in rest] == ["accepted"]
        assert await v.adapter.submit(order("gone")) == []
        assert len(posted(fake)) == before
        new = fake.fill("kept", "0.4", "59000.50", "0")
        await v.adapter.poll()
        assert [r.exec_id for r in v.reports] == [f"{case.exchange}:{new.trade_id}"]
        assert f"{case.exchange}:{old.trade_id}" not in {r.exec_id for r in v.reports}
    finally:
        await v.adapter.close()


async def trade_while_down(case: Case, fake: Fake) -> dict[str, Any]:
    """A run that submits a, b and c and sees a's first fill, then stops; meanwhile a fills partly, b
    fully, c partly and the venue ends c."""
    first = await started(case, fake)
    for vcid in ("a", "b", "c"):
        await first.adapter.submit(order(vcid))
    fake.fill("a", "0.1", "59000.50", "0.01")
    await first.adapter.poll()
    assert [r.last_quantity for r in first.reports] == [D("0.1")]
    await first.adapter.close()
    trades = {
        "a": [fake.fill("a", "0.15", "59000.50", "0.02")],
        "b": [fake.fill("b", "0.2", "59000.40", "0.03"), fake.fill("b", "0.3", "59000.30", "0.04", "BTC")],
        "c": [fake.fill("c", "0.1", "59000.20", "0.05", maker=False)],
    }
    fake.venue_cancel("c", case.ended_status)
    return trades


async def test_fills_and_ends_while_exeq_was_down_are_reported_once(case: Case, fake: Fake) -> None:
    missed = await trade_while_down(case, fake)
    v = await started(case, fake)
    try:
        believed = [(order("a"), D("0.1")), (order("b"), D(0)), (order("c"), D(0))]
        found = await v.adapter.reconcile(believed)
        assert found.mismatches == []
        assert [(r.venue_client_id, r.kind, r.last_quantity) for r in found.reports] == [
            ("a", "accepted", D(0)),  # exeq drops it when it had it
            ("a", "fill", D("0.15")),
            ("b", "accepted", D(0)),
            ("b", "fill", D("0.2")),
            ("b", "fill", D("0.3")),
            ("c", "accepted", D(0)),
            ("c", "fill", D("0.1")),
            ("c", case.ended_kind, D(0)),
        ]
        fills = [r for r in found.reports if r.kind == "fill"]
        trade_ids = [t.trade_id for vcid in "abc" for t in missed[vcid]]
        assert [r.exec_id for r in fills] == [f"{case.exchange}:{t}" for t in trade_ids]
        assert [(r.last_price, r.fee, r.liquidity) for r in fills[2:]] == [
            (D("59000.30"), D("0.04") * D("59000.30"), "maker"),  # its fee in BTC
            (D("59000.20"), D("0.05"), "taker"),
        ]
        assert found.reports[-1].reason == f"{case.ended_kind} at the venue: 0.4 unfilled"
        # Once exeq has published them, asking again finds nothing new.
        again = await v.adapter.reconcile([(order("a"), D("0.25"))])
        assert (again.reports, again.mismatches) == ([], [])
        # The restore adopts a's rest: its next fill is reported once, those before not again.
        assert [r.kind for r in await v.adapter.submit(order("a", quantity=D("0.25")))] == ["accepted"]
        last = fake.fill("a", "0.25", "59000.50", "0")
        await v.adapter.poll()
        await v.adapter.poll()
        assert [r.exec_id for r in v.reports] == [f"{case.exchange}:{last.trade_id}"]
    finally:
        await v.adapter.close()


async def test_fills_that_do_not_line_up_with_the_venues_trades_are_a_mismatch_not_a_guess(
    case: Case, fake: Fake
) -> None:
    await trade_while_down(case, fake)
    v = await started(case, fake)
    try:
        # a's trades are 0.1 then 0.15: exeq knowing 0.2 filled matches no run of them.
        found = await v.adapter.reconcile([(order("a"), D("0.2")), (order("b"), D("0.5"))])
        assert [(m.kind, m.venue_client_id) for m in found.mismatches] == [("quantity", "a")]
        assert found.mismatches[0].detail.startswith("our fills (0.2 of venue order")
        assert found.reports == []  # b: exeq had all its fills
        assert await v.adapter.submit(order("b")) == []  # ended there: not sent again
    finally:
        await v.adapter.close()


@binance_only
async def test_a_fill_after_a_replace_while_down_is_counted_from_the_new_order(
    fake: FakeBinanceRest,
) -> None:
    case = CASES["binance"]
    first = await started(case, fake)
    await first.adapter.submit(order("r"))
    fake.fill("r", "0.2", "59000.50", "0")
    await first.adapter.poll()
    await first.adapter.replace(order("r", action="replace", quantity=D("0.6"), price=D("59001")))
    await first.adapter.close()
    missed = fake.fill("r", "0.1", "59001", "0")  # on the new venue order, of 0.4
    v = await started(case, fake)
    try:
        found = await v.adapter.reconcile([(order("r", quantity=D("0.6"), price=D("59001")), D("0.2"))])
        assert found.mismatches == []
        assert [(r.kind, r.exec_id) for r in found.reports] == [
            ("accepted", f"binance:r:accepted:{fake.order_by_client_id('r').order_id}"),
            ("fill", f"binance:{missed.trade_id}"),
        ]
    finally:
        await v.adapter.close()


# Credentials, settings, wiring ---------------------------------------------------------------------


def test_credentials_from_the_environment_and_never_in_a_repr(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("TRADER_BINANCE_MAIN_API_KEY", KEY)
    monkeypatch.setenv("TRADER_BINANCE_MAIN_API_SECRET", SECRET)
    monkeypatch.setenv("TRADER_BINANCE_MAIN_API_PASSPHRASE", PASSPHRASE)
    settings = CcxtVenueSettings(exchange="binance")
    credentials = load_credentials("binance-main", settings)
    assert credentials is not None
    assert credentials.api_key.get_secret_value() == KEY
    assert credentials.passphrase is not None
    assert credentials.passphrase.get_secret_value() == PASSPHRASE
    adapter = CcxtVenue(settings, name="binance-main")
    assert (adapter.exchange.apiKey, adapter.exchange.password) == (KEY, PASSPHRASE)
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
    for secret in (KEY, SECRET, PASSPHRASE):
        assert secret not in shown


def test_credentials_from_named_variables_or_a_secret_file(
    monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    monkeypatch.setenv("MY_KEY", "k1")
    monkeypatch.setenv("MY_SECRET", "s1")
    named = load_credentials("x", CcxtVenueSettings(api_key_env="MY_KEY", api_secret_env="MY_SECRET"))
    assert named is not None
    assert named.api_secret.get_secret_value() == "s1"
    path = tmp_path / "binance.json"
    path.write_text(json.dumps({"api_key": "k2", "api_secret": "s2", "api_passphrase": "p2"}))
    filed = load_credentials("x", CcxtVenueSettings(secret_file=path))
    assert filed is not None
    assert filed.api_key.get_secret_value() == "k2"
    assert filed.passphrase is not None
    assert filed.passphrase.get_secret_value() == "p2"
    assert load_credentials("nobody", CcxtVenueSettings()) is None


def test_okx_gets_its_passphrase_from_the_environment_and_never_shows_it(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    for name, value in (("KEY", KEY), ("SECRET", SECRET), ("PASSPHRASE", PASSPHRASE)):
        monkeypatch.setenv(f"TRADER_OKX_API_{name}", value)
    adapter = CcxtVenue(CcxtVenueSettings(exchange="okx"), name="okx")
    assert adapter.exchange.password == PASSPHRASE
    assert adapter.exchange.headers["x-simulated-trading"] == "1"  # OKX's demo trading
    shown = " ".join([repr(adapter), repr(adapter._credentials), repr(vars(adapter))])
    assert PASSPHRASE not in shown
    assert SECRET not in shown


async def test_nothing_logged_shows_the_secret(
    case: Case, fake: Fake, capsys: pytest.CaptureFixture[str]
) -> None:
    v = Venue(fake, case.exchange)
    await v.adapter.start()
    fake.fail_next(503)
    await v.adapter.submit(order())
    await v.adapter.submit(order("big", quantity=D("100")))
    await v.adapter.close()
    out = capsys.readouterr()
    assert "venue.retry" in out.out + out.err  # something was logged
    for secret in (KEY, SECRET, PASSPHRASE):
        assert secret not in out.out + out.err


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
    adapter = exeq._adapter("live", "ccxt", asyncio.Queue().put_nowait)
    assert isinstance(adapter, CcxtVenue)
    assert (adapter.name, adapter.exchange_id, adapter.settings.testnet) == ("live", "binance", False)
    assert adapter.settings.base_url == "http://127.0.0.1:9"
    await adapter.close()


def test_every_adapter_setting_is_a_venue_config_field_with_the_same_default() -> None:
    # exeq copies VenueConfig's fields named as CcxtVenueSettings's: one missing there is silently lost.
    for name, adapter_field in CcxtVenueSettings.model_fields.items():
        assert name in VenueConfig.model_fields, name
        assert VenueConfig.model_fields[name].default == adapter_field.default, name


async def test_exeq_venue_config_reaches_the_adapter_and_the_wire_passphrase_included(
    monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    for name, value in (("KEY", KEY), ("SECRET", SECRET), ("PASS", PASSPHRASE)):
        monkeypatch.setenv(f"MY_OKX_{name}", value)
    fake = FakeOkxRest(api_key=KEY, secret=SECRET, passphrase=PASSPHRASE)  # checks all three
    await fake.start()
    config = VenueConfig(
        kind="ccxt",
        exchange="okx",
        api_key_env="MY_OKX_KEY",
        api_secret_env="MY_OKX_SECRET",
        api_passphrase_env="MY_OKX_PASS",
        base_url=f"http://127.0.0.1:{fake.port}",
        poll_interval_s=3600,
        retries=1,
        backoff_s=0.01,
        timeout_ms=2500,
        rate_limit=False,
    )
    settings = Settings(exeq=ExeqSettings(venues={"okx-main": config}))
    exeq = Exeq(settings)
    adapter = exeq._adapter("okx-main", "ccxt", asyncio.Queue().put_nowait)
    try:
        assert isinstance(adapter, CcxtVenue)
        assert adapter.settings.model_dump() == config.model_dump(include=set(CcxtVenueSettings.model_fields))
        assert (adapter.exchange.timeout, adapter.exchange.enableRateLimit) == (2500, False)
        assert adapter.exchange.password == PASSPHRASE
        await adapter.start()  # the fake refuses a wrong passphrase (50105)
        fake.fail_next(503, 503)  # retries=1: two failures are the end of it
        with pytest.raises(ccxt.NetworkError):
            await adapter.balances()
        shown = " ".join([repr(settings), settings.model_dump_json(), repr(adapter), repr(vars(adapter))])
        logged = capsys.readouterr()
        for secret in (KEY, SECRET, PASSPHRASE):
            assert secret not in shown + logged.out + logged.err
    finally:
        await adapter.close()
        await fake.stop()


class _Recorder:
    """Runtime's metrics and log, as _reconcile uses them."""

    name = "exeq"

    def __init__(self) -> None:
        self.registry = CollectorRegistry()
        self.errors: list[str] = []
        self.warnings: list[tuple[str, dict[str, Any]]] = []
        self.infos: list[tuple[str, dict[str, Any]]] = []

    def count_error(self, kind: str, n: int = 1) -> None:
        self.errors.append(kind)

    def warning(self, event: str, **fields: Any) -> None:
        self.warnings.append((event, fields))

    def info(self, event: str, **fields: Any) -> None:
        self.infos.append((event, fields))

    def exception(self, event: str, **fields: Any) -> None:
        raise AssertionError(f"{event}: {fields}")


def runtime(recorder: _Recorder) -> Any:
    return SimpleNamespace(metrics=recorder, log=recorder, name=recorder.name)


class MemoryBook:
    """The EXEC stream and the baselines, in memory: what exeq publishes is numbered as the stream would."""

    def __init__(self) -> None:
        self.published: list[ExecutionReport] = []  # seq = index + 1
        self.baselines: dict[str, BalanceBaseline] = {}

    async def publish(self, items: list[Outgoing]) -> None:
        self.published += [msgspec.json.decode(o.payload, type=ExecutionReport) for o in items]

    async def last_seq(self) -> int:
        return len(self.published)

    async def baseline(self, venue: str) -> BalanceBaseline | None:
        return self.baselines.get(venue)

    async def fills_after(self, venue: str, seq: int, upto: int) -> list[ExecutionReport]:
        return [r for r in self.published[seq:upto] if r.venue == venue and r.kind == "fill"]

    async def record(self, baseline: BalanceBaseline) -> None:
        self.baselines[baseline.venue] = baseline


def fields_of(logged: dict[str, Any]) -> dict[str, str]:
    """A logged balance mismatch as /health shows it."""
    return {k: logged[k] for k in ("venue", "asset", "expected", "venue_balance", "difference")}


def exeq_on(adapters: dict[str, Any], book: MemoryBook) -> tuple[Exeq, ExecutionDesk]:
    """exeq (as reconciling at its start) and its desk."""
    exeq = Exeq(Settings())
    exeq.balance_book = book
    return exeq, ExecutionDesk(adapters, publish=book.publish, clock=lambda: 0)


async def test_exeq_logs_and_counts_every_mismatch_and_changes_nothing(case: Case, fake: Fake) -> None:
    fake.add_open_order("stranger", "SELL", "0.1", "61000")
    v = await started(case, fake)
    try:
        exeq, desk = exeq_on({case.exchange: v.adapter}, MemoryBook())
        desk.replay(f"exec.order.{case.exchange}", encode(order("gone", venue=case.exchange)))
        desk.replay(f"exec.report.{case.exchange}", encode(accepted("gone", case.exchange)))
        desk._track(order("parent", venue=case.exchange, algo="twap"))  # never reaches the venue
        recorder = _Recorder()
        await exeq._reconcile(runtime(recorder), desk)
        assert recorder.errors == ["reconcile.mismatch", "reconcile.mismatch"]
        assert sorted(f["venue_client_id"] for _, f in recorder.warnings) == ["gone", "stranger"]
        assert {e for e, _ in recorder.warnings} == {"exeq.reconcile_mismatch"}
        assert not desk.orders[(case.exchange, "gone")].ended  # believed open still: not overwritten
    finally:
        await v.adapter.close()


async def test_an_order_that_came_while_exeq_was_down_and_never_reached_the_venue_is_rejected(
    case: Case, fake: Fake
) -> None:
    """In EXEC with no report (exeq was down, or still starting, when it came) and unknown to the venue
    by its client id: it never got there. Rejected at the start, as polling rejects a submit the venue
    does not have, so the oms and its strategy hear of it; never sent late, nor left NEW for ever."""
    v = await started(case, fake)
    try:
        book = MemoryBook()
        exeq, desk = exeq_on({case.exchange: v.adapter}, book)
        desk.replay(f"exec.order.{case.exchange}", encode(order("early", venue=case.exchange)))
        recorder = _Recorder()
        await exeq._reconcile(runtime(recorder), desk)
        assert [(r.venue_client_id, r.kind) for r in book.published] == [("early", "rejected")]
        assert "never reached the venue" in (book.published[0].reason or "")
        assert recorder.errors == []
        assert desk.orders[(case.exchange, "early")].ended
        assert (await desk.restore())["restored"] == 0
        assert posted(fake) == []
    finally:
        await v.adapter.close()


async def test_exeq_publishes_what_the_venue_did_while_it_was_down_once(case: Case, fake: Fake) -> None:
    missed = await trade_while_down(case, fake)
    v = await started(case, fake)
    published: list[Outgoing] = []

    async def publish(items: list[Outgoing]) -> None:
        published.extend(items)

    try:
        exeq = Exeq(Settings())
        desk = ExecutionDesk({case.exchange: v.adapter}, publish=publish, clock=lambda: 0)
        exeq.balance_book = MemoryBook()
        stream = _stream_of_the_first_run(case.exchange)
        for subject, message in stream:
            desk.replay(subject, encode(message))
        recorder = _Recorder()
        await exeq._reconcile(runtime(recorder), desk)
        at_start = dict(fake.balances)
        reports = [msgspec.json.decode(o.payload, type=ExecutionReport) for o in published]
        # Numbered on from the replay, the repeated "accepted" of a dropped; published as any report.
        assert [(r.exec_id, r.kind, r.last_quantity) for r in reports] == [
            (f"{case.exchange}:a:3", "fill", D("0.15")),
            (f"{case.exchange}:b:2", "fill", D("0.2")),
            (f"{case.exchange}:b:3", "fill", D("0.3")),
            (f"{case.exchange}:c:2", "fill", D("0.1")),
            (f"{case.exchange}:c:3", case.ended_kind, D(0)),
        ]
        assert [o.msg_id for o in published] == [r.exec_id for r in reports]
        assert {o.subject for o in published} == {f"exec.report.{case.exchange}"}
        assert recorder.errors == []
        assert [r.last_price for r in reports[:1]] == [missed["a"][0].price]
        # What exeq believes now: a open with 0.25 filled, b and c ended.
        assert [(o.venue_client_id, f) for o, f in desk.believed_open(case.exchange)] == [("a", D("0.25"))]
        # The restore adopts a: nothing published, nothing sent; a's next fill is published once.
        published.clear()
        sent = len(fake.new_orders())
        assert (await desk.restore())["restored"] == 1
        assert (published, len(fake.new_orders())) == ([], sent)
        last = fake.fill("a", "0.25", "59000.50", "0")
        await v.adapter.poll()
        await v.adapter.poll()
        for report in v.reports:
            await desk.on_venue_report(case.exchange, report)
        after = [msgspec.json.decode(o.payload, type=ExecutionReport) for o in published]
        assert [(r.exec_id, r.last_quantity) for r in after] == [(f"{case.exchange}:a:4", D("0.25"))]
        assert v.reports[0].exec_id == f"{case.exchange}:{last.trade_id}"
        # Balances (moved by the fills): logged exactly, and on the gauge.
        (balances,) = [f["balances"] for e, f in recorder.infos if e == "exeq.venue_balances"]
        assert {asset: D(amount) for asset, amount in balances.items()} == at_start
        assert at_start != {"BTC": 1, "USDT": 100000}
        labels = {"service": "exeq", "venue": case.exchange, "asset": "USDT"}
        usdt = recorder.registry.get_sample_value("trader_venue_balance", labels)
        assert usdt == float(at_start["USDT"])
    finally:
        await v.adapter.close()


def accepted(vcid: str, venue: str) -> ExecutionReport:
    """The report of ``order(vcid)`` accepted at ``venue``, as exeq publishes it first."""
    return ExecutionReport(
        exec_id=f"{venue}:{vcid}:1",
        kind="accepted",
        client_order_id=vcid,
        venue_client_id=vcid,
        strategy="s1",
        account="acc",
        venue=venue,
        symbol="BTCUSDT",
        side="buy",
    )


def _stream_of_the_first_run(venue: str) -> list[tuple[str, VenueOrder | ExecutionReport]]:
    """EXEC as exeq left it (trade_while_down): a, b and c accepted, a's first fill."""
    stream: list[tuple[str, VenueOrder | ExecutionReport]] = []
    for vcid in ("a", "b", "c"):
        placed = order(vcid, venue=venue)
        stream.append((f"exec.order.{venue}", placed))
        accepted = ExecutionReport(
            exec_id=f"{venue}:{vcid}:1",
            kind="accepted",
            client_order_id=vcid,
            venue_client_id=vcid,
            strategy="s1",
            account="acc",
            venue=venue,
            symbol="BTCUSDT",
            side="buy",
        )
        stream.append((f"exec.report.{venue}", accepted))
    first_fill = msgspec.structs.replace(
        accepted,
        exec_id=f"{venue}:a:2",
        kind="fill",
        client_order_id="a",
        venue_client_id="a",
        last_quantity=D("0.1"),
        last_price=D("59000.50"),
    )
    stream.append((f"exec.report.{venue}", first_fill))
    return stream


async def test_exeq_reconciles_balances_with_the_fills_since_the_last_start(case: Case, fake: Fake) -> None:
    book = MemoryBook()
    v = await started(case, fake)
    try:
        exeq, desk = exeq_on({case.exchange: v.adapter}, book)
        first = _Recorder()
        await exeq._reconcile(runtime(first), desk)
        assert [e for e, _ in first.infos if e.startswith("exeq.balances")] == [
            "exeq.balances_first_baseline"
        ]
        assert book.baselines[case.exchange].balances == {"BTC": D(1), "USDT": D(100000)}
        assert (first.errors, book.baselines[case.exchange].seq) == ([], 0)

        # A run: a buy filled in two (the first one's fee in BTC, as Binance charges a buy, the second's
        # in USDT) and a sell, published as exeq publishes them.
        await desk.on_order(order("a", venue=case.exchange))
        await desk.on_order(order("s", venue=case.exchange, side="sell", quantity=D("0.1"), price=D("61000")))
        fake.fill("a", "0.2", "59000.50", "0.0002", asset="BTC")
        fake.fill("a", "0.3", "59000.40", "0.0177001")
        fake.fill("s", "0.1", "61000", "0.0061")
        await v.adapter.poll()
        for report in v.reports:
            await desk.on_venue_report(case.exchange, report)
        fills = [r for r in book.published if r.kind == "fill"]
        assert len(fills) == 3
        # The venue's own charge rides along; the fee stays in the quote currency, for PnL.
        assert (fills[0].commission, fills[0].commission_asset) == (D("0.0002"), "BTC")
        assert fills[0].fee == D("0.0002") * D("59000.50")

        second = _Recorder()
        await exeq._reconcile(runtime(second), desk)
        assert (second.errors, second.warnings) == ([], [])
        (done,) = [f for e, f in second.infos if e == "exeq.balances_reconciled"]
        assert (done["since_seq"], done["fills"]) == (0, 3)
        assert exeq.health_details()["balance_mismatches"] == []
        assert book.baselines[case.exchange].seq == len(book.published)

        # Behind exeq's back: a deposit. Reported with its exact figures, and not corrected.
        fake.deposit("BTC", "0.5")
        third = _Recorder()
        await exeq._reconcile(runtime(third), desk)
        assert third.errors == ["reconcile.mismatch"]
        ((event, fields),) = third.warnings
        venue_btc = fake.balances["BTC"]
        assert event == "exeq.balance_mismatch"
        assert (fields["venue"], fields["asset"]) == (case.exchange, "BTC")
        figures = {k: D(fields[k]) for k in ("expected", "venue_balance", "difference")}
        expected = venue_btc - D("0.5")
        assert figures == {"expected": expected, "venue_balance": venue_btc, "difference": D("0.5")}
        assert exeq.health_details()["balance_mismatches"] == [fields_of(fields)]

        # The venue's balances are the new baseline: the next start finds nothing more.
        fourth = _Recorder()
        await exeq._reconcile(runtime(fourth), desk)
        assert (fourth.errors, exeq.health_details()["balance_mismatches"]) == ([], [])
    finally:
        await v.adapter.close()


async def test_exeq_does_not_reconcile_a_paper_venues_balances() -> None:
    book = MemoryBook()
    exeq, desk = exeq_on({"paper": PaperVenue(PaperVenueSettings(), name="paper")}, book)
    recorder = _Recorder()
    await exeq._reconcile(runtime(recorder), desk)
    assert ("exeq.balances_not_reconciled", {"venue": "paper", "kind": "paper"}) in recorder.infos
    assert (book.baselines, recorder.errors) == ({}, [])
