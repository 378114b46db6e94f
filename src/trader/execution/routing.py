"""The routing decision, in one place: which venue an order goes to.

``Routing`` (built from the settings by ``Routing.of``) holds all the decision reads: the venues
configured per symbol, the fixed venue, the venues exeq runs with their taker fees, and the market-data
venue whose quotes stand for each. The oms asks ``Routing.direct`` (an order that leaves nothing to
choose goes straight to its venue, one hop less); the router (``trader.execution.router``) asks
``Routing.choose`` for the rest. Pure: quotes come in as a function.

A buy goes where ``ask * (1 + fee)`` is lowest, a sell where ``bid * (1 - fee)`` is highest; a tie goes
to the venue configured first. A venue named by the order, else by the config, is taken as is (it must
be one configured for the symbol); so is the only venue configured.
"""

from __future__ import annotations

from collections.abc import Callable, Container, Mapping, Sequence
from dataclasses import dataclass
from decimal import Decimal
from typing import TYPE_CHECKING, Literal, Protocol

from trader.messages import Side

if TYPE_CHECKING:
    from trader.config import Settings

BPS = Decimal(10_000)

RouteReason = Literal["fixed by order", "fixed by config", "only venue", "best net price"]


class RoutingError(ValueError):
    """No venue can take the order. ``venue``: the venue the refusal is about (the one the order or the
    config named, or the one chosen that exeq does not run), if any."""

    def __init__(self, reason: str, venue: str | None = None) -> None:
        super().__init__(reason)
        self.venue = venue


class RoutableOrder(Protocol):
    """What routing reads of an order: ``OrderRequest``, ``Order`` and ``VenueOrder`` all fit."""

    @property
    def symbol(self) -> str: ...

    @property
    def side(self) -> Side: ...

    @property
    def venue(self) -> str | None: ...


@dataclass(frozen=True)
class VenueQuote:
    """A venue configured for the symbol, with its latest top of book (None: no quote yet)."""

    venue: str
    bid: Decimal | None = None
    ask: Decimal | None = None
    taker_fee_bps: Decimal = Decimal(0)

    def net_price(self, side: Side) -> Decimal | None:
        """What one unit costs (buy) or brings (sell) here after the taker fee."""
        fee = self.taker_fee_bps / BPS
        if side == "buy":
            return None if self.ask is None else self.ask * (1 + fee)
        return None if self.bid is None else self.bid * (1 - fee)


@dataclass(frozen=True)
class RouteChoice:
    venue: str
    reason: RouteReason
    net_price: Decimal | None = None  # the price that won; None when the venue was not chosen on price


def choose_venue(
    order: RoutableOrder, venues: Sequence[VenueQuote], *, fixed_venue: str | None = None
) -> RouteChoice:
    """The venue for ``order`` among ``venues`` (those configured for its symbol); ``fixed_venue`` is the
    config's fixed venue for the symbol, if any."""
    if not venues:
        raise RoutingError(f"no venue is configured for {order.symbol}")
    if order.venue is not None:
        return RouteChoice(_configured(order.venue, venues, order.symbol), "fixed by order")
    if fixed_venue is not None:
        return RouteChoice(_configured(fixed_venue, venues, order.symbol), "fixed by config")
    if len(venues) == 1:
        return RouteChoice(venues[0].venue, "only venue")
    return _best_net_price(order, venues)


def _best_net_price(order: RoutableOrder, venues: Sequence[VenueQuote]) -> RouteChoice:
    priced = [(quote.net_price(order.side), quote.venue) for quote in venues]
    candidates = [(price, venue) for price, venue in priced if price is not None]
    if not candidates:
        touch = "ask" if order.side == "buy" else "bid"
        names = ", ".join(quote.venue for quote in venues)
        raise RoutingError(f"no venue quotes {order.symbol} for a {order.side}: no {touch} at {names}")
    # min and max keep the first of equals: a tie goes to the venue configured first.
    pick = min if order.side == "buy" else max
    price, venue = pick(candidates, key=lambda candidate: candidate[0])
    return RouteChoice(venue, "best net price", price)


def _configured(venue: str, venues: Sequence[VenueQuote], symbol: str) -> str:
    if all(quote.venue != venue for quote in venues):
        names = ", ".join(quote.venue for quote in venues)
        raise RoutingError(f"venue {venue!r} is not configured for {symbol} (configured: {names})")
    return venue


def venue_without_choice(
    symbol: str,
    requested: str | None,
    *,
    configured: Sequence[str],
    fixed_venue: str | None,
    run: Container[str],
) -> str | None:
    """The venue of an order that leaves nothing to choose: the one it names, else the config's fixed
    one, else the only one ``configured`` for its symbol, provided it is configured and ``run`` (by exeq).
    None when there is a choice to make on price, or a refusal to give: the router's work."""
    venue = requested or fixed_venue or (configured[0] if len(configured) == 1 else None)
    if venue is None or venue not in configured or venue not in run:
        return None
    return venue


# A venue's top of book: (bid, ask), either None when unknown.
Touch = tuple[Decimal | None, Decimal | None]
QuoteOf = Callable[[str, str], Touch]  # (market-data venue, symbol) -> its top of book


@dataclass(frozen=True)
class Routing:
    """Everything the routing decision reads, from the settings (``Routing.of``)."""

    venues: Mapping[str, Sequence[str]]  # symbol (``*``: any other) -> the venues that may trade it
    fixed_venue: str | None
    taker_fee_bps: Mapping[str, Decimal]  # the venues exeq runs, with their taker fee
    quote_venue_of: Callable[[str], str]  # venue -> the market-data venue whose quotes stand for it

    @classmethod
    def of(cls, settings: Settings) -> Routing:
        return cls(
            venues={symbol: tuple(names) for symbol, names in settings.routing.venues.items()},
            fixed_venue=settings.routing.fixed_venue,
            taker_fee_bps={name: cfg.taker_fee_bps for name, cfg in settings.exeq.venues.items()},
            quote_venue_of=settings.quote_venue_of,
        )

    def venues_for(self, symbol: str) -> Sequence[str]:
        return self.venues.get(symbol, self.venues.get("*", ()))

    @property
    def needs_quotes(self) -> bool:
        """Whether any order may be routed on price: some symbol has a choice of venues, none fixed."""
        return self.fixed_venue is None and any(len(names) > 1 for names in self.venues.values())

    def direct(self, symbol: str, requested: str | None) -> str | None:
        """The venue of an order that leaves nothing to choose (``venue_without_choice``); None: the
        router's work."""
        return venue_without_choice(
            symbol,
            requested,
            configured=self.venues_for(symbol),
            fixed_venue=self.fixed_venue,
            run=self.taker_fee_bps,
        )

    def quote(self, venue: str, symbol: str, quote_of: QuoteOf) -> VenueQuote:
        bid, ask = quote_of(self.quote_venue_of(venue), symbol)
        return VenueQuote(venue, bid, ask, self.taker_fee_bps.get(venue, Decimal(0)))

    def choose(self, order: RoutableOrder, quote_of: QuoteOf) -> RouteChoice:
        """The venue for ``order`` (``choose_venue`` over the venues of its symbol, each quoted by
        ``quote_of``), one that exeq runs; ``RoutingError`` when there is none."""
        quotes = [self.quote(v, order.symbol, quote_of) for v in self.venues_for(order.symbol)]
        try:
            choice = choose_venue(order, quotes, fixed_venue=self.fixed_venue)
        except RoutingError as exc:
            raise RoutingError(str(exc), order.venue or self.fixed_venue) from None
        if choice.venue not in self.taker_fee_bps:
            raise RoutingError(f"venue {choice.venue!r} is not run by exeq", choice.venue)
        return choice
