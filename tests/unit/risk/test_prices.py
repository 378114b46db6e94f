"""Risk checks an order at its own venue's last trade: the mock feed's price never stands for a live
venue's, nor the other way round."""

from __future__ import annotations

from decimal import Decimal as D

from trader.config import ExeqSettings, RoutingSettings, Settings, VenueConfig
from trader.messages import OrderRequest
from trader.risk import PreTradeRisk, RiskLimits
from trader.risk.decider import Decider
from trader.risk.prices import VenuePrices

T0 = 1_732_406_400_000


def settings() -> Settings:
    return Settings(
        exeq=ExeqSettings(venues={"paper": VenueConfig(), "binance": VenueConfig(kind="ccxt")}),
        routing=RoutingSettings(venues={"*": ["paper", "binance"]}),
    )


def request(cid: str, venue: str | None = None) -> OrderRequest:
    return OrderRequest(
        client_order_id=cid, strategy="s1", symbol="BTCUSDT", side="buy", quantity=D(1), venue=venue
    )


def test_an_order_is_priced_at_its_venues_quotes() -> None:
    prices = VenuePrices(settings())
    assert prices.update("mock", "BTCUSDT", D(60_000)), "the paper venue's quotes: the first routed"
    assert not prices.update("binance", "BTCUSDT", D(100))
    assert prices.price_of(request("a")) == ("mock", D(60_000))
    assert prices.price_of(request("b", venue="paper")) == ("mock", D(60_000))
    assert prices.price_of(request("c", venue="binance")) == ("binance", D(100))
    assert prices.price_of(request("d", venue="kraken")) == ("kraken", None)


def test_the_notional_limit_uses_the_venue_the_order_goes_to() -> None:
    prices = VenuePrices(settings())
    decider = Decider(PreTradeRisk(RiskLimits(max_order_notional=D(1_000))), prices)
    prices.update("binance", "BTCUSDT", D(100))
    unpriced = decider.decide(request("a"), arrived_ms=T0, now=T0)
    assert (unpriced.approved, unpriced.reason) == (
        False,
        "no reference price: no last trade for BTCUSDT on mock",
    )
    prices.update("mock", "BTCUSDT", D(60_000))  # the latest tick of the symbol, but not binance's
    assert decider.decide(request("b", venue="binance"), arrived_ms=T0, now=T0).approved
    paper = decider.decide(request("c"), arrived_ms=T0, now=T0)
    assert not paper.approved
    assert (paper.reason or "").startswith("max_order_notional: 60000")
