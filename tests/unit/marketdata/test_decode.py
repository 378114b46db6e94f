"""The table of accepted and rejected tick inputs; each rejection names its field and reason."""

from __future__ import annotations

import contextlib
import json
from decimal import Decimal

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from trader.marketdata import decode
from trader.marketdata.decode import InvalidMessage, decode_tick
from trader.messages import MarketTick, encode
from trader.stores.lake import MARKET_TICKS, unfit_decimal

MS = 1_732_406_400_123  # 2024-11-24T00:00:00.123Z
BASE = {
    "timestamp": MS,
    "exchange": "binance",
    "venue": "binance",
    "symbol": "BTCUSDT",
    "price": 60000.5,
    "size": 0.25,
    "volume": 0.25,
    "bid": 60000.4,
    "ask": 60000.6,
}


def raw(**changes: object) -> bytes:
    body = {**BASE, **changes}
    return json.dumps({k: v for k, v in body.items() if v is not ...}).encode()


def without(*fields: str) -> bytes:
    return json.dumps({k: v for k, v in BASE.items() if k not in fields}).encode()


ACCEPTED = [
    ("canonical", raw(), {"timestamp": MS}),
    ("epoch seconds int", raw(timestamp=MS // 1000), {"timestamp": MS // 1000 * 1000}),
    ("epoch seconds float", raw(timestamp=MS / 1000), {"timestamp": MS}),
    ("epoch microseconds", raw(timestamp=MS * 1000 + 456), {"timestamp": MS}),
    ("epoch nanoseconds", raw(timestamp=MS * 1_000_000 + 456_789), {"timestamp": MS}),
    ("epoch ms as string", raw(timestamp=str(MS)), {"timestamp": MS}),
    ("ISO-8601 with Z", raw(timestamp="2024-11-24T00:00:00.123Z"), {"timestamp": MS}),
    ("ISO-8601 with offset", raw(timestamp="2024-11-24T02:00:00.123+02:00"), {"timestamp": MS}),
    ("ISO-8601 naive is UTC", raw(timestamp="2024-11-24T00:00:00.123"), {"timestamp": MS}),
    ("event_ts instead of timestamp", raw(timestamp=..., event_ts=MS), {"timestamp": MS}),
    ("event_ts in seconds", raw(timestamp=..., event_ts=MS / 1000), {"timestamp": MS}),
    ("venue from exchange", without("venue"), {"venue": "binance", "exchange": "binance"}),
    ("exchange from venue", without("exchange"), {"venue": "binance", "exchange": "binance"}),
    ("size from volume", without("size"), {"size": Decimal("0.25")}),
    ("volume from size", without("volume"), {"volume": Decimal("0.25")}),
    ("numbers as strings", raw(price="60000.50", size="0.25"), {"price": Decimal("60000.50")}),
    ("price kept exact", raw(price=0.1), {"price": Decimal("0.1")}),
    ("no quotes", raw(bid=None, ask=None), {"bid": None, "ask": None}),
    ("locked quote", raw(bid=60000.5, ask=60000.5), {"bid": Decimal("60000.5")}),
    ("side upper case", raw(side="BUY"), {"side": "buy"}),
    ("integer trade id", raw(trade_id=12345), {"trade_id": "12345"}),
    ("source_seq", raw(source_seq=7), {"source_seq": 7}),
    ("zero size (a quote update)", raw(size=0, volume=0), {"size": Decimal(0)}),
    ("unknown fields ignored", raw(extra="x"), {"symbol": "BTCUSDT"}),
    ("a price to 12 places", raw(price="0.000000000001"), {"price": Decimal("1e-12")}),
    ("a size to 8 places", raw(size="0.00000001"), {"size": Decimal("1e-8")}),
    ("trailing zeros past 12 places", raw(price="1.00000000000000000000"), {"price": Decimal(1)}),
    ("trailing zeros past 8 places", raw(size="0.1000000000"), {"size": Decimal("0.1")}),
]


@pytest.mark.parametrize(("case", "data", "expected"), ACCEPTED, ids=[c[0] for c in ACCEPTED])
def test_accepted(case: str, data: bytes, expected: dict[str, object]) -> None:
    tick = decode_tick(data)
    for field, value in expected.items():
        assert getattr(tick, field) == value, f"{case}: {field}"


REJECTED = [
    ("not JSON", b"{nope", "body", "malformed JSON"),
    ("JSON array", b"[1, 2]", "body", "expected a JSON object, got an array"),
    ("empty body", b"", "body", "malformed JSON"),
    ("no timestamp", raw(timestamp=...), "timestamp", "missing"),
    ("timestamp zero", raw(timestamp=0), "timestamp", "must be positive"),
    ("timestamp negative", raw(timestamp=-5), "timestamp", "must be positive"),
    ("timestamp in 1970", raw(timestamp=5), "timestamp", "outside 2000-01-01..2100-01-01"),
    ("timestamp too large", raw(timestamp=10**21), "timestamp", "too large"),
    ("timestamp word", raw(timestamp="yesterday"), "timestamp", "neither an epoch number nor an ISO-8601"),
    ("timestamp boolean", raw(timestamp=True), "timestamp", "boolean"),
    ("timestamp object", raw(timestamp={"s": 1}), "timestamp", "got an object"),
    ("event_ts garbage", raw(timestamp=..., event_ts="soon"), "event_ts", "neither an epoch number"),
    ("no venue nor exchange", without("venue", "exchange"), "venue", "neither venue nor exchange"),
    ("empty venue", raw(venue=""), "venue", "must not be empty"),
    (
        "a size to 9 places",
        raw(size=...).replace(b'"volume"', b'"size": 0.123456789, "volume"'),
        "size",
        "0.123456789 has more than 8 decimal places",
    ),
    ("negative exponent too small", raw(price=1e-13), "price", "more than 12 decimal places"),
    ("a price to 13 places as a string", raw(bid="0.1000000000001"), "bid", "more than 12 decimal places"),
    ("a volume to 9 places", raw(volume="1.000000001"), "volume", "more than 8 decimal places"),
    ("venue number", raw(venue=5), "venue", "expected a string, got a number"),
    ("venue with a dot", raw(venue="bin.ance"), "venue", "is not a venue name"),  # a subject token
    ("no symbol", raw(symbol=...), "symbol", "missing"),
    ("symbol number", raw(symbol=1), "symbol", "expected a string"),
    ("symbol with a dot", raw(symbol="BTC.USDT"), "symbol", "is not a symbol"),
    ("no price", raw(price=...), "price", "missing"),
    ("price zero", raw(price=0), "price", "must be positive"),
    ("price negative", raw(price=-1.5), "price", "must be positive"),
    ("price NaN string", raw(price="NaN"), "price", "finite"),
    ("price Infinity string", raw(price="Infinity"), "price", "finite"),
    ("price text", raw(price="ten"), "price", "is not a number"),
    ("price boolean", raw(price=True), "price", "boolean"),
    ("price array", raw(price=[1]), "price", "got an array"),
    ("no size nor volume", without("size", "volume"), "size", "neither size nor volume"),
    ("negative size", raw(size=-0.1), "size", "must not be negative"),
    ("negative volume", raw(volume=-2), "volume", "must not be negative"),
    ("size NaN", raw(size="nan"), "size", "finite"),
    ("bid above ask", raw(bid=60001, ask=60000), "bid", "above ask"),
    ("bid zero", raw(bid=0), "bid", "must be positive"),
    ("ask negative", raw(ask=-1), "ask", "must be positive"),
    ("side unknown", raw(side="long"), "side", "expected 'buy' or 'sell'"),
    ("trade id float", raw(trade_id=1.5), "trade_id", "expected a string or integer"),
    ("source_seq text", raw(source_seq="7"), "source_seq", "expected an integer"),
    ("source_seq negative", raw(source_seq=-1), "source_seq", "must not be negative"),
]


@pytest.mark.parametrize(("case", "data", "field", "reason"), REJECTED, ids=[c[0] for c in REJECTED])
def test_rejected(case: str, data: bytes, field: str, reason: str) -> None:
    with pytest.raises(InvalidMessage) as caught:
        decode_tick(data)
    assert caught.value.field == field, f"{case}: {caught.value}"
    assert reason in caught.value.reason, f"{case}: {caught.value}"


def test_bare_nan_literal_is_malformed_json() -> None:
    with pytest.raises(InvalidMessage) as caught:
        decode_tick(raw().replace(b"60000.5", b"NaN", 1))
    assert caught.value.field == "body"


def test_encode_then_decode_is_identity() -> None:
    tick = MarketTick(
        timestamp=MS,
        exchange="mock",
        venue="mock",
        symbol="ETHUSDT",
        price=Decimal("3000.10"),
        size=Decimal("0.0100"),
        volume=Decimal("0.0100"),
        bid=Decimal("3000.09"),
        ask=Decimal("3000.10"),
        side="buy",
        trade_id="9",
        source_seq=3,
    )
    data = encode(tick)
    assert b'"price":3000.10' in data  # exact decimal text on the wire, not a binary float
    assert decode_tick(data) == tick


PLACES_18, PLACES_19 = "0." + "0" * 17 + "1", "0." + "0" * 18 + "1"
PLACES = ("0.00000001", "0.000000001", "0.000000000001", "0.0000000000001")  # 8, 9, 12, 13
NUMBERS = st.sampled_from(
    [
        *("1", "0", "-1", "0.5", "60000.25", "1e-19", "1E-5", "1e21", "99999999999999999999"),
        *('"NaN"', '"Infinity"', PLACES_18, PLACES_19, "1.00000000000000000000", '"12.5"', "null"),
        *PLACES,
    ]
)


@settings(max_examples=300, deadline=None)
@given(
    st.fixed_dictionaries(
        {"price": NUMBERS, "size": NUMBERS, "volume": NUMBERS, "bid": NUMBERS, "ask": NUMBERS},
    ),
    st.sampled_from(["BTCUSDT", "BTC-USD", "bad symbol", ""]),
    st.sampled_from(["binance", ""]),
    st.sampled_from([MS, MS // 1000, "null", "-3"]),
)
def test_the_shortcut_for_plain_ticks_decides_as_the_full_checks(
    numbers: dict[str, str], symbol: str, venue: str, timestamp: object
) -> None:
    """A tick of names seen before is checked in a few comparisons: the outcome must not change."""
    body = ",".join(f'"{k}":{v}' for k, v in numbers.items())
    data = f'{{"timestamp":{timestamp},"exchange":"x","venue":"{venue}","symbol":"{symbol}",{body}}}'.encode()
    plain = f'{{"timestamp":{MS},"exchange":"x","venue":"{venue}","symbol":"{symbol}","price":1,"size":1}}'
    outcomes = []
    for known in (False, True):
        decode._valid_names.clear()
        if known:  # the names pass as those of a plain tick before: remembered, if they are valid
            with contextlib.suppress(InvalidMessage):
                decode_tick(plain.encode())
        try:
            outcomes.append(decode_tick(data))
        except InvalidMessage as exc:
            outcomes.append(str(exc))
    assert outcomes[0] == outcomes[1]


@settings(max_examples=300, deadline=None)
@given(st.fixed_dictionaries({"price": NUMBERS, "size": NUMBERS, "bid": NUMBERS}))
def test_every_tick_the_decoder_takes_fits_the_lake(numbers: dict[str, str]) -> None:
    """One rule for every store: a tick is in the bars and the lake alike, or refused by both."""
    body = ",".join(f'"{k}":{v}' for k, v in numbers.items())
    data = f'{{"timestamp":{MS},"exchange":"x","venue":"binance","symbol":"BTCUSDT",{body}}}'.encode()
    try:
        tick = decode_tick(data)
    except InvalidMessage:
        return
    assert unfit_decimal(MARKET_TICKS, tick) is None
