"""The spread engine on scripted multi-venue tick sequences: NBBO, pairs, staleness, fees, and every
opportunity event's numbers, each computed here independently with exact fractions."""

from __future__ import annotations

import random
from decimal import Decimal
from fractions import Fraction

import msgspec
import pytest

from trader.analytics.spreads import SpreadConfig, SpreadEngine, SpreadState, bps
from trader.messages import MarketTick, SpreadOpportunity

T0 = 1_764_720_000_000
FEES = {"a": Decimal(5), "b": Decimal(2), "c": Decimal("7.5")}


def tick(venue: str, bid: str, ask: str, at: int, symbol: str = "BTCUSDT") -> MarketTick:
    return MarketTick(
        timestamp=T0 + at,
        exchange=venue,
        venue=venue,
        symbol=symbol,
        price=Decimal(bid),
        size=Decimal(1),
        volume=Decimal(1),
        bid=Decimal(bid),
        ask=Decimal(ask),
    )


def engine(**kw: object) -> SpreadEngine:
    config = {
        "staleness_ms": 1_000,
        "publish_interval_ms": 100,
        "sample_interval_ms": 1_000,
        "fees_bps": FEES,
    }
    return SpreadEngine(SpreadConfig(**{**config, **kw}))  # type: ignore[arg-type]


def exact_net_bps(buy_ask: str, sell_bid: str, buy_fee: Decimal, sell_fee: Decimal) -> Fraction:
    """Buy one unit at buy_ask paying buy_fee bps, sell at sell_bid paying sell_fee bps: bps of buy_ask."""
    ask, bid = Fraction(buy_ask), Fraction(sell_bid)
    net = bid * (1 - Fraction(sell_fee) / 10_000) - ask * (1 + Fraction(buy_fee) / 10_000)
    return net / ask * 10_000


def rounded(value: Fraction) -> Decimal:
    """A fraction rounded half-even to 4 places, as the engine reports basis points."""
    scaled = value * 10_000
    floor = scaled.numerator // scaled.denominator
    rest = scaled - floor
    if rest > Fraction(1, 2) or (rest == Fraction(1, 2) and floor % 2):
        floor += 1
    return Decimal(floor).scaleb(-4)


def test_rounded_is_half_even() -> None:
    assert rounded(Fraction(5, 100_000)) == Decimal("0.0000")
    assert rounded(Fraction(15, 100_000)) == Decimal("0.0002")
    assert rounded(Fraction(-1, 3)) == Decimal("-0.3333")


def test_one_venue_is_no_cross_venue_view() -> None:
    e = engine()
    out = e.on_tick(tick("a", "100", "101", 0), seq=1)
    assert out.snapshot is None
    assert out.events == []
    assert e.snapshot("BTCUSDT") is None


def test_nbbo_and_every_ordered_pair() -> None:
    e = engine()
    e.on_tick(tick("a", "100.00", "100.10", 0), seq=1)
    first = e.on_tick(tick("b", "100.05", "100.20", 10), seq=2)
    out = e.on_tick(tick("c", "99.90", "100.08", 20), seq=3)
    snap = e.snapshot("BTCUSDT", seq=3)
    assert snap is not None
    assert (snap.best_bid, snap.best_bid_venue) == (Decimal("100.05"), "b")
    assert (snap.best_ask, snap.best_ask_venue) == (Decimal("100.08"), "c")
    assert [q.venue for q in snap.quotes] == ["a", "b", "c"]
    assert snap.stale == []
    asks = {"a": "100.10", "b": "100.20", "c": "100.08"}
    bids = {"a": "100.00", "b": "100.05", "c": "99.90"}
    assert {(p.buy_venue, p.sell_venue) for p in snap.pairs} == {
        (x, y) for x in "abc" for y in "abc" if x != y
    }
    for p in snap.pairs:
        assert p.buy_price == Decimal(asks[p.buy_venue])
        assert p.sell_price == Decimal(bids[p.sell_venue])
        gross = (Fraction(bids[p.sell_venue]) - Fraction(asks[p.buy_venue])) / Fraction(asks[p.buy_venue])
        assert p.gross_bps == rounded(gross * 10_000)
        net = exact_net_bps(asks[p.buy_venue], bids[p.sell_venue], FEES[p.buy_venue], FEES[p.sell_venue])
        assert p.net_bps == rounded(net)
        assert Fraction(p.net_per_unit) == net * Fraction(asks[p.buy_venue]) / 10_000
    best = max(
        snap.pairs,
        key=lambda p: exact_net_bps(
            asks[p.buy_venue], bids[p.sell_venue], FEES[p.buy_venue], FEES[p.sell_venue]
        ),
    )
    assert snap.best == best
    # Published at b's tick, the first with two venues; c's falls in the same 100 ms of event time.
    assert first.snapshot is not None
    assert first.snapshot.quotes == snap.quotes[:2]
    assert out.snapshot is None


def test_an_opportunity_opens_and_closes_with_its_numbers() -> None:
    e = engine(threshold_bps=Decimal(1))
    e.on_tick(tick("a", "100.00", "100.01", 0), seq=1)
    assert e.on_tick(tick("b", "100.00", "100.02", 5), seq=2).events == []
    # b's bid jumps: buy at a's ask 100.01 (5 bps), sell at b's bid 100.12 (2 bps).
    out = e.on_tick(tick("b", "100.12", "100.13", 7), seq=3)
    [opened] = out.events
    net = exact_net_bps("100.01", "100.12", FEES["a"], FEES["b"])
    assert net > 1  # (100.12*0.9998 - 100.01*1.0005) / 100.01 = 3.97 bps
    assert opened == SpreadOpportunity(
        symbol="BTCUSDT",
        kind="open",
        buy_venue="a",
        sell_venue="b",
        timestamp=T0 + 7,
        opened=T0 + 7,
        buy_price=Decimal("100.01"),
        sell_price=Decimal("100.12"),
        buy_fee_bps=Decimal(5),
        sell_fee_bps=Decimal(2),
        gross_bps=rounded((Fraction("100.12") - Fraction("100.01")) / Fraction("100.01") * 10_000),
        net_bps=rounded(net),
        net_per_unit=Decimal("100.12") * Decimal("0.9998") - Decimal("100.01") * Decimal("1.0005"),
        threshold_bps=Decimal(1),
        source_seq=3,
    )
    # Still above: nothing new. Then b's bid falls back: the close, with the numbers that closed it.
    assert e.on_tick(tick("b", "100.11", "100.13", 8), seq=4).events == []
    [closed] = e.on_tick(tick("b", "100.02", "100.03", 9), seq=5).events
    assert (closed.kind, closed.opened, closed.timestamp, closed.source_seq) == ("close", T0 + 7, T0 + 9, 5)
    assert closed.reason == "below threshold"
    assert closed.net_bps == rounded(exact_net_bps("100.01", "100.02", FEES["a"], FEES["b"]))


def test_the_threshold_is_judged_on_the_exact_edge_after_fees() -> None:
    """Gross edge exactly the fees plus the threshold is not above it; one cent more is."""
    e = engine(fees_bps={"a": Decimal(0), "b": Decimal(0)}, threshold_bps=Decimal(10))
    e.on_tick(tick("a", "99", "100", 0), seq=1)
    assert e.on_tick(tick("b", "100.10", "100.20", 1), seq=2).events == []  # exactly 10 bps: not above
    [opened] = e.on_tick(tick("b", "100.11", "100.20", 2), seq=3).events
    assert opened.net_bps == Decimal("11.0000")


def test_fees_can_make_a_gross_opportunity_none() -> None:
    e = engine(fees_bps={"a": Decimal(30), "b": Decimal(30)})
    e.on_tick(tick("a", "99.00", "100.00", 0), seq=1)
    out = e.on_tick(tick("b", "100.50", "100.60", 1), seq=2)  # 50 bps gross, 60 bps of fees
    assert out.events == []
    snap = e.snapshot("BTCUSDT")
    assert snap is not None
    assert snap.best is not None
    assert snap.best.gross_bps == Decimal("50.0000")
    assert snap.best.net_bps == rounded(exact_net_bps("100.00", "100.50", Decimal(30), Decimal(30)))
    assert snap.best.net_bps < 0


def test_a_stale_venue_is_left_out_and_said_so_and_closes_its_opportunities() -> None:
    e = engine()
    e.on_tick(tick("a", "100.00", "100.01", 0), seq=1)
    [opened] = e.on_tick(tick("b", "100.50", "100.51", 100), seq=2).events  # buy a, sell b
    assert (opened.buy_venue, opened.sell_venue) == ("a", "b")
    # c quotes 1001 ms after a's last quote: a is stale (the clock is event time, c's timestamp).
    out = e.on_tick(tick("c", "100.40", "100.45", 1_001), seq=3)
    [closed] = out.events
    assert (closed.kind, closed.reason, closed.buy_venue, closed.sell_venue) == (
        "close",
        "stale: a",
        "a",
        "b",
    )
    assert closed.buy_price == Decimal("100.01")  # the last prices known
    snap = e.snapshot("BTCUSDT")
    assert snap is not None
    assert [q.venue for q in snap.stale] == ["a"]
    assert snap.stale[0].timestamp == T0
    assert [q.venue for q in snap.quotes] == ["b", "c"]
    assert {(p.buy_venue, p.sell_venue) for p in snap.pairs} == {("b", "c"), ("c", "b")}
    assert (snap.best_bid_venue, snap.best_ask_venue) == ("b", "c")
    # Exactly the staleness old is still fresh; a quotes again and is back.
    e.on_tick(tick("b", "100.50", "100.51", 1_100), seq=4)
    assert [q.venue for q in (e.snapshot("BTCUSDT") or snap).quotes] == ["b", "c"]
    e.on_tick(tick("a", "100.00", "100.01", 1_101), seq=5)
    again = e.snapshot("BTCUSDT")
    assert again is not None
    assert again.stale == []


def test_older_quotes_and_trades_without_a_book_change_nothing() -> None:
    e = engine()
    e.on_tick(tick("a", "100.00", "100.01", 50), seq=1)
    e.on_tick(tick("b", "100.00", "100.02", 50), seq=2)
    before = e.snapshot("BTCUSDT")
    assert e.on_tick(tick("a", "90", "91", 10), seq=3).events == []  # older than a's quote
    trade = msgspec.structs.replace(tick("a", "80", "81", 60), bid=None, ask=None)
    assert e.on_tick(trade, seq=4).snapshot is None
    assert e.snapshot("BTCUSDT") == before


def test_snapshots_and_samples_come_once_per_interval_of_event_time() -> None:
    e = engine(publish_interval_ms=100, sample_interval_ms=1_000)
    e.on_tick(tick("a", "100", "101", 0), seq=1)
    published, sampled = [], []
    for i in range(1, 300):  # every 10 ms for ~3 s
        out = e.on_tick(tick("b" if i % 2 else "a", "100", "101", i * 10), seq=i + 1)
        if out.snapshot is not None:
            published.append(out.snapshot.timestamp - T0)
        if out.sample is not None:
            sampled.append(out.sample.timestamp - T0)
    assert published == [10, *range(100, 2_991, 100)]
    assert sampled == [10, 1_000, 2_000]


def test_each_symbol_is_its_own_instrument_and_the_symbol_filter_holds() -> None:
    e = engine(symbols=frozenset({"BTCUSDT"}))
    e.on_tick(tick("a", "100", "101", 0), seq=1)
    e.on_tick(tick("b", "100", "101", 0, symbol="ETHUSDT"), seq=2)
    assert e.snapshot("BTCUSDT") is None  # ETHUSDT's quote is not BTCUSDT's
    assert e.symbols() == ["BTCUSDT"]


def _random_ticks(seed: int, n: int) -> list[tuple[MarketTick, int]]:
    rng = random.Random(seed)
    out = []
    for i in range(n):
        venue = rng.choice("abc")
        mid = Decimal(10_000 + rng.randint(-30, 30))
        half = Decimal(rng.randint(1, 3))
        at = i * rng.randint(1, 40)
        out.append(
            (tick(venue, str(mid - half), str(mid + half), at, rng.choice(["BTCUSDT", "ETHUSDT"])), i + 1)
        )
    return out


@pytest.mark.parametrize("cut", [1, 137, 500, 999])
def test_restored_state_continues_exactly_as_if_never_stopped(cut: int) -> None:
    ticks = _random_ticks(3, 1_000)
    whole = engine(threshold_bps=Decimal(1))
    expected = [whole.on_tick(t, seq) for t, seq in ticks]
    first = engine(threshold_bps=Decimal(1))
    for t, seq in ticks[:cut]:
        first.on_tick(t, seq)
    saved = msgspec.msgpack.encode(first.state())
    second = engine(threshold_bps=Decimal(1))
    second.restore(msgspec.msgpack.decode(saved, type=SpreadState))
    assert [second.on_tick(t, seq) for t, seq in ticks[cut:]] == expected[cut:]


def test_events_alternate_open_close_per_pair_and_match_an_independent_recount() -> None:
    """Over random ticks, each pair's events alternate open/close, and an open comes exactly when an
    independent exact computation over the fresh quotes says the pair went above the threshold."""
    ticks = _random_ticks(11, 3_000)
    e = engine(threshold_bps=Decimal(2))
    books: dict[str, dict[str, tuple[Fraction, Fraction, int]]] = {}
    state: dict[tuple[str, str, str], bool] = {}
    for t, seq in ticks:
        events = e.on_tick(t, seq).events
        book = books.setdefault(t.symbol, {})
        if t.venue not in book or book[t.venue][2] <= t.timestamp:
            book[t.venue] = (Fraction(t.bid), Fraction(t.ask), t.timestamp)  # type: ignore[arg-type]
        clock = max(q[2] for q in book.values())
        fresh = {v: q for v, q in book.items() if clock - q[2] <= 1_000}
        expected = []
        for buy, (_, ask, _) in fresh.items():
            for sell, (bid, _, _) in fresh.items():
                if buy != sell and len(book) > 1:
                    net = exact_net_bps(
                        str(Decimal(ask.numerator) / ask.denominator),
                        str(Decimal(bid.numerator) / bid.denominator),
                        FEES[buy],
                        FEES[sell],
                    )
                    if net > 2:
                        expected.append((buy, sell))
        for key in list(state):
            if key[0] == t.symbol and state[key] and (key[1], key[2]) not in expected:
                state[key] = False
                assert any(ev.kind == "close" and (ev.buy_venue, ev.sell_venue) == key[1:] for ev in events)
        for buy, sell in expected:
            if not state.get((t.symbol, buy, sell)):
                state[(t.symbol, buy, sell)] = True
                assert any(
                    ev.kind == "open" and (ev.buy_venue, ev.sell_venue) == (buy, sell) for ev in events
                )
        assert len(events) == len({(ev.kind, ev.buy_venue, ev.sell_venue) for ev in events})
    assert state  # pairs did open over the run (a key is made at an open)


def test_bps_rounding_is_half_even_to_four_places() -> None:
    assert bps(Decimal("0.000000005"), Decimal(1)) == Decimal("0.0000")  # 0.00005 bps: to the even 0
    assert bps(Decimal("0.000000015"), Decimal(1)) == Decimal("0.0002")  # 0.00015 bps: to the even 2
    assert bps(Decimal(1), Decimal(3)) == rounded(Fraction(10_000, 3))
