"""alt-feed: the mock alternative-data source.

Produces: ``alt.norm.<kind>`` (stream ALT_DATA) every ``alt_feed.interval_s``: a funding rate and the
open interest of each symbol, and a market-wide sentiment index.
"""

from __future__ import annotations

import time

from trader.bus.backoff import set_within
from trader.bus.publish import Outgoing
from trader.bus.streams import alt_subject
from trader.marketdata.mock import AltGenerator
from trader.messages import AltDatum, encode
from trader.runtime.service import Runtime, Service


def alt_message(datum: AltDatum) -> Outgoing:
    msg_id = f"{datum.source}:{datum.kind}:{datum.symbol or '-'}:{datum.timestamp}"
    return Outgoing(alt_subject(datum.kind), encode(datum), msg_id=msg_id)


class AltFeed(Service):
    name = "alt-feed"

    async def run(self, rt: Runtime) -> None:
        cfg = self.settings.alt_feed
        generator = AltGenerator(cfg.symbols, seed=cfg.seed)
        while not rt.stopping.is_set():
            batch = [alt_message(d) for d in generator.next_batch(time.time_ns() // 1_000_000)]
            await rt.publish_reliably(batch, give_up_on_stop=True)
            await set_within(rt.stopping, cfg.interval_s)


SERVICE = AltFeed
