from __future__ import annotations

import json

import pytest
from pydantic import ValidationError

from trader.config import PortMap, Settings, VenueConfig


def test_default_ports_keep_the_earlier_design() -> None:
    p = PortMap()
    assert (p.gateway, p.normalizer, p.sink_ticks, p.sink_ticks_metrics) == (8080, 8091, 8111, 9111)
    assert (p.sink_alt, p.sink_alt_metrics, p.live_gateway) == (8112, 9112, 8200)
    assert p.seaweed_volume != 8080  # SeaweedFS' default volume port would take gateway's


def test_two_components_on_one_port_is_refused() -> None:
    with pytest.raises(ValidationError, match="assigned to both"):
        PortMap(gateway=4222)


def test_environment_overrides_ports_and_addresses(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("TRADER_PORTS__GATEWAY", "18080")
    monkeypatch.setenv("TRADER_NATS_URL", "nats://10.1.2.3:4333")
    monkeypatch.setenv("TRADER_GATEWAY__SYMBOLS", '["SOLUSDT"]')
    s = Settings()
    assert s.ports.gateway == 18080
    assert s.effective_nats_url == "nats://10.1.2.3:4333"
    assert s.gateway.symbols == ["SOLUSDT"]


def test_yaml_file_is_read_and_environment_wins(tmp_path, monkeypatch: pytest.MonkeyPatch) -> None:
    config = tmp_path / "trader.yaml"
    config.write_text("gateway:\n  rate: 5\n  seed: 42\nports:\n  gateway: 18081\n")
    monkeypatch.setenv("TRADER_CONFIG", str(config))
    monkeypatch.setenv("TRADER_PORTS__GATEWAY", "18082")
    s = Settings()
    assert (s.gateway.rate, s.gateway.seed, s.ports.gateway) == (5, 42, 18082)


def test_missing_config_file_is_a_clear_error(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("TRADER_CONFIG", "/nonexistent/trader.yaml")
    with pytest.raises(FileNotFoundError, match="TRADER_CONFIG"):
        Settings()


def test_delta_options_allow_plain_http_only_for_http_endpoints() -> None:
    assert Settings(s3_endpoint="http://127.0.0.1:8333").delta_storage_options()["AWS_ALLOW_HTTP"] == "true"
    assert Settings(s3_endpoint="https://s3.example").delta_storage_options()["AWS_ALLOW_HTTP"] == "false"


def test_a_ccxt_venue_is_configured_from_the_environment_without_secrets(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    venue = {
        "kind": "ccxt",
        "exchange": "okx",
        "api_passphrase_env": "MY_OKX_PASSPHRASE",
        "retries": 2,
        "backoff_s": 0.25,
        "timeout_ms": 3000,
        "rate_limit": False,
    }
    monkeypatch.setenv("TRADER_EXEQ__VENUES", json.dumps({"okx": venue}))
    monkeypatch.setenv("MY_OKX_PASSPHRASE", "never-shown-5c1d")
    okx = Settings().exeq.venues["okx"]
    assert okx.model_dump(include=set(venue)) == venue
    assert "never-shown-5c1d" not in repr(okx) + okx.model_dump_json()  # only where it is, never what
    assert VenueConfig().api_passphrase_env is None  # default: TRADER_<NAME>_API_PASSPHRASE
