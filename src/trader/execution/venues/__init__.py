"""The venue adapters, by kind. Adding a venue is one new module here and one line in ``VENUES`` (or in
``_LAZY`` when its module imports a heavy library: ``ccxt`` takes most of a second, so it is loaded only
when a ``ccxt`` venue is run)."""

from __future__ import annotations

import importlib

from trader.execution.venues.base import ReportListener, VenueAdapter
from trader.execution.venues.paper import PaperVenue, PaperVenueSettings

VENUES: dict[str, type[VenueAdapter]] = {cls.kind: cls for cls in (PaperVenue,)}
_LAZY: dict[str, str] = {"ccxt": "trader.execution.venues.ccxt_live:CcxtVenue"}


def venue_class(kind: str) -> type[VenueAdapter]:
    if kind not in VENUES and kind in _LAZY:
        module, _, name = _LAZY[kind].partition(":")
        return getattr(importlib.import_module(module), name)
    if kind not in VENUES:
        known = sorted({*VENUES, *_LAZY})
        raise KeyError(f"unknown venue kind {kind!r}; known: {', '.join(known)}")
    return VENUES[kind]


__all__ = ["VENUES", "PaperVenue", "PaperVenueSettings", "ReportListener", "VenueAdapter", "venue_class"]
