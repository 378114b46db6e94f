"""The interface every venue implements, and the parsing helpers they share.

A venue module is pure translation: the frames to subscribe and ping, one received frame to ``Trade``,
``Quote``, ``LastTradeId`` and ``Notice`` items, and the venue's REST answers to ``Trade``s. The
connection, reconnects, heartbeats and gaps are ``trader.marketdata.feeds.feed``'s.

Numbers are read as exact ``Decimal``: JSON strings as they are, JSON numbers (Kraken sends prices as
numbers) through a decoder that never makes a binary float.
"""

from __future__ import annotations

import re
from abc import ABC, abstractmethod
from dataclasses import dataclass, field
from datetime import UTC, datetime
from decimal import Decimal, InvalidOperation
from typing import Any, ClassVar, Literal, Protocol

import msgspec

from trader.marketdata.feeds.symbols import Instrument

Side = Literal["buy", "sell"]


@dataclass(frozen=True, slots=True)
class Trade:
    """One trade as the venue reported it. ``seq`` is the trade id as an integer where the venue numbers
    a symbol's trades one by one (a jump is a gap); ``span`` is how many of those ids the message covers,
    ending at ``seq`` (OKX aggregates the fills of one taker order at one price)."""

    venue_symbol: str
    trade_id: str
    price: Decimal
    size: Decimal
    side: Side | None
    timestamp: int  # epoch ms
    seq: int | None = None
    span: int = 1


@dataclass(frozen=True, slots=True)
class Quote:
    """The top of book; a side left None is unchanged."""

    venue_symbol: str
    bid: Decimal | None
    ask: Decimal | None


@dataclass(frozen=True, slots=True)
class LastTradeId:
    """A heartbeat naming the latest trade id (Coinbase): shows a gap even while no trade comes."""

    venue_symbol: str
    seq: int


@dataclass(frozen=True, slots=True)
class Notice:
    """Anything else worth a log line: subscription acknowledgements, pongs, heartbeats, venue errors."""

    kind: Literal["subscribed", "heartbeat", "pong", "info", "error"]
    detail: str = ""


Item = Trade | Quote | LastTradeId | Notice


@dataclass
class Parsed:
    """What one frame held. ``errors`` name the parts refused (the valid parts are in ``items``), and
    ``venue_symbol`` the instrument the frame was about, when known."""

    items: list[Item] = field(default_factory=list)
    errors: list[str] = field(default_factory=list)
    venue_symbol: str | None = None


class FrameError(ValueError):
    """A frame that cannot be read at all, with the reason."""

    def __init__(self, reason: str, venue_symbol: str | None = None) -> None:
        super().__init__(reason)
        self.reason = reason
        self.venue_symbol = venue_symbol


@dataclass(frozen=True, slots=True)
class TradeRange:
    """What to recover from REST: the trade ids ``first``..``last`` (inclusive) where the venue numbers
    trades one by one, else the trades since ``since_ms``."""

    venue_symbol: str
    first: int | None = None
    last: int | None = None
    since_ms: int | None = None


class Rest(Protocol):
    async def get_json(self, path: str, params: dict[str, str]) -> Any: ...


class Venue(ABC):
    """One exchange's public market data, spot."""

    name: ClassVar[str]
    ws_url: ClassVar[str]
    rest_url: ClassVar[str]
    rest_rate_per_s: ClassVar[float]  # within the venue's public limit, with room for other clients
    rest_burst: ClassVar[int] = 2
    stale_after_s: ClassVar[float] = 30.0  # no frame at all for this long: the connection is dead
    ping_interval_s: ClassVar[float | None] = None  # application-level pings, where the venue wants them
    contiguous_ids: ClassVar[bool] = True  # trade ids go up by one per symbol: a jump is a gap

    @abstractmethod
    def venue_symbol(self, instrument: Instrument) -> str:
        """The venue's own name for the instrument."""

    def connect_url(self, base_url: str, venue_symbols: list[str]) -> str:
        """The websocket URL to open (some venues name the streams in it)."""
        return base_url

    @abstractmethod
    def subscribe_frames(self, venue_symbols: list[str]) -> list[str]:
        """Frames that subscribe to trades and top of book (sent again after every reconnect)."""

    def ping_frame(self) -> str | None:
        return None

    def parse(self, frame: str | bytes) -> Parsed:
        """One received frame; raises ``FrameError`` when it cannot be read at all. Either way the
        instrument it was about is named when the frame tells it, for the subject of a dead letter."""
        message = decode_object(frame)
        try:
            parsed = self.parse_message(message)
        except FrameError as exc:
            exc.venue_symbol = exc.venue_symbol or _safe_symbol(self, message)
            raise
        parsed.venue_symbol = parsed.venue_symbol or (_safe_symbol(self, message) if parsed.errors else None)
        return parsed

    @abstractmethod
    def parse_message(self, message: dict[str, Any]) -> Parsed:
        """One decoded frame."""

    @abstractmethod
    def symbol_of(self, message: dict[str, Any]) -> str | None:
        """The venue symbol a frame is about, if it says (best effort: the frame may be malformed)."""

    @abstractmethod
    async def fetch_trades(self, rest: Rest, wanted: TradeRange, limit: int) -> list[Trade]:
        """Trades of ``wanted`` from the REST API, at most about ``limit``, in any order."""


# Reading fields ---------------------------------------------------------------------------------

# float_hook: every JSON number with a fraction becomes an exact Decimal, never a float.
_json = msgspec.json.Decoder(float_hook=Decimal)
_ISO = re.compile(r"^(\d{4}-\d{2}-\d{2})[T ](\d{2}:\d{2}:\d{2})(?:\.(\d{1,9}))?(Z|[+-]\d{2}:?\d{2})?$")


def decode_json(frame: str | bytes) -> Any:
    try:
        return _json.decode(frame)
    except msgspec.DecodeError as exc:
        raise FrameError(f"malformed JSON ({exc})") from None


def decode_object(frame: str | bytes) -> dict[str, Any]:
    value = decode_json(frame)
    if not isinstance(value, dict):
        raise FrameError(f"expected a JSON object, got {type(value).__name__}")
    return value


def get(obj: Any, key: str, where: str) -> Any:
    if not isinstance(obj, dict):
        raise FrameError(f"{where}: expected an object, got {type(obj).__name__}")
    if key not in obj or obj[key] is None:
        raise FrameError(f"{where}.{key}: missing")
    return obj[key]


def text(obj: Any, key: str, where: str) -> str:
    value = get(obj, key, where)
    if not isinstance(value, str) or not value:
        raise FrameError(f"{where}.{key}: expected a non-empty string, got {value!r}")
    return value


def number(value: Any, where: str) -> Decimal:
    """A price or size: a numeric string or a JSON number, exact."""
    if isinstance(value, bool) or not isinstance(value, str | int | Decimal):
        raise FrameError(f"{where}: expected a number, got {value!r}")
    try:
        result = Decimal(value.strip()) if isinstance(value, str) else Decimal(value)
    except InvalidOperation:
        raise FrameError(f"{where}: {value!r} is not a number") from None
    if not result.is_finite():
        raise FrameError(f"{where}: {value!r} is not a finite number")
    return result


def integer(value: Any, where: str) -> int:
    """An id or epoch time given as an integer or a string of digits."""
    if isinstance(value, bool):
        raise FrameError(f"{where}: expected an integer, got {value!r}")
    if isinstance(value, int):
        return value
    if isinstance(value, str) and value.strip().isdigit():
        return int(value.strip())
    raise FrameError(f"{where}: expected an integer, got {value!r}")


def iso_ms(value: Any, where: str) -> int:
    """Epoch ms from an RFC 3339 time with up to nanoseconds (Coinbase, Kraken); no offset means UTC."""
    match = _ISO.match(value) if isinstance(value, str) else None
    if match is None:
        raise FrameError(f"{where}: {value!r} is not an RFC 3339 time")
    day, clock, fraction, offset = match.groups()
    micros = (fraction or "").ljust(6, "0")[:6]
    offset = "+00:00" if offset in (None, "Z") else offset
    try:
        moment = datetime.fromisoformat(f"{day}T{clock}.{micros}{offset}")
    except ValueError as exc:
        raise FrameError(f"{where}: {value!r} is not a valid time ({exc})") from None
    delta = moment - datetime(1970, 1, 1, tzinfo=UTC)
    return (delta.days * 86_400 + delta.seconds) * 1000 + delta.microseconds // 1000


def seconds_ms(value: Any, where: str) -> int:
    """Epoch ms from epoch seconds with a fraction (Kraken REST), exactly."""
    seconds = number(value, where)
    return int(seconds * 1000)


def side_of(value: Any, where: str, *, taker: bool = True) -> Side:
    """``buy``/``sell`` in any case (``b``/``s`` too). ``taker=False`` when the venue names the maker's
    side (Coinbase): the aggressor, which is what a tick's side means, is the other one."""
    word = value.strip().lower() if isinstance(value, str) else None
    sides: dict[str, Side] = {"buy": "buy", "b": "buy", "sell": "sell", "s": "sell"}
    if word not in sides:
        raise FrameError(f"{where}: expected buy or sell, got {value!r}")
    side = sides[word]
    if taker:
        return side
    return "sell" if side == "buy" else "buy"


def items_of(value: Any, where: str) -> list[Any]:
    if not isinstance(value, list):
        raise FrameError(f"{where}: expected an array, got {type(value).__name__}")
    return value


def parse_each(parsed: Parsed, entries: list[Any], where: str, read: Any) -> None:
    """Read each entry with ``read``; a bad entry is an error of the frame, the others still count."""
    for index, entry in enumerate(entries):
        try:
            parsed.items.append(read(entry, f"{where}[{index}]"))
        except FrameError as exc:
            parsed.errors.append(exc.reason)


def _safe_symbol(venue: Venue, message: dict[str, Any]) -> str | None:
    try:
        symbol = venue.symbol_of(message)
    except Exception:  # a malformed frame may not even have the shape to look into
        return None
    return symbol if isinstance(symbol, str) else None
