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
