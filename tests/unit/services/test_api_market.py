"""The api's WebSocket market data: an intake input of mode LATEST per subject, on its stream, decoding
what it can and counting (not dead-lettering) what it cannot."""

from __future__ import annotations

from decimal import Decimal as D

from trader.messages import Bar, MarketTick, encode
from trader.runtime.intake import Mode
from trader.services.api import market_input


def test_a_tick_subject_is_read_from_market_ticks_and_a_bar_subject_from_bars() -> None:
    errors: list[str] = []
    tick = market_input("market.tick.mock.BTCUSDT", errors.append)
    bar = market_input("market.bar.1s.mock.BTCUSDT", errors.append)
    assert (tick.stream, tick.subjects, tick.type, tick.mode) == (
        "MARKET_TICKS",
        "market.tick.mock.BTCUSDT",
        MarketTick,
        Mode.LATEST,
    )
    assert (bar.stream, bar.subjects, bar.type, bar.mode) == (
        "BARS",
        "market.bar.1s.mock.BTCUSDT",
        Bar,
        Mode.LATEST,
    )
    assert errors == []


def test_what_cannot_be_decoded_is_none_and_counted_not_refused() -> None:
    errors: list[str] = []
    tick = market_input("market.tick.mock.BTCUSDT", errors.append)
    assert tick.decode is not None
    good = MarketTick(1, "mock", "mock", "BTCUSDT", D("1.10"), D("2"), D("2"))
    assert tick.decode(encode(good)) == good
    assert tick.decode(b'{"not": "a tick"}') is None
    assert tick.decode(b"{broken") is None
    assert errors == ["market_undecodable", "market_undecodable"]
