"""Exchange market data: one module per venue behind the small interface of ``trader.marketdata.feeds.base``.

Each venue module knows its websocket messages (subscribe, ping, trades, top of book), its REST API for
filling gaps, and its own spelling of symbols; ``trader.marketdata.feeds.feed`` runs any of them (connection,
heartbeats, stale streams, reconnects, gaps) and the ``live-gateway`` service publishes what they give.
"""

from __future__ import annotations

import importlib
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from trader.marketdata.feeds.alt import AltVenue
    from trader.marketdata.feeds.base import Venue

# Venue name -> "module:class". Names only here, so that settings can be validated without importing
# the websocket client.
VENUES: dict[str, str] = {
    "binance": "trader.marketdata.feeds.binance:Binance",
    "coinbase": "trader.marketdata.feeds.coinbase:Coinbase",
    "kraken": "trader.marketdata.feeds.kraken:Kraken",
    "bybit": "trader.marketdata.feeds.bybit:Bybit",
    "okx": "trader.marketdata.feeds.okx:Okx",
}

# The venues' derivatives data (funding, mark and index prices, open interest, liquidations): names only
# here too.
ALT_VENUES: dict[str, str] = {
    "binance": "trader.marketdata.feeds.alt_binance:BinanceAlt",
    "bybit": "trader.marketdata.feeds.alt_bybit:BybitAlt",
    "okx": "trader.marketdata.feeds.alt_okx:OkxAlt",
}


def load_venue(name: str) -> type[Venue]:
    if name not in VENUES:
        raise KeyError(f"unknown venue {name!r}; known: {', '.join(sorted(VENUES))}")
    module, cls = VENUES[name].split(":")
    return getattr(importlib.import_module(module), cls)


def load_alt_venue(name: str) -> type[AltVenue]:
    if name not in ALT_VENUES:
        raise KeyError(f"no alternative data from {name!r}; known: {', '.join(sorted(ALT_VENUES))}")
    module, cls = ALT_VENUES[name].split(":")
    return getattr(importlib.import_module(module), cls)
