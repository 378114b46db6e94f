from __future__ import annotations

import json
import re
from pathlib import Path

import pytest
from pydantic import ValidationError

from trader import config as config_module
from trader.config import PortMap, Settings, VenueConfig
from trader.settings_keys import UnknownSettingError


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


# Unknown keys: refused, named with where they were and the nearest valid name ----------------------


def _config_file(tmp_path: Path, monkeypatch: pytest.MonkeyPatch, text: str) -> Path:
    config = tmp_path / "trader.yaml"
    config.write_text(text)
    monkeypatch.setenv("TRADER_CONFIG", str(config))
    return config


def test_a_misspelt_section_in_the_file_is_refused(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    config = _config_file(tmp_path, monkeypatch, "gatway:\n  rate: 5\n")
    with pytest.raises(UnknownSettingError) as refused:
        Settings()
    assert str(refused.value) == f"{config}: unknown setting 'gatway'; did you mean 'gateway'?"


def test_a_misspelt_risk_limit_in_the_file_is_refused(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    config = _config_file(tmp_path, monkeypatch, "risk: {max_order_notionl: 10}\n")
    with pytest.raises(UnknownSettingError) as refused:
        Settings()
    assert str(refused.value) == (
        f"{config}: unknown setting 'risk.max_order_notionl'; did you mean 'risk.max_order_notional'?"
    )


def test_an_unknown_key_in_a_list_item_is_named_by_its_index(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    _config_file(
        tmp_path,
        monkeypatch,
        "strategy:\n  strategies:\n    - {name: a, kind: ma_cross, symbols: [BTCUSDT]}\n"
        "    - {name: b, kind: ma_cross, symbols: [ETHUSDT], parms: {fast: '3'}}\n",
    )
    with pytest.raises(UnknownSettingError, match=r"'strategy\.strategies\[1\]\.parms'; did you mean "):
        Settings()


def test_every_unknown_key_is_named_at_once(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    _config_file(tmp_path, monkeypatch, "gatway: {}\nexeq:\n  venues:\n    paper: {kindd: paper}\n")
    monkeypatch.setenv("TRADER_LOGLEVEL", "DEBUG")
    with pytest.raises(UnknownSettingError) as refused:
        Settings()
    lines = str(refused.value).splitlines()
    assert len(lines) == 3
    assert "'exeq.venues.paper.kindd'; did you mean 'exeq.venues.paper.kind'?" in lines[1]
    assert lines[2].endswith("did you mean TRADER_LOG_LEVEL?")


def test_a_misspelt_environment_variable_is_refused(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("TRADER_RISK__MAX_ORDER_NOTIONL", "10")
    with pytest.raises(UnknownSettingError) as refused:
        Settings()
    assert str(refused.value) == (
        "environment variable TRADER_RISK__MAX_ORDER_NOTIONL: unknown setting 'risk.max_order_notionl'; "
        "did you mean TRADER_RISK__MAX_ORDER_NOTIONAL?"
    )


@pytest.mark.parametrize(
    ("name", "nearest"),
    [
        ("TRADER_GATWAY__RATE", "TRADER_GATEWAY__RATE"),
        ("TRADER_RISK_MAX_ORDER_NOTIONAL", "TRADER_RISK__MAX_ORDER_NOTIONAL"),  # one _ for the nesting
        ("trader_ports__gatway", "TRADER_PORTS__GATEWAY"),  # read case-insensitively, so checked so
        ("TRADER_LIVE_GATEWAY__VENUES__OKX__STALE_AFTER", "TRADER_LIVE_GATEWAY__VENUES__OKX__STALE_AFTER_S"),
        ("TRADER_BINANCE_API_SECRT", "TRADER_BINANCE_API_SECRET"),
    ],
)
def test_an_unknown_variable_names_the_nearest_one(
    monkeypatch: pytest.MonkeyPatch, name: str, nearest: str
) -> None:
    monkeypatch.setenv(name, "1")
    with pytest.raises(UnknownSettingError, match=f"^environment variable {name}: .*did you mean {nearest}"):
        Settings()


def test_a_variable_below_a_single_value_or_into_a_list_is_refused(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("TRADER_PORTS__GATEWAY__HOST", "x")
    monkeypatch.setenv("TRADER_STRATEGY__STRATEGIES__0__NAME", "x")
    with pytest.raises(UnknownSettingError) as refused:
        Settings()
    assert str(refused.value).splitlines() == [
        "environment variable TRADER_PORTS__GATEWAY__HOST: 'ports.gateway' is a single value: "
        "it has no 'host'",
        "environment variable TRADER_STRATEGY__STRATEGIES__0__NAME: 'strategy.strategies' is a list, set "
        "whole (as JSON), not by item: it has no '0'",
    ]


def test_an_unknown_key_in_a_json_variable_is_refused(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("TRADER_EXEQ__VENUES", json.dumps({"okx": {"kind": "ccxt", "retrys": 2}}))
    with pytest.raises(UnknownSettingError) as refused:
        Settings()
    assert str(refused.value) == (
        "environment variable TRADER_EXEQ__VENUES: unknown setting 'exeq.venues.okx.retrys'; "
        "did you mean 'exeq.venues.okx.retries'?"
    )


def test_variables_the_project_reads_outside_the_settings_are_allowed(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    _config_file(
        tmp_path, monkeypatch, "exeq:\n  venues:\n    okx: {kind: ccxt, api_key_env: TRADER_OKX_KEY}\n"
    )
    monkeypatch.setenv("TRADER_DATA_DIR", str(tmp_path))
    monkeypatch.setenv("TRADER_BINANCE_MAIN_API_KEY", "k")  # a venue's credentials (ccxt_live)
    monkeypatch.setenv("TRADER_BINANCE_MAIN_API_SECRET", "s")
    monkeypatch.setenv("TRADER_OKX_API_PASSPHRASE", "p")
    monkeypatch.setenv("TRADER_OKX_KEY", "k")  # named by a setting
    monkeypatch.setenv(
        "TRADER_EXEQ__VENUES__BYBIT", json.dumps({"kind": "ccxt", "api_secret_env": "TRADER_BYBIT_S"})
    )
    monkeypatch.setenv("TRADER_BYBIT_S", "s")
    monkeypatch.setenv("TRADER_LIVE_GATEWAY__VENUES__OKX__SYMBOLS", '["BTC-USDT"]')
    settings = Settings()
    assert settings.data_dir == tmp_path
    assert settings.exeq.venues["bybit"].api_secret_env == "TRADER_BYBIT_S"
    assert config_module.NOT_SETTINGS_VARIABLES == ("TRADER_CONFIG",)


def test_every_trader_variable_the_project_reads_itself_is_allowed() -> None:
    """The TRADER_* names read with os.environ/getenv outside the settings model are those allowed."""
    src = Path(config_module.__file__).parent
    read = set()
    for module in src.rglob("*.py"):
        read |= set(re.findall(r"(?:environ\.get|getenv)\(\s*\"(TRADER_[A-Z0-9_]+)\"", module.read_text()))
    assert read == set(config_module.NOT_SETTINGS_VARIABLES)


def test_an_unknown_argument_is_refused() -> None:
    with pytest.raises(UnknownSettingError, match=r"^Settings\(\) argument: unknown setting 'gatway'"):
        Settings(gatway={})


def test_the_example_configuration_loads(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("TRADER_CONFIG", str(Path(__file__).parents[2] / "examples" / "breakout.yaml"))
    assert [s.name for s in Settings().strategy.strategies] == ["breakout-btc", "mm-eth"]
