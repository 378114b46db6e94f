"""The backtest engine against an independent computation on a scripted tick sequence: every fill (price,
quantity, fee, liquidity) by the paper venue's documented rules, worked out by hand here, and the PnL."""

from __future__ import annotations

from decimal import Decimal

import pytest

from trader.backtest.engine import BacktestConfigError, BacktestEngine, Records, StrategyFailed, feed
from trader.config import Settings
from trader.messages import AltDatum, MarketTick

D = Decimal
T0 = 1_700_000_000_000
SCRIPTED = "tests.unit.backtest.scripted:Scripted"
BPS = D(10_000)


def tick(i: int, price: str, bid: str, ask: str, size: str, symbol: str = "BTCUSDT") -> MarketTick:
    return MarketTick(
        timestamp=T0 + i * 100,
        exchange="mock",
        venue="mock",
        symbol=symbol,
        price=D(price),
        size=D(size),
        volume=D(size),
        bid=D(bid),
        ask=D(ask),
    )


TICKS = [
    tick(1, "100.5", "100", "101", "5"),  # market buy 1: takes the ask, slipped
    tick(2, "100.5", "100", "101", "5"),
    tick(3, "100.5", "100", "101", "5"),  # limit sell 1 @ 104: rests
    tick(4, "103", "103", "103.5", "5"),  # bid below 104, trade below: no fill
    tick(5, "104", "104", "104.5", "0.4"),  # bid reaches 104: 0.4 fills as maker
    tick(6, "104.2", "104.1", "104.6", "10"),  # the rest, 0.6, as maker
    tick(7, "104", "104", "104.5", "1"),  # FOK buy 2 @ 105: only 1 at the touch, expired
    tick(8, "104.5", "104", "104.5", "1.5"),  # IOC buy 3 @ 104.5: 1.5 taken, the rest expired
    tick(9, "104", "104", "104.5", "5"),  # market sell 1.5 at the bid, slipped
]
SCRIPT = ";".join(
    [
        "1:buy:market:1",
        "3:sell:limit:1:104",
        "7:buy:limit:2:105:FOK",
        "8:buy:limit:3:104.5:IOC",
        "9:sell:market:1.5",
    ]
)


def settings(script: str = SCRIPT, **paper: str) -> Settings:
    fees = {"taker_fee_bps": "5", "maker_fee_bps": "2", "slippage_bps": "5", **paper}
    return Settings(
        exeq={"paper": fees},
        strategy={
            "strategies": [
                {"name": "s1", "kind": SCRIPTED, "symbols": ["BTCUSDT"], "params": {"script": script}}
            ]
        },
    )


def run(config: Settings, ticks: list[MarketTick]) -> tuple[BacktestEngine, Records]:
    engine = BacktestEngine(config, config.strategy.strategies, T0)
    engine.start([])
    for t in ticks:
        engine.on_tick(t)
    return engine, engine.finish()


def expected_fills() -> list[tuple[str, Decimal, Decimal, Decimal, str]]:
    """(side, quantity, price, fee, liquidity), by the paper venue's rules: a taker buys at the ask
    times (1 + slippage) and sells at the bid times (1 - slippage), never past its limit, and pays the
    taker fee; a resting limit fills at its price, as much as the tick's size, and pays the maker fee."""
    slip, taker, maker = D(5) / BPS, D(5) / BPS, D(2) / BPS
    buy_price = D("101") * (1 + slip)
    ioc_price = min(D("104.5") * (1 + slip), D("104.5"))
    sell_price = D("104") * (1 - slip)
    return [
        ("buy", D(1), buy_price, D(1) * buy_price * taker, "taker"),
        ("sell", D("0.4"), D(104), D("0.4") * 104 * maker, "maker"),
        ("sell", D("0.6"), D(104), D("0.6") * 104 * maker, "maker"),
        ("buy", D("1.5"), ioc_price, D("1.5") * ioc_price * taker, "taker"),
        ("sell", D("1.5"), sell_price, D("1.5") * sell_price * taker, "taker"),
    ]


def test_every_fill_and_the_pnl_match_an_independent_computation() -> None:
    engine, records = run(settings(), TICKS)
    got = [(f["side"], f["quantity"], f["price"], f["fee"], f["liquidity"]) for f in records.fills]
    assert got == expected_fills()
    # The PnL by cash flows, with no average-cost bookkeeping: the position is flat at the end.
    expected = sum((q * p if side == "sell" else -q * p) - fee for side, q, p, fee, _ in expected_fills())
    final = [row for row in records.equity if row["symbol"] == ""][-1]
    assert final["equity"] == expected
    assert final["unrealized"] == 0
    assert final["fees"] == sum(fee for *_, fee, _ in expected_fills())
    # The strategy heard of each fill, and its position is flat.
    strategy = engine.runners["s1"].strategy
    assert [f.last_quantity for f in strategy.fills] == [D(1), D("0.4"), D("0.6"), D("1.5"), D("1.5")]
    assert engine.runners["s1"].ctx.position("BTCUSDT") == 0
    assert records.anomalies == []


def test_orders_end_as_the_order_state_machine_says() -> None:
    _, records = run(settings(), TICKS)
    final = {}
    for order in records.orders:
        final[order.client_order_id] = order
    ends = [(o.side, o.type, o.tif, o.status, o.filled_quantity) for o in final.values()]
    assert ends == [
        ("buy", "market", "GTC", "FILLED", D(1)),
        ("sell", "limit", "GTC", "FILLED", D(1)),
        ("buy", "limit", "FOK", "EXPIRED", D(0)),
        ("buy", "limit", "IOC", "EXPIRED", D("1.5")),
        ("sell", "market", "GTC", "FILLED", D("1.5")),
    ]
    versions = [o.version for o in records.orders if o.client_order_id == records.orders[0].client_order_id]
    assert versions == sorted(versions)
    assert versions[0] == 1


def test_latency_meets_the_first_tick_at_or_after_submit_plus_latency() -> None:
    # Submitted at tick 1 (T0 + 100); 250 ms later is T0 + 350: tick 4 (T0 + 400) is the first it meets.
    _, records = run(settings("1:buy:market:1", latency_ms="250", slippage_bps="0"), TICKS)
    [fill] = records.fills
    assert (fill["timestamp"], fill["price"]) == (T0 + 400, D("103.5"))


def test_a_request_risk_denies_is_rejected_with_the_check_and_never_filled() -> None:
    config = settings("1:buy:market:1")
    config = config.model_copy(update={"risk": config.risk.model_copy(update={"max_order_notional": D(50)})})
    engine, records = run(config, TICKS)
    assert records.fills == []
    [rejected] = [o for o in records.orders if o.status == "REJECTED"]
    assert rejected.reason is not None
    assert rejected.reason.startswith("max_order_notional")
    assert engine.runners["s1"].strategy.states[-1].status == "REJECTED"


def test_a_strategy_that_raises_stops_the_run_saying_which_where_and_why() -> None:
    config = Settings(
        strategy={
            "strategies": [
                {
                    "name": "bad",
                    "kind": "tests.unit.backtest.scripted:Raising",
                    "symbols": ["BTCUSDT"],
                    "params": {"at": "2"},
                }
            ]
        }
    )
    with pytest.raises(
        StrategyFailed, match=r"strategy bad .* raised at 2023-11-14T22:13:20.200000Z: on_tick: ZeroDivision"
    ):
        run(config, TICKS)


def test_a_live_venue_cannot_be_backtested() -> None:
    config = Settings(
        exeq={"venues": {"binance": {"kind": "ccxt", "exchange": "binance"}}},
        routing={"venues": {"*": ["binance"]}},
    )
    with pytest.raises(BacktestConfigError, match="paper venues only"):
        BacktestEngine(config, [], T0)


def test_the_warm_up_feeds_the_bars_before_the_start_as_the_strategy_service_does() -> None:
    config = Settings(
        strategy={
            "strategies": [
                {
                    "name": "ma",
                    "kind": "ma_cross",
                    "symbols": ["BTCUSDT"],
                    "params": {"fast": "2", "slow": "5", "timeframe": "1s", "quantity": "0.01"},
                }
            ]
        }
    )
    start = T0 + 10_000
    engine = BacktestEngine(config, config.strategy.strategies, start)
    assert engine.warmup_ms() == 60_000  # a minute at least; 6 bars of 1s would do
    # Ten seconds of ticks before the start, falling then rising: the averages cross in the warm-up.
    history = [
        tick(
            i,
            str(100 - i if i < 50 else i),
            str(99 - i if i < 50 else i - 1),
            str(101 - i if i < 50 else i + 1),
            "1",
        )
        for i in range(100)
    ]
    engine.start(history)
    runner = engine.runners["ma"]
    assert runner.warmup_bars == 5
    assert runner.warming_up() is None
    assert engine.records.orders == []  # what it asked for on history was dropped


def test_a_drawdown_past_its_limit_switches_to_reduce_only_as_risk_would() -> None:
    # Bought at 101 at tick 1 (the first PnL check, its equity the peak); at tick 10 (T0 + 1,000: the
    # next check, a second later) the mark is 90: a drawdown of about 11 > 5. The buy at tick 12 would
    # add to the position: denied; the sell at tick 13 reduces it: filled.
    ticks = [tick(1, "100.5", "100", "101", "5")]
    ticks += [tick(i, "90", "89.5", "90.5", "5") for i in range(2, 16)]
    config = settings("1:buy:market:1;12:buy:market:1;13:sell:market:1", slippage_bps="0")
    config = config.model_copy(update={"risk": config.risk.model_copy(update={"max_drawdown": D(5)})})
    engine, records = run(config, ticks)
    [switch] = records.trading
    assert switch["mode"] == "reduce_only"
    assert switch["timestamp"] == T0 + 1_000
    assert switch["reason"].startswith("max_drawdown")
    assert engine.runners["s1"].ctx.trading_mode == "reduce_only"
    assert [f["side"] for f in records.fills] == ["buy", "sell"]
    [denied] = [o for o in records.orders if o.status == "REJECTED"]
    assert denied.reason is not None
    assert denied.reason.startswith("reduce_only mode")


def test_a_strategy_that_cannot_be_loaded_is_named_with_why() -> None:
    config = settings()
    strategy = config.strategy.strategies[0].model_copy(
        update={"params": {"script": "1:buy:market:1", "typo": "1"}}
    )
    with pytest.raises(
        BacktestConfigError,
        match=r"strategy s1 \(tests.unit.backtest.scripted:Scripted\) cannot be loaded: .*'typo'",
    ):
        BacktestEngine(config, [strategy], T0)


# Alternative data ----------------------------------------------------------------------------------

ALT_TRADER = "tests.unit.backtest.scripted:AltTrader"


def datum(at_ms: int, kind: str, value: str, symbol: str | None = "BTCUSDT-PERP") -> AltDatum:
    return AltDatum(timestamp=at_ms, kind=kind, source="binance", value=D(value), symbol=symbol, unit="rate")


ALT_TICKS = [tick(i, "100.5", "100", "101", "5") for i in range(1, 4)] + [
    tick(4, "102", "101.5", "102.5", "5"),
    tick(5, "102", "101.5", "102.5", "5"),
]
FUNDING_HIGH = datum(T0 + 200, "funding", "0.00100000")  # tick 2's millisecond: after it
OTHER_SYMBOL = datum(T0 + 250, "funding", "0.5", "ETHUSDT-PERP")  # not its symbol: never heard
MARK = datum(T0 + 350, "mark_price", "100.75", "BTCUSDT")  # between ticks 3 and 4
NO_SYMBOL = datum(T0 + 360, "sentiment", "0.9", None)  # about no symbol: never heard
FUNDING_LOW = datum(T0 + 900, "funding", "-0.002")  # after the last tick: still heard, before the stop
ALT = [FUNDING_HIGH, OTHER_SYMBOL, MARK, NO_SYMBOL, FUNDING_LOW]


def alt_settings(kind: str = ALT_TRADER) -> Settings:
    return Settings(
        exeq={"paper": {"taker_fee_bps": "5", "maker_fee_bps": "2", "slippage_bps": "5"}},
        strategy={
            "strategies": [
                {
                    "name": "alt",
                    "kind": kind,
                    "symbols": ["BTCUSDT"],
                    "params": {"threshold": "0.0005", "quantity": "1"},
                }
            ]
        },
    )


def run_alt(config: Settings) -> tuple[BacktestEngine, Records]:
    engine = BacktestEngine(config, config.strategy.strategies, T0)
    engine.start([])
    feed(engine, ALT_TICKS, ALT)
    return engine, engine.finish()


def test_alt_data_reach_on_alt_in_event_time_with_the_ticks_after_those_of_its_millisecond() -> None:
    engine, records = run_alt(alt_settings())
    heard = engine.runners["alt"].strategy.heard  # type: ignore[attr-defined]
    assert [(what, now, item) for what, now, item in heard] == [
        ("tick", T0 + 100, ALT_TICKS[0]),
        ("tick", T0 + 200, ALT_TICKS[1]),
        ("alt", T0 + 200, FUNDING_HIGH),  # the tie: after the tick of its millisecond
        ("tick", T0 + 300, ALT_TICKS[2]),
        ("alt", T0 + 350, MARK),  # the clock at its time
        ("tick", T0 + 400, ALT_TICKS[3]),
        ("tick", T0 + 500, ALT_TICKS[4]),
        ("alt", T0 + 900, FUNDING_LOW),
    ]
    got = heard[2][2]
    assert got is FUNDING_HIGH
    assert str(got.value) == "0.00100000"  # the very datum, every digit
    assert records.alt == len(ALT)  # handed to the engine; the runner keeps its own
    assert (records.first_alt_ms, records.last_alt_ms) == (T0 + 200, T0 + 900)


def test_orders_on_alt_data_fill_at_the_quotes_of_their_moment() -> None:
    """The sell on high funding meets tick 2's book (the last before it); the buy on low funding, after
    the last tick, tick 5's: a taker at the bid or ask, slipped 5 bps, and the taker fee."""
    _, records = run_alt(alt_settings())
    slip, taker = D(5) / BPS, D(5) / BPS
    sell, buy = D(100) * (1 - slip), D("102.5") * (1 + slip)
    got = [(f["timestamp"], f["side"], f["quantity"], f["price"], f["fee"]) for f in records.fills]
    assert got == [
        (T0 + 200, "sell", D(1), sell, sell * taker),
        (T0 + 900, "buy", D(1), buy, buy * taker),
    ]
    assert records.fills[-1]["position"] == 0
    assert records.fills[-1]["realized_pnl"] == sell - buy


def test_a_strategy_naming_its_kinds_hears_only_those() -> None:
    engine, _ = run_alt(alt_settings("tests.unit.backtest.scripted:FundingOnly"))
    heard = engine.runners["alt"].strategy.heard  # type: ignore[attr-defined]
    assert [item for what, _, item in heard if what == "alt"] == [FUNDING_HIGH, FUNDING_LOW]
    assert engine.alt_wanted() == (("BTCUSDT",), ("funding",))


def test_alt_data_twice_give_the_same_records() -> None:
    first, second = run_alt(alt_settings()), run_alt(alt_settings())
    assert first[1] == second[1]
    assert first[0].runners["alt"].strategy.heard == second[0].runners["alt"].strategy.heard  # type: ignore[attr-defined]


def test_a_strategy_without_on_alt_wants_none_and_feed_needs_no_data() -> None:
    engine = BacktestEngine(settings(), settings().strategy.strategies, T0)
    assert engine.alt_wanted() is None
    assert engine.alt_runners == []
    engine.start([])
    feed(engine, TICKS)
    assert [f["side"] for f in engine.finish().fills] == [s for s, *_ in expected_fills()]


def test_a_strategy_that_raises_on_alt_data_stops_the_run_saying_when() -> None:
    engine = BacktestEngine(alt_settings(), alt_settings().strategy.strategies, T0)
    engine.start([])
    strategy = engine.runners["alt"].strategy

    def on_alt(datum: AltDatum) -> None:
        raise KeyError("oops")

    strategy.on_alt = on_alt  # type: ignore[method-assign]
    with pytest.raises(
        StrategyFailed, match=r"strategy alt \(.*AltTrader\) raised at .*T22:13:20.200000Z: on_alt: KeyError"
    ):
        feed(engine, ALT_TICKS, ALT)
