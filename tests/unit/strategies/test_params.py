"""A strategy parameter the strategy does not read is refused when the strategy is loaded."""

from __future__ import annotations

from pathlib import Path

import pytest

from trader.config import Settings, StrategyConfig
from trader.strategies import Strategy, StrategyConfigError, build_runner

EXAMPLE_CONFIG = Path(__file__).parents[3] / "examples" / "breakout.yaml"


def config(kind: str, params: dict[str, str], name: str = "s1") -> StrategyConfig:
    return StrategyConfig(name=name, kind=kind, symbols=["BTCUSDT"], params=params)


def test_a_misspelt_parameter_is_refused_naming_the_strategy_and_the_nearest_one() -> None:
    # ``fast`` has a default: without the check the strategy would run on 5 without a word.
    with pytest.raises(StrategyConfigError) as refused:
        build_runner(config("ma_cross", {"fsat": "3", "quantity": "0.01"}, name="ma-btc"))
    assert str(refused.value) == (
        "strategy ma-btc (ma_cross): unknown parameter 'fsat' (did you mean 'fast'?); "
        "it reads: allow_short, fast, quantity, slow, timeframe"
    )


def test_an_optional_parameter_misspelt_is_refused_too() -> None:
    params = {"spread_bps": "10", "quantity": "0.1", "max_position": "1", "tick_sise": "0.01"}
    with pytest.raises(StrategyConfigError, match=r"'tick_sise' \(did you mean 'tick_size'\?\)"):
        build_runner(config("market_maker", params))


def test_the_default_strategies_load() -> None:
    for strategy in Settings().strategy.strategies:
        assert build_runner(strategy).name == strategy.name


def test_the_example_configuration_loads(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("TRADER_CONFIG", str(EXAMPLE_CONFIG))
    loaded = [build_runner(strategy).name for strategy in Settings().strategy.strategies]
    assert loaded == ["breakout-btc", "mm-eth"]


class ReadsLater(Strategy):
    other_params = ("size",)  # read in on_start: named, so not refused

    def on_start(self) -> None:
        self.size = self.config.params["size"]


def test_a_parameter_named_in_other_params_is_accepted() -> None:
    runner = build_runner(config(f"{__name__}:ReadsLater", {"size": "2"}))
    runner.start()
    assert runner.strategy.size == "2"
    with pytest.raises(StrategyConfigError, match=r"unknown parameter 'sise' \(did you mean 'size'\?\)"):
        build_runner(config(f"{__name__}:ReadsLater", {"sise": "2"}))


class ReadsDirectly(Strategy):
    def __init__(self, config: StrategyConfig, ctx) -> None:  # type: ignore[no-untyped-def]
        super().__init__(config, ctx)
        self.size = config.params.get("size", "1")  # not through param_*: still counts as read


def test_a_parameter_read_from_the_configuration_directly_counts_as_read() -> None:
    assert build_runner(config(f"{__name__}:ReadsDirectly", {"size": "2"})).strategy.size == "2"
    with pytest.raises(StrategyConfigError, match=r"'sise' \(did you mean 'size'\?\); it reads: size$"):
        build_runner(config(f"{__name__}:ReadsDirectly", {"sise": "2"}))
