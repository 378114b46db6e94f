"""The normalizer's batch on the intake: ticks counted in the bars together, a late tick kept for the
dead letters, except one handled before a restart (its dead letter was sent then)."""

from __future__ import annotations

from decimal import Decimal

from trader.bus.read import Stored
from trader.config import Settings
from trader.marketdata.bars import BarBuilder
from trader.messages import MarketTick, encode
from trader.runtime.intake import Received
from trader.services.normalizer import Normalizer, ticks_input

T0 = 1_732_406_400_000  # a minute's start


def _received(seq: int, event_ms: int, arrival_ms: int, redelivered: bool = False) -> Received[MarketTick]:
    tick = MarketTick(event_ms, "mock", "mock", "BTCUSDT", Decimal("100"), Decimal("1"), Decimal("1"))
    return Received(
        Stored(seq, "market.tick.mock.BTCUSDT", encode(tick), None, arrival_ms), tick, redelivered
    )


async def test_late_ticks_are_refused_once_and_the_others_counted_in_the_bars() -> None:
    normalizer = Normalizer(Settings())
    normalizer.lateness_ms = 5_000
    normalizer.builder = BarBuilder(["1s", "1m"], normalizer.lateness_ms)
    normalizer._refused = []
    batch = [
        _received(1, T0, T0 + 10),
        _received(2, T0 + 100, T0 + 9_000, redelivered=True),  # late, refused before the restart
        _received(3, T0 + 200, T0 + 9_000),  # late
        _received(4, T0 + 300, T0 + 320),
    ]
    assert await normalizer._take(batch) == ()
    assert [(r.seq, r.field) for r in normalizer._refused] == [(3, "late")]
    assert normalizer._refused[0].reason.startswith("late: arrived 8800 ms after its event time")
    bars = normalizer.builder.advance(T0 + 70_000).bars
    assert {(b.timeframe, b.trades) for b in bars} == {("1s", 2), ("1m", 2)}


def test_the_ticks_input_batches_for_throughput_with_room_for_a_flush() -> None:
    source = ticks_input(max_batch=5_000, flush_interval_s=0.25)
    assert (source.stream, source.subjects, source.max_batch) == ("MARKET_TICKS", "market.tick.>", 5_000)
    assert (source.batching.eager, source.batching.wait_s, source.batching.max_ack_pending) == (
        False,
        0.25,
        50_000,
    )
