"""live_gateway settings: none by default, venues and symbols checked when the settings load."""

from __future__ import annotations

import pytest
from pydantic import ValidationError

from trader.config import LiveGatewaySettings, Settings


def test_by_default_no_venue_is_configured() -> None:
    assert Settings().live_gateway.venues == {}


def test_venues_come_from_the_environment(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("TRADER_LIVE_GATEWAY__VENUES__KRAKEN__SYMBOLS", '["XBT/USD", "ETH/EUR"]')
    monkeypatch.setenv("TRADER_LIVE_GATEWAY__VENUES__KRAKEN__WS_URL", "ws://127.0.0.1:9/v2")
    monkeypatch.setenv("TRADER_LIVE_GATEWAY__GAP_GRACE_S", "0.25")
    cfg = Settings().live_gateway
    assert cfg.venues["kraken"].symbols == ["XBT/USD", "ETH/EUR"]
    assert cfg.venues["kraken"].ws_url == "ws://127.0.0.1:9/v2"
    assert cfg.venues["kraken"].rest_url is None  # the venue's own
    assert cfg.gap_grace_s == 0.25


def test_an_unknown_venue_is_refused() -> None:
    with pytest.raises(ValidationError, match="unknown live venue"):
        LiveGatewaySettings(venues={"mtgox": {"symbols": ["BTCUSD"]}})


def test_a_symbol_that_is_no_spot_pair_is_refused() -> None:
    with pytest.raises(ValidationError, match="not a spot pair"):
        LiveGatewaySettings(venues={"okx": {"symbols": ["BTC-USDT-SWAP"]}})


def test_alt_data_venues_kinds_and_perpetuals_checked_when_the_settings_load() -> None:
    cfg = LiveGatewaySettings(alt={"okx": {"symbols": ["BTC-USDT-SWAP", "ETHUSDT-PERP"]}})
    assert cfg.alt["okx"].kinds == ["funding", "mark_price", "index_price", "open_interest", "liquidation"]
    with pytest.raises(ValueError, match="no alternative data from"):
        LiveGatewaySettings(alt={"coinbase": {"symbols": ["BTCUSD"]}})
    with pytest.raises(ValueError, match="unknown alt data kind"):
        LiveGatewaySettings(alt={"bybit": {"symbols": ["BTCUSDT"], "kinds": ["sentiment"]}})
    with pytest.raises(ValueError, match="inverse"):
        LiveGatewaySettings(alt={"binance": {"symbols": ["BTC/USD:BTC"]}})


def test_alt_data_from_the_environment(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("TRADER_LIVE_GATEWAY__ALT__BYBIT__SYMBOLS", '["BTCUSDT"]')
    monkeypatch.setenv("TRADER_LIVE_GATEWAY__ALT__BYBIT__KINDS", '["funding"]')
    cfg = Settings().live_gateway
    assert cfg.alt["bybit"].symbols == ["BTCUSDT"]
    assert cfg.alt["bybit"].kinds == ["funding"]
