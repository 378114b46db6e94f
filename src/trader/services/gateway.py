"""gateway: the mock market feed.

Produces: ``market.tick.<venue>.<SYMBOL>`` (stream MARKET_TICKS; the venue is ``gateway.venue``, "mock"
by default), one ``Nats-Msg-Id`` per tick (``<venue>:<symbol>:<trade_id>``) so a republished tick is
stored once. In multi-venue mode (``gateway.venues``, two other mock venues by default) each tick of the
main venue is followed by one of the same instrument on each other venue, quoted around the main one's
price with the venue's own noise and latency (``trader.marketdata.mock.MultiVenueTicks``); ``rate`` is
the main venue's.
State: the random walk of each symbol, each other venue's deviation, the trade-id counters.
"""

from __future__ import annotations

import asyncio
import time

from trader.bus.publish import Outgoing
from trader.bus.streams import tick_subject
from trader.marketdata.mock import MultiVenueTicks, TickGenerator
from trader.messages import MarketTick, encode
from trader.runtime.service import Runtime, Service

MAX_BATCH = 2_000


def tick_message(tick: MarketTick) -> Outgoing:
    msg_id = f"{tick.venue}:{tick.symbol}:{tick.trade_id}"
    return Outgoing(tick_subject(tick.venue, tick.symbol), encode(tick), msg_id=msg_id)


class Gateway(Service):
    name = "gateway"

    def _generator(self) -> MultiVenueTicks:
        cfg = self.settings.gateway
        per_symbol_rate = (cfg.rate or 10_000.0) / len(cfg.symbols)
        # Trade ids start at the start time in microseconds, so they keep increasing across
        # restarts and a restarted feed is never taken for a duplicate of the one before.
        first_trade_id = time.time_ns() // 1_000
        main = TickGenerator(
            cfg.symbols,
            venue=cfg.venue,
            seed=cfg.seed,
            volatility=cfg.volatility,
            step_seconds=1.0 / per_symbol_rate,
            start_prices=cfg.start_prices,
            first_trade_id=first_trade_id,
        )
        return MultiVenueTicks(main, cfg.venues, seed=cfg.seed, first_trade_id=first_trade_id)

    async def run(self, rt: Runtime) -> None:
        rate = self.settings.gateway.rate
        generator = self._generator()
        loop = asyncio.get_running_loop()
        started, sent = loop.time(), 0
        rt.log.info(
            "gateway.feeding",
            symbols=self.settings.gateway.symbols,
            venues=generator.venues,
            rate=rate or "unlimited",
        )
        while not rt.stopping.is_set():
            if rate > 0:
                due = int((loop.time() - started) * rate) - sent
                if due <= 0:
                    next_at = started + (sent + 1) / rate
                    await asyncio.sleep(max(0.0, min(0.05, next_at - loop.time())))
                    continue
                due = min(due, MAX_BATCH)
            else:
                due = MAX_BATCH
            now_ms = time.time_ns() // 1_000_000
            batch = [tick_message(tick) for _ in range(due) for tick in generator.next_ticks(now_ms)]
            await rt.publish_reliably(batch, give_up_on_stop=True)
            sent += due


SERVICE = Gateway
