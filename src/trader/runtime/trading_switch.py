"""A service following the trading switch (``trader.bus.trading_switch``) for as long as it runs."""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable
from typing import TYPE_CHECKING

from nats.js.kv import KeyValue

from trader.bus.trading_switch import watch_state
from trader.messages import TradingState
from trader.runtime.backoff import Backoff

if TYPE_CHECKING:
    from trader.runtime.service import Runtime


async def follow_state(rt: Runtime, kv: KeyValue, apply: Callable[[TradingState], Awaitable[None]]) -> None:
    """The current state, then every change, to ``apply`` until the service stops. A lost watch is set up
    again with backoff: a missed switch would let orders through."""
    backoff = Backoff(initial=0.2, maximum=5.0)
    while not rt.stopping.is_set():
        try:
            async for state in watch_state(kv):
                await apply(state)
                backoff.reset()
        except asyncio.CancelledError:
            raise
        except Exception as exc:
            rt.metrics.count_error("trading_state_watch")
            rt.log.warning("trading_state.watch_failed", error=repr(exc))
            await backoff.sleep(rt.stopping)
