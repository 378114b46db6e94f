"""The oms builds what its routing decision reads once, not for every order it routes."""

from __future__ import annotations

import asyncio
from decimal import Decimal
from types import SimpleNamespace

import pytest
import structlog

from trader.config import ExeqSettings, RoutingSettings, Settings, VenueConfig
from trader.execution.routing import Routing
from trader.messages import Order, TradingState
from trader.orders import OrderBook
from trader.services.oms import OrderFlow


def _order(symbol: str, venue: str | None) -> Order:
    return Order(
        client_order_id=f"s1-{symbol}",
        strategy="s1",
        account="paper",
        symbol=symbol,
        side="buy",
        quantity=Decimal(1),
        type="market",
        venue=venue,
        status="new",
        created=1,
        updated=1,
    )


def test_the_routing_is_built_once_and_decides_every_order(monkeypatch: pytest.MonkeyPatch) -> None:
    built: list[Settings] = []
    of = Routing.of

    def counting(settings: Settings) -> Routing:
        built.append(settings)
        return of(settings)

    monkeypatch.setattr(Routing, "of", staticmethod(counting))
    settings = Settings(
        routing=RoutingSettings(venues={"BTCUSDT": ["paper"], "*": ["paper", "paper-b"]}),
        exeq=ExeqSettings(venues={"paper": VenueConfig(), "paper-b": VenueConfig()}),
    )
    rt = SimpleNamespace(log=structlog.get_logger())
    flow = OrderFlow(settings, OrderBook(), TradingState(), rt, asyncio.Lock())  # type: ignore[arg-type]
    decisions = [flow._venue_without_choice(s, None) for s in ("BTCUSDT", "ETHUSDT", "BTCUSDT")]
    assert decisions == ["paper", None, "paper"]  # one venue for BTCUSDT; a choice for the others
    assert flow._goes_direct(_order("ETHUSDT", "paper-b"))  # the venue it names
    assert built == [settings]  # once, at the start, not per order
