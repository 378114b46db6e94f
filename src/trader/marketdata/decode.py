"""Decoding of market ticks as every feed of the earlier design sent them.

The canonical form (see ``trader.messages.MarketTick``) takes a fast path. Anything else goes through
a lenient path that accepts the variants the feeds used and names the exact field and problem when
it must refuse:

- the time as ``timestamp`` or ``event_ts``: epoch seconds, milliseconds, microseconds or nanoseconds
  (int, float or numeric string; the unit is inferred from the magnitude) or an ISO-8601 string
  (a string without an offset is taken as UTC);
- ``venue`` from ``exchange`` and ``exchange`` from ``venue`` when one is missing;
- ``size`` from ``volume`` and ``volume`` from ``size`` when one is missing;
- numbers as JSON numbers or numeric strings, always parsed to exact ``Decimal``.

Values that cannot be a market tick are refused: price <= 0, negative size or volume, NaN or infinite
numbers, a non-positive bid or ask, a bid above the ask.
"""

from __future__ import annotations

import re
from datetime import UTC, datetime
from decimal import Decimal, InvalidOperation
from typing import Any, Literal, overload

import msgspec

from trader.bus.refusals import InvalidMessage as InvalidMessage  # raised here, and where it was always found
from trader.messages import AltDatum, MarketTick, Side

# Plausible event times: anything outside is a unit or clock error, not a tick.
MIN_TIMESTAMP_MS = 946_684_800_000  # 2000-01-01T00:00:00Z
MAX_TIMESTAMP_MS = 4_102_444_800_000  # 2100-01-01T00:00:00Z
SYMBOL_PATTERN = re.compile(r"^[A-Za-z0-9][A-Za-z0-9_\-]{0,63}$")
# Decimal places a tick may carry: prices (price, bid, ask) 12, quantities (size, volume) 8. Every store
# keeps them exactly (QuestDB's DECIMAL(38, 18); the lake's columns are typed from these, trader.stores.lake,
# so that price * size fits 38 digits in SQL), and one rule here means a tick is taken by every consumer
# or refused by all: never in the bars but not in the lake. Venues quote to 8 places or fewer (prices of
# the smallest coins to 10 or 11).
PRICE_PLACES = 12
QUANTITY_PLACES = 8
MAX_MAGNITUDE = Decimal("1e20")
_LONG_FRACTION = re.compile(rb"\.[0-9]{%d}" % (QUANTITY_PLACES + 1))
_EXPONENT = (ord("e"), ord("E"))
KIND_PATTERN = re.compile(r"^[a-z][a-z0-9_]{0,63}$")
SIDES: dict[str, Side] = {"buy": "buy", "b": "buy", "bid": "buy", "sell": "sell", "s": "sell", "ask": "sell"}


_canonical = msgspec.json.Decoder(MarketTick)
_canonical_alt = msgspec.json.Decoder(AltDatum)
# float_hook keeps every JSON number with a fraction exact: 0.1 becomes Decimal("0.1").
_lenient = msgspec.json.Decoder(float_hook=Decimal)


def decode_tick(data: bytes | bytearray | memoryview) -> MarketTick:
    """Decode and validate one tick, or raise ``InvalidMessage``."""
    try:
        tick = _canonical.decode(data)
    except (msgspec.ValidationError, msgspec.DecodeError):
        return _decode_lenient(data)
    if _plainly_valid(tick, data):
        return tick
    if not MIN_TIMESTAMP_MS <= tick.timestamp < MAX_TIMESTAMP_MS:
        return _decode_lenient(data)  # an integer time in s, us or ns: let the lenient path infer it
    # The exact decimal-places check is costly; a message with no long fraction and no negative
    # exponent anywhere in its bytes cannot fail it, and that is nearly every message.
    _check_values(tick, exact_places=_maybe_too_precise(data))
    _remember_names(tick)
    return tick


# (symbol, venue, exchange) that passed the checks: a feed repeats a few, and the pattern match is
# a good part of the cost of a tick. Bounded, so that hostile input cannot grow it without limit.
_valid_names: set[tuple[str, str, str]] = set()
_MAX_VALID_NAMES = 100_000


def _plainly_valid(tick: MarketTick, data: bytes | bytearray | memoryview) -> bool:
    """Every check of ``_check_values`` passes: the common case, in a few comparisons. False does not
    mean invalid: the full checks then run and name the fault, if there is one."""
    bid, ask = tick.bid, tick.ask
    try:
        return (
            MIN_TIMESTAMP_MS <= tick.timestamp < MAX_TIMESTAMP_MS
            and (tick.symbol, tick.venue, tick.exchange) in _valid_names
            and 0 < tick.price < MAX_MAGNITUDE
            and 0 <= tick.size < MAX_MAGNITUDE
            and 0 <= tick.volume < MAX_MAGNITUDE
            and (bid is None or 0 < bid < MAX_MAGNITUDE)
            and (ask is None or 0 < ask < MAX_MAGNITUDE)
            and (bid is None or ask is None or bid <= ask)
            and (tick.source_seq is None or tick.source_seq >= 0)
            and not _maybe_too_precise(data)
        )
    except InvalidOperation:  # a NaN is not ordered
        return False


def _remember_names(tick: MarketTick) -> None:
    if len(_valid_names) >= _MAX_VALID_NAMES:
        _valid_names.clear()
    _valid_names.add((tick.symbol, tick.venue, tick.exchange))


def decode_alt(data: bytes | bytearray | memoryview) -> AltDatum:
    """Decode and validate one alternative-data observation, or raise ``InvalidMessage``."""
    try:
        datum = _canonical_alt.decode(data)
    except msgspec.ValidationError as exc:  # a subclass of DecodeError: caught first
        raise InvalidMessage(_path_of(exc), str(exc)) from None
    except msgspec.DecodeError as exc:
        raise InvalidMessage("body", f"malformed JSON ({exc})") from None
    _check_timestamp_range("timestamp", datum.timestamp)
    if not KIND_PATTERN.match(datum.kind):
        raise InvalidMessage("kind", f"{datum.kind!r} is not a kind (lower case letters, digits, '_')")
    if not datum.source:
        raise InvalidMessage("source", "must not be empty")
    if datum.symbol is not None and not SYMBOL_PATTERN.match(datum.symbol):
        raise InvalidMessage("symbol", f"{datum.symbol!r} is not a symbol")
    _check_finite("value", datum.value)
    for name, value in (("predicted", datum.predicted), ("price", datum.price)):
        if value is not None:
            _check_finite(name, value)
    if datum.next_time is not None:
        _check_timestamp_range("next_time", datum.next_time)
    return datum


def _path_of(exc: msgspec.ValidationError) -> str:
    """The field msgspec names ("... - at `$.value`" or "missing required field `value`")."""
    match = re.search(r"at `\$\.([A-Za-z_]+)", str(exc)) or re.search(r"field `([A-Za-z_]+)`", str(exc))
    return match.group(1) if match else "body"


def _decode_lenient(data: bytes | bytearray | memoryview) -> MarketTick:
    try:
        raw = _lenient.decode(data)
    except msgspec.DecodeError as exc:
        raise InvalidMessage("body", f"malformed JSON ({exc})") from None
    if not isinstance(raw, dict):
        raise InvalidMessage("body", f"expected a JSON object, got {_json_type(raw)}")
    return tick_from_mapping(raw)


def tick_from_mapping(raw: dict[str, Any]) -> MarketTick:
    """Build a validated tick from an already parsed JSON object."""
    venue, exchange = _venue_and_exchange(raw)
    size, volume = _size_and_volume(raw)
    tick = MarketTick(
        timestamp=_timestamp(raw),
        exchange=exchange,
        venue=venue,
        symbol=_symbol(raw.get("symbol")),
        price=_decimal("price", raw.get("price"), required=True),
        size=size,
        volume=volume,
        bid=_decimal("bid", raw.get("bid")),
        ask=_decimal("ask", raw.get("ask")),
        side=_side(raw.get("side")),
        trade_id=_trade_id(raw.get("trade_id")),
        source_seq=_source_seq(raw.get("source_seq")),
    )
    _check_values(tick)
    return tick


def _maybe_too_precise(data: bytes | bytearray | memoryview) -> bool:
    """More than 18 digits after a point, or a negative exponent: a number may have too many places.
    (Searches for plain bytes are several times faster than a pattern with a character class.)"""
    data = bytes(data)  # no copy of bytes; ``in`` on a memoryview would compare integers
    if _LONG_FRACTION.search(data) is not None:
        return True
    # A "-" after an "e" or "E". Symbols and dates have dashes, rarely after an e: looking at each dash
    # costs a third of searching the whole message for "e-" and again for "E-".
    find = data.find
    dash = find(b"-")
    while dash >= 0:
        if dash and data[dash - 1] in _EXPONENT:
            return True
        dash = find(b"-", dash + 1)
    return False


def _check_values(tick: MarketTick, *, exact_places: bool = True) -> None:
    _check_timestamp_range("timestamp", tick.timestamp)
    if not SYMBOL_PATTERN.match(tick.symbol):
        raise InvalidMessage("symbol", f"{tick.symbol!r} is not a symbol (letters, digits, '-' and '_')")
    for name in ("venue", "exchange"):
        if not getattr(tick, name):
            raise InvalidMessage(name, "must not be empty")
    if not SYMBOL_PATTERN.match(tick.venue):  # a subject token: market.bar.<tf>.<venue>.<SYMBOL>
        raise InvalidMessage("venue", f"{tick.venue!r} is not a venue name (letters, digits, '-' and '_')")
    _check_finite("price", tick.price, exact_places, PRICE_PLACES)
    if tick.price <= 0:
        raise InvalidMessage("price", f"must be positive, got {tick.price}")
    for name in ("size", "volume"):
        value: Decimal = getattr(tick, name)
        _check_finite(name, value, exact_places, QUANTITY_PLACES)
        if value < 0:
            raise InvalidMessage(name, f"must not be negative, got {value}")
    for name in ("bid", "ask"):
        quote: Decimal | None = getattr(tick, name)
        if quote is not None:
            _check_finite(name, quote, exact_places, PRICE_PLACES)
            if quote <= 0:
                raise InvalidMessage(name, f"must be positive, got {quote}")
    if tick.bid is not None and tick.ask is not None and tick.bid > tick.ask:
        raise InvalidMessage("bid", f"bid {tick.bid} is above ask {tick.ask} (crossed quote)")
    if tick.source_seq is not None and tick.source_seq < 0:
        raise InvalidMessage("source_seq", f"must not be negative, got {tick.source_seq}")


# Fields ---------------------------------------------------------------------------------------


def _timestamp(raw: dict[str, Any]) -> int:
    if raw.get("timestamp") is not None:
        field, value = "timestamp", raw["timestamp"]
    elif raw.get("event_ts") is not None:
        field, value = "event_ts", raw["event_ts"]
    else:
        raise InvalidMessage("timestamp", "missing (neither timestamp nor event_ts given)")
    millis = parse_timestamp_ms(field, value)
    _check_timestamp_range(field, millis)
    return millis


def parse_timestamp_ms(field: str, value: Any) -> int:
    """Epoch milliseconds from any timestamp form the feeds send."""
    if isinstance(value, bool):
        raise InvalidMessage(field, "expected a timestamp, got a boolean")
    if isinstance(value, str):
        text = value.strip()
        if _looks_numeric(text):
            return _epoch_number_to_ms(field, _to_decimal(field, text))
        return _iso_to_ms(field, text)
    if isinstance(value, int | Decimal | float):
        return _epoch_number_to_ms(field, Decimal(value))
    raise InvalidMessage(field, f"expected a timestamp, got {_json_type(value)}")


def _epoch_number_to_ms(field: str, number: Decimal) -> int:
    if not number.is_finite():
        raise InvalidMessage(field, f"not a finite number: {number}")
    if number <= 0:
        raise InvalidMessage(field, f"must be positive, got {number}")
    # The unit is told by the magnitude: today is ~1.7e9 s, 1.7e12 ms, 1.7e15 us, 1.7e18 ns.
    if number < Decimal("1e11"):
        millis = number * 1000
    elif number < Decimal("1e14"):
        millis = number
    elif number < Decimal("1e17"):
        millis = number / 1000
    elif number < Decimal("1e20"):
        millis = number / 1_000_000
    else:
        raise InvalidMessage(field, f"{number} is too large for an epoch time in s, ms, us or ns")
    return int(millis)  # truncates toward zero: the ms bucket the instant falls in


def _iso_to_ms(field: str, text: str) -> int:
    try:
        moment = datetime.fromisoformat(text)
    except ValueError:
        raise InvalidMessage(field, f"{text!r} is neither an epoch number nor an ISO-8601 time") from None
    if moment.tzinfo is None:
        moment = moment.replace(tzinfo=UTC)
    delta = moment - datetime(1970, 1, 1, tzinfo=UTC)
    return (delta.days * 86_400 + delta.seconds) * 1000 + delta.microseconds // 1000


def _check_timestamp_range(field: str, millis: int) -> None:
    if not MIN_TIMESTAMP_MS <= millis < MAX_TIMESTAMP_MS:
        raise InvalidMessage(field, f"{millis} ms is outside 2000-01-01..2100-01-01 (wrong unit?)")


def _venue_and_exchange(raw: dict[str, Any]) -> tuple[str, str]:
    venue = _optional_text("venue", raw.get("venue"))
    exchange = _optional_text("exchange", raw.get("exchange"))
    if venue is None and exchange is None:
        raise InvalidMessage("venue", "missing (neither venue nor exchange given)")
    return (venue or exchange or ""), (exchange or venue or "")


def _size_and_volume(raw: dict[str, Any]) -> tuple[Decimal, Decimal]:
    size = _decimal("size", raw.get("size"))
    volume = _decimal("volume", raw.get("volume"))
    if size is None and volume is None:
        raise InvalidMessage("size", "missing (neither size nor volume given)")
    return (size if size is not None else volume), (volume if volume is not None else size)  # type: ignore[return-value]


def _symbol(value: Any) -> str:
    if value is None:
        raise InvalidMessage("symbol", "missing")
    if not isinstance(value, str):
        raise InvalidMessage("symbol", f"expected a string, got {_json_type(value)}")
    return value


def _optional_text(field: str, value: Any) -> str | None:
    if value is None:
        return None
    if not isinstance(value, str):
        raise InvalidMessage(field, f"expected a string, got {_json_type(value)}")
    if not value.strip():
        raise InvalidMessage(field, "must not be empty")
    return value


@overload
def _decimal(field: str, value: Any, *, required: Literal[True]) -> Decimal: ...
@overload
def _decimal(field: str, value: Any, *, required: bool = False) -> Decimal | None: ...
def _decimal(field: str, value: Any, *, required: bool = False) -> Decimal | None:
    if value is None:
        if required:
            raise InvalidMessage(field, "missing")
        return None
    if isinstance(value, bool):
        raise InvalidMessage(field, "expected a number, got a boolean")
    if isinstance(value, int | Decimal):
        number = Decimal(value)
    elif isinstance(value, str):
        number = _to_decimal(field, value.strip())
    else:
        raise InvalidMessage(field, f"expected a number, got {_json_type(value)}")
    _check_finite(field, number)
    return number


def _to_decimal(field: str, text: str) -> Decimal:
    try:
        return Decimal(text)
    except InvalidOperation:
        raise InvalidMessage(field, f"{text!r} is not a number") from None


def _check_finite(field: str, number: Decimal, exact_places: bool = True, places: int = 18) -> None:
    if not number.is_finite():
        raise InvalidMessage(field, f"must be a finite number, got {number}")
    if not -MAX_MAGNITUDE < number < MAX_MAGNITUDE:
        raise InvalidMessage(field, f"{number} is out of range (at most 20 integer digits)")
    if exact_places and decimal_places(number) > places:
        raise InvalidMessage(field, f"{number} has more than {places} decimal places")


def decimal_places(value: Decimal) -> int:
    """Places after the point without the trailing zeros, counted, never rounded (a quantize is
    limited to the context's 28 digits)."""
    _, digits, exponent = value.as_tuple()
    assert isinstance(exponent, int)  # finite
    significant = len("".join(map(str, digits)).rstrip("0"))
    return max(0, -(exponent + len(digits) - significant)) if significant else 0


def _side(value: Any) -> Side | None:
    if value is None:
        return None
    if not isinstance(value, str) or value.strip().lower() not in SIDES:
        raise InvalidMessage("side", f"expected 'buy' or 'sell', got {value!r}")
    return SIDES[value.strip().lower()]


def _trade_id(value: Any) -> str | None:
    if value is None:
        return None
    if isinstance(value, bool) or not isinstance(value, str | int):
        raise InvalidMessage("trade_id", f"expected a string or integer, got {_json_type(value)}")
    text = str(value)
    if not text:
        raise InvalidMessage("trade_id", "must not be empty")
    return text


def _source_seq(value: Any) -> int | None:
    if value is None:
        return None
    if isinstance(value, bool) or not isinstance(value, int):
        raise InvalidMessage("source_seq", f"expected an integer, got {_json_type(value)}")
    return value


def _looks_numeric(text: str) -> bool:
    return bool(re.fullmatch(r"[+-]?(\d+(\.\d*)?|\.\d+)([eE][+-]?\d+)?", text))


def _json_type(value: Any) -> str:
    if value is None:
        return "null"
    if isinstance(value, bool):
        return "a boolean"
    if isinstance(value, str):
        return "a string"
    if isinstance(value, int | float | Decimal):
        return "a number"
    if isinstance(value, list):
        return "an array"
    if isinstance(value, dict):
        return "an object"
    return type(value).__name__
