"""The last trade price an order is checked at: its venue's, never another feed's.

An instrument is a symbol on a venue: the mock feed's BTCUSDT (around 60,000 by default) and Binance's
are two prices. An order is priced at the last trade of its quote venue (``Settings.quote_venue_of``:
a paper venue's ``exeq.paper.quote_venue``, a live venue's own) for the venue it goes to: the one it
names, else ``routing.fixed_venue``, else the first venue ``routing.venues`` configures for its symbol
(with a choice of venues the router may pick another; the first stands for them all).
"""

from __future__ import annotations

from decimal import Decimal

from trader.config import Settings
from trader.messages import Order, OrderRequest


class VenuePrices:
    """The last trade per (venue, symbol), and the one each order is checked at."""

    def __init__(self, settings: Settings) -> None:
        self.settings = settings
        self._last: dict[tuple[str, str], Decimal] = {}

    def update(self, venue: str, symbol: str, price: Decimal) -> bool:
        """A trade; True when it is the price of the symbol's orders that name no venue."""
        self._last[(venue, symbol)] = price
        return venue == self.quote_venue(symbol, None)

    def quote_venue(self, symbol: str, venue: str | None) -> str | None:
        """The market-data venue whose trades price an order of ``symbol`` for ``venue`` (None: where
        routing sends it); None when no venue would take it."""
        routing = self.settings.routing
        venue = venue or routing.fixed_venue
        if venue is None:
            configured = routing.venues_for(symbol)
            venue = configured[0] if configured else None
        return None if venue is None else self.settings.quote_venue_of(venue)

    def price_of(self, request: OrderRequest | Order) -> tuple[str | None, Decimal | None]:
        """The quote venue of a request (or of an order, for its replace) and its last trade of the
        symbol (None: none seen yet)."""
        venue = self.quote_venue(request.symbol, request.venue)
        return venue, None if venue is None else self._last.get((venue, request.symbol))

    def __len__(self) -> int:
        return len(self._last)
