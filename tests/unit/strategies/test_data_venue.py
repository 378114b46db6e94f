"""A strategy hears only of its data venue's market data and trades on its own venue: mock data never
reaches a strategy on live data, and its orders name the venue it trades."""

from __future__ import annotations

from decimal import Decimal

from trader.config import StrategyConfig
from trader.messages import Bar, MarketTick
from trader.strategies import Strategy, build_runner
from trader.strategies.base import Warmup
from trader.strategies.testing import make_bar

RECORDER = f"{__name__}:Recorder"


class Recorder(Strategy):
    """Buys once on every tick and bar it hears of, so that what reached it is what it sent."""

    def warmup(self) -> list[Warmup]:
        return [Warmup("1m", 2)]

    def on_tick(self, tick: MarketTick) -> None:
        self.ctx.submit("buy", tick.symbol, Decimal(1))

    def on_bar(self, bar: Bar) -> None:
        if not self.ctx.warming_up:
            self.ctx.submit("buy", bar.symbol, Decimal(1))


def tick(venue: str, symbol: str = "BTCUSDT") -> MarketTick:
    price = Decimal(60_000)
    return MarketTick(
        timestamp=1, exchange=venue, venue=venue, symbol=symbol, price=price, size=Decimal(1), volume=price
    )


def live_runner():  # type: ignore[no-untyped-def]
    config = StrategyConfig(
        name="live", kind=RECORDER, symbols=["BTCUSDT"], venue="binance", data_venue="binance"
    )
    runner = build_runner(config)
    runner.start()
    return runner


def test_a_live_strategy_refuses_the_mock_feed() -> None:
    runner = live_runner()
    assert not runner.on_tick(tick("mock"))
    assert not runner.on_bar(make_bar(0, "60000"))  # the mock venue's bar
    runner.warm_up([make_bar(0, "60000"), make_bar(60_000, "60001")])
    assert runner.describe()["warmup"]["bars"] == 0
    assert runner.describe()["foreign_data_refused"] == 4


def test_a_live_strategy_hears_its_venue_and_orders_go_there() -> None:
    runner = live_runner()
    [from_tick] = runner.on_tick(tick("binance")).instructions
    [from_bar] = runner.on_bar(make_bar(0, "60000", venue="binance")).instructions
    assert from_tick.message.venue == from_bar.message.venue == "binance"
    assert runner.describe()["foreign_data_refused"] == 0


def test_its_warm_up_reads_the_bars_of_its_data_venue() -> None:
    assert live_runner().warmup_wanted() == {"market.bar.1m.binance.BTCUSDT": 2}


def test_a_configuration_alone_stands_for_the_paper_setup() -> None:
    runner = build_runner(StrategyConfig(name="p", kind=RECORDER, symbols=["BTCUSDT"]))
    runner.start()
    [order] = runner.on_tick(tick("mock")).instructions
    assert order.message.venue == "paper"
    assert not runner.on_tick(tick("binance"))
    assert runner.warmup_wanted() == {"market.bar.1m.mock.BTCUSDT": 2}
