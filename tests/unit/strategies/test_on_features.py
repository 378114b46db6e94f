"""``on_features``: a strategy that overrides it takes the features of its instruments' bars, warmed up
like bars (after the warm-up bars, with nothing it asks for sent), then live; one that does not is
not subscribed; another venue's or symbol's features never reach it."""

from __future__ import annotations

from collections.abc import Sequence
from decimal import Decimal

from trader.messages import Bar, Features
from trader.strategies import Strategy, Warmup
from trader.strategies.testing import Desk, make_bar

MINUTE = 60_000


class RsiBuyer(Strategy):
    """Buys when the RSI of 1m bars is under 30; keeps what it heard, and when."""

    def warmup(self) -> Sequence[Warmup]:
        return (Warmup("1m", 2),)

    def on_bar(self, bar: Bar) -> None:
        self.heard = [*getattr(self, "heard", []), ("bar", bar.start, self.ctx.warming_up)]

    def on_features(self, features: Features) -> None:
        self.heard = [*getattr(self, "heard", []), ("features", features.start, self.ctx.warming_up)]
        rsi = features.values.get("rsi_14")
        if features.timeframe == "1m" and rsi is not None and rsi < 30:
            self.ctx.submit("buy", features.symbol, Decimal("0.01"))


def features(start: int, rsi: float | None, venue: str = "mock", symbol: str = "BTCUSDT") -> Features:
    return Features(venue=venue, symbol=symbol, timeframe="1m", start=start, values={"rsi_14": rsi}, bars=15)


def test_features_are_warmed_up_after_the_bars_then_live() -> None:
    desk = Desk(f"{__name__}:RsiBuyer", {})
    runner = desk.runner
    assert runner.wants_features()
    bars = [make_bar(0, "100"), make_bar(MINUTE, "99")]
    sent = desk.take(runner.warm_up(bars, [features(0, 50.0), features(MINUTE, 20.0)]))
    assert sent == []  # warming up: the buy on RSI 20 is not sent
    assert runner.warmup_features == 2
    live = desk.take(runner.on_features(features(2 * MINUTE, 25.0)))
    assert len(live) == 1
    strategy = runner.strategy
    assert isinstance(strategy, RsiBuyer)
    assert strategy.heard == [
        ("bar", 0, True),
        ("bar", MINUTE, True),
        ("features", 0, True),
        ("features", MINUTE, True),
        ("features", 2 * MINUTE, False),
    ]


def test_other_instruments_features_do_not_reach_it() -> None:
    desk = Desk(f"{__name__}:RsiBuyer", {})
    runner = desk.runner
    desk.take(runner.warm_up([]))
    assert desk.take(runner.on_features(features(0, 10.0, venue="binance"))) == []
    assert desk.take(runner.on_features(features(0, 10.0, symbol="ETHUSDT"))) == []
    assert runner.foreign_data == 1
    assert not hasattr(runner.strategy, "heard")


def test_a_strategy_without_the_hook_takes_no_features() -> None:
    desk = Desk("ma_cross", {"fast": "2", "slow": "3", "timeframe": "1m", "quantity": "0.1"})
    assert not desk.runner.wants_features()
