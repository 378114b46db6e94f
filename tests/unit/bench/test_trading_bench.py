"""The pure parts of `trader bench trading`: tick prices, the order-to-tick mapping, the figures."""

from __future__ import annotations

from decimal import Decimal

from trader.bench.echo_strategy import EchoStrategy
from trader.bench.trading import (
    KIND,
    SYMBOL,
    Recorder,
    TickIndex,
    latency_figures,
    reason_kind,
    tick_prices,
)
from trader.config import StrategyConfig
from trader.messages import MarketTick, Order, encode
from trader.strategies import build_runner


def _state(coid: str, side: str, price: Decimal, status: str, reason: str | None = None) -> bytes:
    order = Order(
        client_order_id=coid,
        strategy="bench-echo",
        account="paper",
        symbol=SYMBOL,
        side=side,  # type: ignore[arg-type]
        type="limit",
        quantity=Decimal("0.001"),
        status=status,  # type: ignore[arg-type]
        price=price,
        tif="IOC",
        reason=reason,
    )
    return encode(order)


def test_every_bid_and_ask_of_a_run_is_unique_and_maps_back_to_its_tick() -> None:
    index = TickIndex()
    base = Decimal(1000)
    for k in range(10_000):
        _, bid, ask = tick_prices(base, k)
        index.add(k, bid, ask)
    _, bid, ask = tick_prices(base, 4321)
    assert index.lookup("buy", ask) == 4321
    assert index.lookup("sell", bid) == 4321
    assert index.lookup("buy", bid) is None  # a buy is limited at the ask
    assert index.lookup("buy", Decimal("1000.010000")) == 0  # trailing zeros change nothing
    last, _, _ = tick_prices(base, 200_000)
    assert (last - base) / base * 100 < Decimal("0.1")  # far inside risk's 5% price band


def test_the_first_state_from_the_venue_is_the_answer() -> None:
    rec = Recorder()
    _, bid, ask = tick_prices(Decimal(1000), 0)
    rec.index.add(0, bid, ask)
    rec.phase_first, rec.phase_size = 0, 1
    rec.on_state(_state("a-1", "buy", ask, "NEW"), at=1.0)
    assert rec.answers == {}
    rec.on_state(_state("a-1", "buy", ask, "ACCEPTED"), at=2.0)
    rec.on_state(_state("a-1", "buy", ask, "FILLED"), at=3.0)
    assert rec.answers[0].at == 2.0
    assert rec.answers[0].status == "ACCEPTED"
    assert rec.phase_done.is_set()
    rec.on_state(_state("b-1", "sell", Decimal(5), "REJECTED", "price_band: far"), at=4.0)
    assert rec.unmapped == 1


def test_figures() -> None:
    assert latency_figures([0.001, 0.002, 0.010]) == {"p50_ms": 2.0, "p99_ms": 10.0, "max_ms": 10.0}
    assert latency_figures([])["p99_ms"] is None
    assert reason_kind("max_orders_per_second: 11 > 10 within 1s") == "max_orders_per_second"


def test_the_echo_strategy_buys_at_the_ask_and_sells_at_the_bid_in_turn() -> None:
    config = StrategyConfig(
        name="bench-echo", kind=KIND, symbols=[SYMBOL], params={"quantity": "0.002"}, data_venue="bench"
    )
    runner = build_runner(config, clock=lambda: 1_700_000_000_000)
    assert isinstance(runner.strategy, EchoStrategy)
    runner.start()
    sent = []
    for k in range(3):
        price, bid, ask = tick_prices(Decimal(1000), k)
        tick = MarketTick(
            timestamp=1_700_000_000_000,
            exchange="bench",
            venue="bench",
            symbol=SYMBOL,
            price=price,
            size=Decimal(1),
            volume=Decimal(1),
            bid=bid,
            ask=ask,
        )
        sent += [i.message for i in runner.on_tick(tick).instructions]
    assert [(r.side, r.price, r.tif, r.type, r.quantity) for r in sent] == [
        ("buy", tick_prices(Decimal(1000), 0)[2], "IOC", "limit", Decimal("0.002")),
        ("sell", tick_prices(Decimal(1000), 1)[1], "IOC", "limit", Decimal("0.002")),
        ("buy", tick_prices(Decimal(1000), 2)[2], "IOC", "limit", Decimal("0.002")),
    ]


def test_a_hop_seen_before_the_request_still_maps_to_its_tick() -> None:
    rec = Recorder()
    _, bid, ask = tick_prices(Decimal(1000), 7)
    rec.index.add(7, bid, ask)
    rec.on_hop("risk", b'{"request": {"client_order_id": "a-1"}, "approved": true}', at=2.0)
    rec.on_hop(
        "submit", b'{"client_order_id": "a-1", "side": "sell", "price": ' + str(bid).encode() + b"}", at=1.0
    )
    assert rec.stage_times("risk") == {7: 2.0}
    assert rec.stage_times("submit") == {7: 1.0}


def test_the_venue_acknowledgement_is_the_first_report_before_the_orders_state() -> None:
    rec = Recorder()
    _, bid, ask = tick_prices(Decimal(1000), 3)
    rec.index.add(3, bid, ask)
    rec.phase_first, rec.phase_size = 3, 1
    report = b'{"client_order_id": "a-1", "strategy": "bench-echo", "kind": "accepted"}'
    rec.on_report(report, at=1.5)
    rec.on_report(report.replace(b"accepted", b"fill"), at=1.6)  # the fill after it changes nothing
    rec.on_report(b'{"client_order_id": "x-1", "strategy": "someone-else", "kind": "accepted"}', at=1.7)
    rec.on_state(_state("a-1", "buy", ask, "ACCEPTED"), at=2.0)
    assert (rec.answers[3].venue_ack, rec.answers[3].at) == (1.5, 2.0)
    assert rec.venue_acks == {}  # nothing kept for an answered order, nor for other strategies
    rec.on_report(report.replace(b"accepted", b"fill"), at=2.5)  # after the answer: not a new ack
    assert rec.venue_acks == {}
