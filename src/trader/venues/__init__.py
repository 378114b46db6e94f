"""Exchange market data: one module per venue behind the small interface of ``trader.venues.base``.

Each venue module knows its websocket messages (subscribe, ping, trades, top of book), its REST API for
filling gaps, and its own spelling of symbols; ``trader.venues.feed`` runs any of them (connection,
heartbeats, stale streams, reconnects, gaps) and the ``live-gateway`` service publishes what they give.
"""

from __future__ import annotations

import importlib
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from trader.venues.base import Venue

# Venue name -> "module:class". Names only here, so that settings can be validated without importing
# the websocket client.
VENUES: dict[str, str] = {
    "binance": "trader.venues.binance:Binance",
    "coinbase": "trader.venues.coinbase:Coinbase",
    "kraken": "trader.venues.kraken:Kraken",
    "bybit": "trader.venues.bybit:Bybit",
    "okx": "trader.venues.okx:Okx",
}


def load_venue(name: str) -> type[Venue]:
    if name not in VENUES:
        raise KeyError(f"unknown venue {name!r}; known: {', '.join(sorted(VENUES))}")
    module, cls = VENUES[name].split(":")
    return getattr(importlib.import_module(module), cls)
