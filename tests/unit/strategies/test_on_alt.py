"""``on_alt``: a strategy hears of the alternative data of its symbols and their perpetuals, live only, after
its start and warm-up, and what it asks for then is sent like on a tick."""

from __future__ import annotations

from decimal import Decimal

from trader.config import StrategyConfig
from trader.messages import AltDatum
from trader.strategies import Strategy, build_runner
from trader.strategies.base import Warmup
from trader.strategies.testing import make_bar

FUNDING_WATCHER = f"{__name__}:FundingWatcher"


class FundingWatcher(Strategy):
    """Sells when the perpetual's funding rate is high: longs pay, so the carry favours the short."""

    def warmup(self) -> list[Warmup]:
        return [Warmup("1m", 1)]

    def on_alt(self, datum: AltDatum) -> None:
        if datum.kind == "funding" and datum.value > Decimal("0.0005") and datum.symbol:
            self.ctx.submit("sell", datum.symbol.removesuffix("-PERP"), Decimal(1))


def funding(rate: str, symbol: str = "BTCUSDT-PERP") -> AltDatum:
    return AltDatum(
        timestamp=1, kind="funding", source="binance", value=Decimal(rate), symbol=symbol, unit="rate"
    )


def runner():  # type: ignore[no-untyped-def]
    return build_runner(StrategyConfig(name="f", kind=FUNDING_WATCHER, symbols=["BTCUSDT"]))


def test_funding_of_its_perpetual_reaches_it_and_its_order_is_sent() -> None:
    r = runner()
    r.start()
    r.warm_up([make_bar(0, "60000")])
    [order] = r.on_alt(funding("0.001")).instructions
    assert (order.message.side, order.message.symbol) == ("sell", "BTCUSDT")
    assert not r.on_alt(funding("0.0001"))  # heard, and nothing asked


def test_nothing_before_the_start_and_the_warm_up() -> None:
    r = runner()
    assert not r.on_alt(funding("0.001"))  # not started
    r.start()
    assert not r.on_alt(funding("0.001"))  # its warm-up not yet fed: live data waits for it
    r.warm_up([])
    assert r.on_alt(funding("0.001")).instructions


def test_other_symbols_and_data_without_one_are_not_its_own() -> None:
    r = runner()
    r.start()
    r.warm_up([])
    assert not r.on_alt(funding("0.001", "ETHUSDT-PERP"))
    assert not r.on_alt(AltDatum(timestamp=1, kind="sentiment", source="mock", value=Decimal("0.9")))


def test_a_strategy_of_a_perpetual_hears_that_perpetuals_data() -> None:
    r = build_runner(StrategyConfig(name="f", kind=FUNDING_WATCHER, symbols=["BTCUSDT-PERP"]))
    r.start()
    r.warm_up([])
    [order] = r.on_alt(funding("0.001", "BTCUSDT-PERP")).instructions
    assert order.message.symbol == "BTCUSDT"
    assert not r.on_alt(funding("0.001", "ETHUSDT-PERP"))


class FundingOnly(FundingWatcher):
    alt_kinds = ("funding",)


def test_a_strategy_that_names_its_kinds_hears_only_those() -> None:
    r = build_runner(StrategyConfig(name="f", kind=f"{__name__}:FundingOnly", symbols=["BTCUSDT"]))
    r.start()
    r.warm_up([])
    assert r.on_alt(funding("0.001")).instructions
    high_oi = AltDatum(
        timestamp=1, kind="open_interest", source="binance", value=Decimal(5), symbol="BTCUSDT-PERP"
    )
    before = r.events
    assert not r.on_alt(high_oi)
    assert r.events == before  # not called at all
