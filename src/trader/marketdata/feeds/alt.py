"""The venues' alternative data: funding, mark and index prices, open interest, liquidations.

An ``AltVenue`` is, like a tick ``Venue``, pure translation: the frames that subscribe and ping, one
received frame to ``Observation``s, the REST answers to ``Observation``s, and which kinds the venue only
gives over REST (polled, ``rest_polls``). ``trader.marketdata.feeds.alt_feed`` runs it (connection,
staleness, reconnects, polling within the rate limit, the refill from REST after a reconnect).

Kinds (``KINDS``; ``alt.norm.<kind>``): ``funding`` (the rate of the current period, the predicted rate
of the next where the venue tells it, and the next funding time), ``mark_price``, ``index_price``,
``open_interest`` (in base units) and ``liquidation`` (quantity in base units, price, and the side of
the liquidation order: ``sell`` when a long position was closed).

Every number is an exact ``Decimal`` (``trader.marketdata.feeds.base.number``), every time epoch ms.
"""

from __future__ import annotations

from abc import ABC, abstractmethod
from dataclasses import dataclass, field
from decimal import Decimal
from typing import Any, ClassVar, Literal

from trader.marketdata.feeds.base import FrameError, Notice, Rest, Side, _safe_symbol, decode_object, number
from trader.marketdata.feeds.symbols import Instrument

AltKind = Literal["funding", "mark_price", "index_price", "open_interest", "liquidation"]
KINDS: tuple[AltKind, ...] = ("funding", "mark_price", "index_price", "open_interest", "liquidation")


@dataclass(frozen=True, slots=True)
class Observation:
    """One value a venue reported about one of its instruments, at the venue's event time."""

    kind: AltKind
    venue_symbol: str
    timestamp: int  # epoch ms, the venue's
    value: Decimal
    unit: str | None = None
    predicted: Decimal | None = None  # funding: the next period's rate
    next_time: int | None = None  # funding: when the current rate is charged
    price: Decimal | None = None  # liquidation
    side: Side | None = None  # liquidation: the liquidation order's side

    @property
    def identity(self) -> str:
        """What makes it this observation and no other: with the venue, its ``Nats-Msg-Id``. A value
        at one event time is one observation; liquidations carry no id, so their side, price and
        quantity tell two at one millisecond apart."""
        base = f"{self.kind}:{self.venue_symbol}:{self.timestamp}"
        if self.kind == "liquidation":
            return f"{base}:{self.side}:{self.price}:{self.value}"
        return base


@dataclass
class AltParsed:
    """What one frame held: observations, notices, the parts refused (``errors``), and the venue
    symbol it was about when known."""

    items: list[Observation | Notice] = field(default_factory=list)
    errors: list[str] = field(default_factory=list)
    venue_symbol: str | None = None


@dataclass(frozen=True, slots=True)
class RestPoll:
    """A kind the venue does not stream: asked for over REST every ``interval_s`` per symbol."""

    kind: AltKind
    interval_s: float


class AltVenue(ABC):
    """One venue's public derivatives market data (linear perpetuals)."""

    name: ClassVar[str]
    ws_url: ClassVar[str]
    rest_url: ClassVar[str]
    rest_rate_per_s: ClassVar[float]  # within the venue's public limit, with room for the tick feed
    rest_burst: ClassVar[int] = 2
    stale_after_s: ClassVar[float] = 30.0
    ping_interval_s: ClassVar[float | None] = None
    streamed: ClassVar[frozenset[str]]  # the kinds its websocket gives
    polled: ClassVar[dict[str, float]] = {}  # kind -> default seconds between REST polls per symbol

    @abstractmethod
    def venue_symbol(self, instrument: Instrument) -> str:
        """The venue's name of the perpetual."""

    def connect_url(self, base_url: str, venue_symbols: list[str], kinds: frozenset[str]) -> str:
        return base_url

    @abstractmethod
    def subscribe_frames(self, venue_symbols: list[str], kinds: frozenset[str]) -> list[str]:
        """Frames that subscribe to the streamed ``kinds`` (sent again after every reconnect)."""

    def ping_frame(self) -> str | None:
        return None

    def parse(self, frame: str | bytes) -> AltParsed:
        """One frame; raises ``FrameError`` when it cannot be read at all."""
        message = decode_object(frame)
        try:
            parsed = self.parse_message(message)
        except FrameError as exc:
            exc.venue_symbol = exc.venue_symbol or _safe_symbol(self, message)  # type: ignore[arg-type]
            raise
        if parsed.errors and parsed.venue_symbol is None:
            parsed.venue_symbol = _safe_symbol(self, message)  # type: ignore[arg-type]
        return parsed

    @abstractmethod
    def parse_message(self, message: dict[str, Any]) -> AltParsed: ...

    @abstractmethod
    def symbol_of(self, message: dict[str, Any]) -> str | None: ...

    async def prepare(self, rest: Rest, venue_symbols: list[str]) -> None:
        """What the venue must be asked once before parsing (OKX: contract sizes)."""

    @abstractmethod
    async def fetch(self, rest: Rest, venue_symbol: str, kind: str) -> list[Observation]:
        """The latest of ``kind`` from REST (and whatever else the same answer holds): what polling
        and the refill after a reconnect ask. Kinds with no REST answer give []."""

    def refill_kinds(self, kinds: frozenset[str]) -> list[str]:
        """The kinds to ``fetch`` so that one answer each covers ``kinds`` (one request, not three,
        where one answer holds several)."""
        return sorted(kinds)


def observe(kind: AltKind, venue_symbol: str, timestamp: int, value: Decimal, **extra: Any) -> Observation:
    return Observation(kind, venue_symbol, timestamp, value, **extra)


def optional_number(obj: dict[str, Any], key: str, where: str) -> Decimal | None:
    """A number the venue may leave empty (``""``) or out."""
    value = obj.get(key)
    if value is None or value == "":
        return None
    return number(value, f"{where}.{key}")
