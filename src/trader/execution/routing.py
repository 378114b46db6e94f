"""The router's venue choice: the best price net of the taker fee, unless a venue is fixed.

A buy goes where ``ask * (1 + fee)`` is lowest, a sell where ``bid * (1 - fee)`` is highest; a tie goes
to the venue configured first. A venue named by the order, else by the config, is taken as is (it must
be one configured for the symbol); so is the only venue configured.
"""

from __future__ import annotations

from collections.abc import Container, Sequence
from dataclasses import dataclass
from decimal import Decimal
from typing import Literal, Protocol

from trader.messages import Side

BPS = Decimal(10_000)

RouteReason = Literal["fixed by order", "fixed by config", "only venue", "best net price"]


class RoutingError(ValueError):
    """No venue can take the order."""


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
