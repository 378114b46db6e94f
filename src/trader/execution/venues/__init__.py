"""The venue adapters, by kind. Adding a venue is one new module here and one line in ``VENUES``."""

from __future__ import annotations

from trader.execution.venues.base import ReportListener, VenueAdapter
from trader.execution.venues.paper import PaperVenue, PaperVenueSettings

VENUES: dict[str, type[VenueAdapter]] = {cls.kind: cls for cls in (PaperVenue,)}


def venue_class(kind: str) -> type[VenueAdapter]:
    if kind not in VENUES:
        raise KeyError(f"unknown venue kind {kind!r}; known: {', '.join(sorted(VENUES))}")
    return VENUES[kind]


__all__ = ["VENUES", "PaperVenue", "PaperVenueSettings", "ReportListener", "VenueAdapter", "venue_class"]
