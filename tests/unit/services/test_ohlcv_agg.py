"""ohlcv-agg's wiring that needs no server: message identity, what a replay publishes, its settings."""

from __future__ import annotations

from decimal import Decimal

import msgspec
import pytest

from trader.config import Settings
from trader.messages import Bar
from trader.services.ohlcv_agg import OhlcvAgg, bar_message, holds

BAR = Bar(
    venue="mock",
    symbol="BTCUSDT",
    timeframe="5m",
    start=1_700_006_400_000,
    open=Decimal(1),
    high=Decimal(2),
    low=Decimal(1),
    close=Decimal(2),
    volume=Decimal(3),
    vwap=Decimal("1.5"),
    trades=7,
    notional=Decimal("4.5"),
)


def test_a_bar_message_is_identified_by_its_bucket_and_trade_count() -> None:
    message = bar_message(BAR)
    assert message.subject == "market.bar.5m.mock.BTCUSDT"
    assert message.msg_id == "mock:BTCUSDT:5m:1700006400000:7"
    amended = bar_message(msgspec.structs.replace(BAR, trades=8))
    assert amended.msg_id != message.msg_id  # an amendment is a new message


def test_a_replay_publishes_only_what_the_subject_does_not_hold() -> None:
    assert not holds(None, BAR)  # nothing on the subject yet
    assert holds(BAR, BAR)  # published before the crash
    assert holds(msgspec.structs.replace(BAR, start=BAR.start + 300_000), BAR)  # a later bar is there
    assert not holds(msgspec.structs.replace(BAR, trades=6), BAR)  # an older version: the amendment is new
    assert not holds(msgspec.structs.replace(BAR, start=BAR.start - 300_000), BAR)


def test_an_amend_window_shorter_than_the_normalizer_lateness_is_refused() -> None:
    settings = Settings.model_validate({"ohlcv_agg": {"amend_window_s": 3}, "normalizer": {"lateness_s": 5}})
    service = OhlcvAgg.__new__(OhlcvAgg)
    service.settings = settings
    with pytest.raises(ValueError, match="amendments would be refused"):
        service._config()
    service.settings = Settings()
    assert service._config().timeframes == ("5m", "15m", "1h", "4h", "1d")


def test_a_timeframe_the_normalizer_builds_too_is_refused() -> None:
    service = OhlcvAgg.__new__(OhlcvAgg)
    service.settings = Settings.model_validate({"normalizer": {"timeframes": ["1m", "5m"]}})
    with pytest.raises(ValueError, match=r"\['5m'\] are built by both"):
        service._config()
