from __future__ import annotations

from decimal import Decimal

from trader.marketdata.mock import AltGenerator, TickGenerator


def _ticks(seed: int, n: int = 400) -> list:
    gen = TickGenerator(
        ["BTCUSDT", "ETHUSDT"], seed=seed, start_prices={"BTCUSDT": "60000", "ETHUSDT": "3000"}
    )
    return [gen.next_tick(1_732_406_400_000 + i) for i in range(n)]


def test_same_seed_same_path_different_seed_different_path() -> None:
    assert _ticks(7) == _ticks(7)
    assert [t.price for t in _ticks(7)] != [t.price for t in _ticks(8)]


def test_ticks_are_valid_markets() -> None:
    for tick in _ticks(1, 2000):
        assert tick.bid is not None
        assert tick.ask is not None
        assert Decimal(0) < tick.bid < tick.ask
        assert tick.price == (tick.ask if tick.side == "buy" else tick.bid)
        assert tick.size > 0
        assert tick.size == tick.volume
        assert tick.price == tick.price.quantize(Decimal("0.01"))


def test_trade_ids_and_sequences_increase_per_symbol() -> None:
    last: dict[str, tuple[int, int]] = {}
    for tick in _ticks(3):
        current = (int(tick.trade_id or 0), tick.source_seq or 0)
        if tick.symbol in last:
            assert current[0] == last[tick.symbol][0] + 1
            assert current[1] == last[tick.symbol][1] + 1
        last[tick.symbol] = current
    assert set(last) == {"BTCUSDT", "ETHUSDT"}


def test_walk_moves_but_stays_near_start() -> None:
    prices = [t.price for t in _ticks(11, 4000) if t.symbol == "BTCUSDT"]
    assert len(set(prices)) > 50
    assert Decimal(50000) < min(prices)
    assert max(prices) < Decimal(70000)


def test_alt_generator_kinds_and_bounds() -> None:
    gen = AltGenerator(["BTCUSDT"], seed=1)
    batches = [gen.next_batch(1_732_406_400_000 + i * 1000) for i in range(200)]
    kinds = {d.kind for batch in batches for d in batch}
    assert kinds == {"funding_rate", "open_interest", "sentiment"}
    for batch in batches:
        for d in batch:
            assert isinstance(d.value, Decimal)
            if d.kind == "sentiment":
                assert d.symbol is None
                assert Decimal(0) <= d.value <= Decimal(100)
            if d.kind == "open_interest":
                assert d.value > 0


def _venues(seed: int, n: int = 3_000) -> list:
    from trader.marketdata.mock import MockVenueSettings, MultiVenueTicks

    main = TickGenerator(["BTCUSDT"], seed=seed, start_prices={"BTCUSDT": "60000"})
    venues = {
        "b": MockVenueSettings(noise_bps=3.0, latency_ms=0),
        "c": MockVenueSettings(noise_bps=3.0, latency_ms=300),
    }
    gen = MultiVenueTicks(main, venues, seed=seed)
    return [gen.next_ticks(1_732_406_400_000 + 10 * i) for i in range(n)]


def test_multi_venue_ticks_follow_the_main_venue_with_their_own_noise() -> None:
    steps = _venues(5)
    assert steps == _venues(5)  # reproducible from the seed
    main_only = _ticks_main(5, len(steps))
    assert [s[0] for s in steps] == main_only  # the main venue's path is unchanged
    mids = {v: [] for v in "bc"}
    for main, b, c in steps:
        assert (main.venue, b.venue, c.venue) == ("mock", "b", "c")
        assert main.timestamp == b.timestamp == c.timestamp
        assert b.symbol == c.symbol == main.symbol
        for t in (b, c):
            assert Decimal(0) < t.bid < t.ask
            mid = (t.bid + t.ask) / 2
            mids[t.venue].append(float(mid / ((main.bid + main.ask) / 2)) - 1)
        assert b.trade_id != c.trade_id or b.venue != c.venue
    # Correlated with the market (within ~20 bps) but not equal to it, and each venue its own.
    for devs in mids.values():
        assert max(abs(d) for d in devs) < 0.003
        assert any(abs(d) > 0.0002 for d in devs)
    assert mids["b"] != mids["c"]


def _ticks_main(seed: int, n: int) -> list:
    gen = TickGenerator(["BTCUSDT"], seed=seed, start_prices={"BTCUSDT": "60000"})
    return [gen.next_tick(1_732_406_400_000 + 10 * i) for i in range(n)]


def test_a_mock_venue_cannot_take_the_main_venue_name() -> None:
    import pytest

    from trader.marketdata.mock import MockVenueSettings, MultiVenueTicks

    with pytest.raises(ValueError, match="main venue"):
        MultiVenueTicks(TickGenerator(["BTCUSDT"]), {"mock": MockVenueSettings()})
