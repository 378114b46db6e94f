"""Every message on the bus, as msgspec types: the single source of truth for the wire format.

Money and quantities are ``Decimal`` end to end and go on the wire as exact JSON numbers
(``decimal_format="number"``), so ``0.1`` stays ``0.1`` and no binary float ever touches a price.
Timestamps are integer epoch milliseconds, UTC, the event time given by the venue.
"""

from __future__ import annotations

from decimal import Decimal
from typing import Literal

import msgspec

Side = Literal["buy", "sell"]


class MarketTick(msgspec.Struct, kw_only=True, frozen=True):
    """A trade (with the top of book when known) on ``market.tick.<SYMBOL>``."""

    timestamp: int
    exchange: str
    venue: str
    symbol: str
    price: Decimal
    size: Decimal
    volume: Decimal
    bid: Decimal | None = None
    ask: Decimal | None = None
    side: Side | None = None
    trade_id: str | None = None
    source_seq: int | None = None


class AltDatum(msgspec.Struct, kw_only=True, frozen=True):
    """One observation of alternative data on ``alt.norm.<kind>``: funding, open interest, sentiment."""

    timestamp: int
    kind: str
    source: str
    value: Decimal
    symbol: str | None = None
    unit: str | None = None


class Bar(msgspec.Struct, kw_only=True, frozen=True):
    """An OHLCV bar on ``market.bar.<timeframe>.<SYMBOL>``; ``start`` is the UTC bucket start."""

    venue: str
    symbol: str
    timeframe: str
    start: int
    open: Decimal
    high: Decimal
    low: Decimal
    close: Decimal
    volume: Decimal
    vwap: Decimal
    trades: int
    closed: bool = True


_encoder = msgspec.json.Encoder(decimal_format="number")


def encode(message: msgspec.Struct) -> bytes:
    """The canonical JSON bytes of a bus message."""
    return _encoder.encode(message)


_bar_decoder = msgspec.json.Decoder(Bar)
_alt_decoder = msgspec.json.Decoder(AltDatum)


def decode_bar(data: bytes) -> Bar:
    return _bar_decoder.decode(data)


def decode_alt(data: bytes) -> AltDatum:
    return _alt_decoder.decode(data)
