"""`trader config`: each value in force with its source, secrets masked; and every command refusing
settings with an unknown key, in one message without a traceback."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from typer.testing import CliRunner

from trader.cli.main import app

runner = CliRunner()
SECRET = "topsecret-5c1d"


@pytest.fixture(autouse=True)
def _logging_left_alone(monkeypatch: pytest.MonkeyPatch) -> None:
    # The CLI points the logs at its stderr, which the runner closes after each command: later tests'
    # logs would then fail to write.
    monkeypatch.setattr("trader.cli.main.configure_logging", lambda *args, **kwargs: None)


@pytest.fixture
def config_file(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    keys = tmp_path / "okx.json"
    keys.write_text(json.dumps({"api_key": "file-key-77a1", "api_secret": "file-secret-77a1"}))
    config = tmp_path / "trader.yaml"
    config.write_text(
        "gateway:\n  rate: 5\n"
        f"exeq:\n  venues:\n    paper: {{}}\n    okx: {{kind: ccxt, secret_file: {keys}}}\n"
        "strategy:\n  strategies:\n"
        "    - {name: a, kind: ma_cross, symbols: [BTCUSDT], params: {quantity: '1', api_token: tok-9f}}\n"
    )
    monkeypatch.setenv("TRADER_CONFIG", str(config))
    monkeypatch.setenv("TRADER_DATA_DIR", str(tmp_path / "data"))
    return config


def shown(*args: str) -> dict:
    result = runner.invoke(app, ["config", "--json", *args])
    assert result.exit_code == 0, result.output
    return json.loads(result.stdout)


def test_each_value_says_where_it_came_from(config_file: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("TRADER_PORTS__GATEWAY", "9080")
    settings = shown()
    assert settings["ports.gateway"] == {"value": 9080, "source": "env", "from": "TRADER_PORTS__GATEWAY"}
    assert settings["gateway.rate"] == {"value": 5.0, "source": "file", "from": str(config_file)}
    assert settings["gateway.seed"] == {"value": None, "source": "default"}
    assert settings["risk.max_order_notional"] == {"value": "100000", "source": "default"}  # exact
    # A list item the file sets: its keys are the file's, those it leaves out the defaults.
    assert settings["strategy.strategies[0].kind"]["source"] == "file"
    assert settings["strategy.strategies[0].enabled"] == {"value": True, "source": "default"}


def test_a_json_variable_is_the_source_of_the_keys_it_holds(
    config_file: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("TRADER_EXEQ__VENUES__OKX", json.dumps({"kind": "ccxt", "retries": 2}))
    settings = shown()
    assert settings["exeq.venues.okx.retries"] == {
        "value": 2,
        "source": "env",
        "from": "TRADER_EXEQ__VENUES__OKX",
    }
    assert settings["exeq.venues.okx.timeout_ms"]["source"] == "default"


def test_secrets_are_masked_and_a_secret_file_is_only_named(
    config_file: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("TRADER_S3_SECRET_KEY", SECRET)
    monkeypatch.setenv("TRADER_NATS_URL", f"nats://trader:{SECRET}@10.0.0.1:4222")
    settings = shown()
    assert settings["s3_secret_key"] == {"value": "********", "source": "env", "from": "TRADER_S3_SECRET_KEY"}
    assert settings["s3_access_key"]["value"] == "********"
    assert settings["nats_url"]["value"] == "nats://trader:********@10.0.0.1:4222"
    assert settings["strategy.strategies[0].params.api_token"]["value"] == "********"
    assert settings["strategy.strategies[0].params.quantity"]["value"] == "1"
    assert settings["exeq.venues.okx.secret_file"]["value"].endswith("okx.json")
    for output in (runner.invoke(app, ["config"]).output, runner.invoke(app, ["config", "--json"]).output):
        for secret in (SECRET, "tok-9f", "file-key-77a1", "file-secret-77a1", "trader-secret"):
            assert secret not in output


def test_the_table_shows_each_source(config_file: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("TRADER_PORTS__GATEWAY", "9080")
    result = runner.invoke(app, ["config"])
    assert result.exit_code == 0, result.output
    lines = result.stdout.splitlines()
    assert lines[0] == f"TRADER_CONFIG: {config_file}"
    rows = {line.split()[1]: line for line in lines if line.startswith("│")}
    assert "environment variable TRADER_PORTS__GATEWAY" in rows["ports.gateway"]
    assert f"file {config_file}" in rows["gateway.rate"]
    assert rows["log_level"].split("│")[3].strip() == "default"


@pytest.mark.parametrize("command", [["up"], ["config"], ["orders"], ["service", "run", "risk"]])
def test_every_command_refuses_an_unknown_key_in_one_message(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, command: list[str]
) -> None:
    config = tmp_path / "trader.yaml"
    config.write_text("gatway:\n  rate: 5\n")
    monkeypatch.setenv("TRADER_CONFIG", str(config))
    monkeypatch.setenv("TRADER_DATA_DIR", str(tmp_path / "data"))
    result = runner.invoke(app, command)
    assert result.exit_code == 2
    assert "unknown setting 'gatway'; did you mean 'gateway'?" in " ".join(result.stderr.split())
    assert "Traceback" not in result.output
    assert not (tmp_path / "data").exists()  # nothing started


def test_one_section_is_shown_on_its_own(config_file: Path) -> None:
    risk = shown("risk")
    assert "risk.max_order_notional" in risk
    assert all(name.startswith("risk.") for name in risk)
    assert list(shown("strategy.strategies[0].params")) == [
        "strategy.strategies[0].params.quantity",
        "strategy.strategies[0].params.api_token",
    ]
    unknown = runner.invoke(app, ["config", "rsk"])
    assert unknown.exit_code == 2
    assert "no setting is named rsk" in unknown.stderr
