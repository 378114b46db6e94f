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
