"""Where a strategy trades and whose market data it reads: StrategyConfig's venue and data_venue."""

from __future__ import annotations

import pytest
from pydantic import ValidationError

from trader.config import (
    ExeqSettings,
    LiveGatewaySettings,
    LiveVenueSettings,
    RoutingSettings,
    Settings,
    StrategyConfig,
    StrategySettings,
    VenueConfig,
)
from trader.execution.venues.paper import PaperVenueSettings


def strategy(**venues: str) -> StrategyConfig:
    return StrategyConfig(name="s", kind="ma_cross", symbols=["BTCUSDT"], **venues)


def live_settings(*strategies: StrategyConfig) -> Settings:
    return Settings(
        exeq=ExeqSettings(venues={"paper": VenueConfig(), "binance": VenueConfig(kind="ccxt")}),
        routing=RoutingSettings(venues={"*": ["paper"], "BTCUSDT": ["paper", "binance"]}),
        live_gateway=LiveGatewaySettings(venues={"binance": LiveVenueSettings(symbols=["BTCUSDT"])}),
        strategy=StrategySettings(strategies=list(strategies)),
    )


def test_the_default_strategies_trade_paper_on_the_mock_feed() -> None:
    settings = Settings()
    for config in settings.strategy.strategies:
        assert (config.venue, settings.data_venue_of(config)) == ("paper", "mock")
        assert settings.strategy_venue_problem(config) is None


def test_a_live_venue_takes_its_own_data_by_default() -> None:
    settings = live_settings(strategy(venue="binance"))
    assert settings.data_venue_of(settings.strategy.strategies[0]) == "binance"


def test_paper_trading_on_live_data_follows_the_paper_quote_venue() -> None:
    settings = live_settings(strategy(data_venue="binance"))
    assert settings.data_venue_of(settings.strategy.strategies[0]) == "binance"


def test_a_venue_exeq_does_not_run_is_an_error() -> None:
    with pytest.raises(ValidationError, match="venue 'binanse' is not an exeq venue"):
        live_settings(strategy(venue="binanse"))


def test_a_venue_routing_does_not_send_the_symbol_to_is_an_error() -> None:
    eth = StrategyConfig(name="s", kind="ma_cross", symbols=["ETHUSDT"], venue="binance")
    with pytest.raises(ValidationError, match=r"venue 'binance' is not in routing\.venues for ETHUSDT"):
        live_settings(eth)


def test_a_data_venue_no_feed_publishes_is_an_error() -> None:
    with pytest.raises(ValidationError, match="data_venue 'kraken' is no market-data source"):
        live_settings(strategy(data_venue="kraken"))


def test_a_live_strategy_cannot_take_the_mock_feed() -> None:
    with pytest.raises(ValidationError, match="cannot take the mock feed's data"):
        live_settings(strategy(venue="binance", data_venue="mock"))


def test_paper_trading_on_live_prices_is_the_paper_quote_venue() -> None:
    settings = Settings(
        exeq=ExeqSettings(paper=PaperVenueSettings(quote_venue="binance")),
        live_gateway=LiveGatewaySettings(venues={"binance": LiveVenueSettings(symbols=["BTCUSDT"])}),
    )
    for config in settings.strategy.strategies:  # the defaults: venue paper, data venue unset
        assert settings.data_venue_of(config) == "binance"
        assert settings.strategy_venue_problem(config) is None
    alone = Settings(exeq=ExeqSettings(paper=PaperVenueSettings(quote_venue="binance")))
    problem = alone.strategy_venue_problem(alone.strategy.strategies[0])
    assert problem is not None
    assert "data_venue 'binance' is no market-data source" in problem
