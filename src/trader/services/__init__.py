"""Every service, one module each. The registry maps a service's name to its module and ports.

A service's module defines a ``trader.runtime.service.Service`` subclass and names it ``SERVICE``.
"""

from __future__ import annotations

import importlib
from dataclasses import dataclass
from typing import TYPE_CHECKING

if TYPE_CHECKING:  # the registry is read by commands that run no service (`trader status`, `up`)
    from trader.runtime.service import Service


@dataclass(frozen=True)
class ServiceSpec:
    name: str
    module: str
    port_field: str
    description: str
    metrics_port_field: str | None = None
    network: str = "backend"  # compose network of the production deployment


REGISTRY: dict[str, ServiceSpec] = {
    spec.name: spec
    for spec in (
        ServiceSpec(
            "gateway", "trader.services.gateway", "gateway", "Mock market feed", network="lowlatency"
        ),
        ServiceSpec("alt-feed", "trader.services.alt_feed", "alt_feed", "Mock alternative data"),
        ServiceSpec(
            "normalizer", "trader.services.normalizer", "normalizer", "Ticks to OHLCV bars in QuestDB"
        ),
        ServiceSpec(
            "sink-ticks",
            "trader.services.sink_ticks",
            "sink_ticks",
            "Ticks to Delta Lake",
            metrics_port_field="sink_ticks_metrics",
        ),
        ServiceSpec(
            "sink-alt",
            "trader.services.sink_alt",
            "sink_alt",
            "Alternative data to Delta Lake",
            metrics_port_field="sink_alt_metrics",
        ),
        ServiceSpec(
            "live-gateway",
            "trader.services.live_gateway",
            "live_gateway",
            "Exchange market data (Binance, Coinbase, Kraken, Bybit, OKX)",
            network="lowlatency",
        ),
        ServiceSpec(
            "strategy", "trader.services.strategy", "strategy", "Strategies, in paper mode by default"
        ),
        ServiceSpec("risk", "trader.services.risk", "risk", "Pre- and post-trade risk, the kill switch"),
        ServiceSpec("oms", "trader.services.oms", "oms", "Order management: the state of every order"),
        ServiceSpec(
            "execution-router",
            "trader.services.execution_router",
            "execution_router",
            "Picks a venue per order",
            network="lowlatency",
        ),
        ServiceSpec(
            "exeq",
            "trader.services.exeq",
            "exeq",
            "Execution algorithms and venue adapters",
            network="lowlatency",
        ),
        ServiceSpec(
            "ohlcv-agg", "trader.services.ohlcv_agg", "ohlcv_agg", "Higher-timeframe bars from the 1m bars"
        ),
        ServiceSpec("ptrc", "trader.services.ptrc", "ptrc", "Positions from fills"),
        ServiceSpec("pnl", "trader.services.pnl", "pnl", "PnL marked to market, snapshots to QuestDB"),
        ServiceSpec(
            "spread-analyzer",
            "trader.services.spread_analyzer",
            "spread_analyzer",
            "Cross-venue spreads, NBBO and opportunities net of fees",
        ),
        ServiceSpec(
            "feature-eng", "trader.services.feature_eng", "feature_eng", "Streaming features of closed bars"
        ),
        ServiceSpec(
            "sink-features", "trader.services.sink_features", "sink_features", "Features to Delta Lake"
        ),
        ServiceSpec(
            "api", "trader.services.api", "api", "Operator API: reads, actions, WebSocket", network="frontend"
        ),
    )
}


def load_service(name: str) -> type[Service]:
    if name not in REGISTRY:
        raise KeyError(f"unknown service {name!r}; known: {', '.join(sorted(REGISTRY))}")
    module = importlib.import_module(REGISTRY[name].module)
    return module.SERVICE
