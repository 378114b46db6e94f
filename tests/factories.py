"""Messages the tests build again and again."""

from __future__ import annotations

from decimal import Decimal

from trader.messages import Bar


def flat_bar(
    start: int, close: str | int, symbol: str = "BTCUSDT", timeframe: str = "1m", closed: bool = True
) -> Bar:
    """A bar of one trade: open, high, low, close and VWAP all at ``close``, volume 1."""
    price = Decimal(str(close))
    return Bar(
        venue="test",
        symbol=symbol,
        timeframe=timeframe,
        start=start,
        open=price,
        high=price,
        low=price,
        close=price,
        volume=Decimal(1),
        vwap=price,
        trades=1,
        closed=closed,
    )
