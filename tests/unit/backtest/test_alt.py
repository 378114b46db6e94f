"""Alternative data in a backtest, from a lake on disk: rows stored as sink-alt stores them come back to
``on_alt`` as the very messages, in event-time order with the ticks, only those a strategy can hear;
no table or no rows is a warning, not a failure; a strategy without ``on_alt`` never reads them."""

from __future__ import annotations

import json
from decimal import Decimal as D
from pathlib import Path
from typing import Any

import pyarrow.parquet as pq
import pytest

from trader.backtest import run as run_module
from trader.backtest.alt import AltRange, LakeAlt, alt_symbols
from trader.backtest.data import lake_table
from trader.backtest.engine import BacktestEngine, feed
from trader.backtest.run import BacktestRequest, run_backtest, strategies_for
from trader.config import Settings
from trader.messages import AltDatum, MarketTick, encode
from trader.runtime.consumer import Delivery
from trader.services.sink_alt import SinkAlt
from trader.stores.lake import ALT_DATA, MARKET_TICKS, Lake

T0 = 1_764_547_200_000  # 2025-12-01T00:00:00Z
DAY = 86_400_000
ALT_TRADER = "tests.unit.backtest.scripted:AltTrader"


def tick(at_ms: int, price: str) -> MarketTick:
    p = D(price)
    return MarketTick(
        timestamp=at_ms,
        exchange="mock",
        venue="mock",
        symbol="BTCUSDT",
        price=p,
        size=D(1),
        volume=D(1),
        bid=p - D("0.5"),
        ask=p + D("0.5"),
    )


# A tick every second from a minute before the start (the warm-up's) to 3 minutes after it, and one
# across midnight, the next day.
TICKS = [tick(T0 + i * 1000, str(60000 + i % 7)) for i in range(-60, 180)] + [tick(T0 + DAY + 500, "60010")]


def alt(at_ms: int, kind: str, value: str, symbol: str | None = "BTCUSDT-PERP", **more: Any) -> AltDatum:
    return AltDatum(timestamp=at_ms, kind=kind, source="binance", value=D(value), symbol=symbol, **more)


FUNDING = alt(
    T0 + 2_000,  # a tick's millisecond: after it
    "funding",
    "0.0001875391284828",
    unit="rate",
    venue_symbol="BTCUSDT",
    predicted=D("-0.0000125"),
    next_time=T0 + 8 * 3_600_000,
)
LIQUIDATION = alt(
    T0 + 2_000, "liquidation", "0.003", unit="BTC", price=D("94500.1"), side="sell"
)  # the same millisecond: stored after the funding, heard after it
MARK = alt(T0 + 5_250, "mark_price", "60003.5", "BTCUSDT")
HIGH = alt(T0 + 30_000, "funding", "0.001", unit="rate")  # the strategy sells 1
LOW = alt(T0 + 90_000, "funding", "-0.001", unit="rate")  # and buys it back
NEXT_DAY = alt(T0 + DAY + 100, "open_interest", "68744.761", unit="BTC")  # another dt partition
HEARD = [FUNDING, LIQUIDATION, MARK, HIGH, LOW]
# Never heard: before the start (the warm-up's minute: live reads none of the history), another
# symbol, no symbol, at the end (exclusive).
NOT_HEARD = [
    alt(T0 - 30_000, "funding", "0.9"),
    alt(T0 + 10_000, "funding", "0.9", "ETHUSDT-PERP"),
    alt(T0 + 11_000, "sentiment", "0.9", None),
    alt(T0 + 180_000, "funding", "0.9"),
]


def sink_rows(data: list[AltDatum], first_seq: int) -> list[tuple[Delivery, AltDatum]]:
    return [
        (Delivery(first_seq + i, d.timestamp + 40, f"alt.norm.{d.kind}", encode(d), None), d)
        for i, d in enumerate(data)
    ]


def write_alt(lake: Lake, batches: list[list[AltDatum]]) -> None:
    """As sink-alt writes: a commit per batch, its last stream sequence the version."""
    sink, seq = SinkAlt(lake.settings), 1
    for batch in batches:
        lake.append(
            ALT_DATA, sink.to_arrow(sink_rows(batch, seq)), app_id="sink-alt", version=seq + len(batch) - 1
        )
        seq += len(batch)


@pytest.fixture(scope="module")
def ticks_only(tmp_path_factory: pytest.TempPathFactory) -> str:
    root = str(tmp_path_factory.mktemp("lake"))
    Lake(Settings(lake_root=root)).append(MARKET_TICKS, lake_table(TICKS), app_id="test", version=1)
    return root


@pytest.fixture(scope="module")
def lake_root(tmp_path_factory: pytest.TempPathFactory) -> str:
    root = str(tmp_path_factory.mktemp("lake"))
    lake = Lake(Settings(lake_root=root))
    lake.append(MARKET_TICKS, lake_table(TICKS), app_id="test", version=1)
    # Three commits in stream order, not in event time (venues' latencies differ): the NEXT_DAY datum
    # first, the funding and the liquidation of one millisecond in that order.
    write_alt(
        lake,
        [
            [NEXT_DAY, NOT_HEARD[0], FUNDING],
            [LIQUIDATION, NOT_HEARD[1], MARK, NOT_HEARD[2]],
            [HIGH, LOW, NOT_HEARD[3]],
        ],
    )
    return root


def config(lake_root: str, kind: str = ALT_TRADER) -> Settings:
    strategy = {
        "name": "alt",
        "kind": kind,
        "symbols": ["BTCUSDT"],
        "params": {"threshold": "0.0005", "quantity": "1"},
    }
    return Settings(lake_root=lake_root, strategy={"strategies": [strategy]})


REQUEST = BacktestRequest(start_ms=T0, end_ms=T0 + 180_000, equity_interval_ms=10_000)


def heard_in_a_run(settings: Settings, request: BacktestRequest = REQUEST) -> list[tuple[str, int, Any]]:
    """What the strategy heard, through the run's own reading and merging."""
    engine = BacktestEngine(settings, strategies_for(settings, request), request.start_ms)
    _, data = run_module._alt_source(settings, engine, request)
    engine.start([])
    from trader.backtest.data import DataRange, LakeTicks

    feed(engine, LakeTicks(settings).ticks(DataRange(request.start_ms, request.end_ms, ("BTCUSDT",))), data)
    engine.finish()
    return engine.runners["alt"].strategy.heard  # type: ignore[attr-defined,no-any-return]


def test_stored_data_reach_on_alt_as_the_messages_live_gives_in_event_time_with_the_ticks(
    lake_root: str,
) -> None:
    heard = heard_in_a_run(config(lake_root))
    data = [item for what, _, item in heard if what == "alt"]
    assert data == HEARD  # every field equal: decimals, times, venue symbol, side
    assert [str(d.value) for d in data] == [str(d.value) for d in HEARD]  # as the feed wrote them
    assert str(data[0].predicted) == "-0.0000125"
    assert all(type(d) is AltDatum for d in data)
    order = [(what, item.timestamp) for what, _, item in heard]
    # Each datum right after the ticks of its millisecond and before the next tick.
    assert order[:5] == [
        ("tick", T0),
        ("tick", T0 + 1000),
        ("tick", T0 + 2000),
        ("alt", T0 + 2000),
        ("alt", T0 + 2000),
    ]
    for position, (what, at) in enumerate(order):
        if what == "alt":
            assert order[position - 1][1] <= at
            assert position + 1 == len(order) or order[position + 1][1] >= at
    assert [n for what, n, _ in heard if what == "alt"] == [d.timestamp for d in HEARD]  # the clock


def test_small_windows_give_the_same_data_in_the_same_order(lake_root: str) -> None:
    scope = AltRange(T0 - DAY, T0 + 2 * DAY, alt_symbols(["BTCUSDT"]))
    whole = list(LakeAlt(config(lake_root)).data(scope))
    assert whole == sorted([*HEARD, NEXT_DAY, NOT_HEARD[0], NOT_HEARD[3]], key=lambda d: d.timestamp)
    assert list(LakeAlt(config(lake_root), window_rows=1).data(scope)) == whole


def test_only_the_kinds_and_dates_asked_for_are_listed(lake_root: str) -> None:
    source = LakeAlt(config(lake_root))
    every = source.dataset(AltRange(T0, T0 + 180_000, ("BTCUSDT-PERP",)))
    funding = source.dataset(AltRange(T0, T0 + 180_000, ("BTCUSDT-PERP",), ("funding",)))
    assert every is not None
    assert funding is not None
    paths = [f.path for f in every.get_fragments()]
    assert all("dt=2025-12-01" in p for p in paths)  # the next day's file is not listed
    assert {p.split("kind=")[1].split("/")[0] for p in paths} == {
        "funding",
        "liquidation",
        "mark_price",
        "sentiment",
    }
    assert {f.path.split("kind=")[1].split("/")[0] for f in funding.get_fragments()} == {"funding"}


def test_a_strategy_naming_its_kinds_reads_and_hears_only_those(lake_root: str) -> None:
    heard = heard_in_a_run(config(lake_root, "tests.unit.backtest.scripted:FundingOnly"))
    assert [item for what, _, item in heard if what == "alt"] == [FUNDING, HIGH, LOW]


def test_a_run_trades_on_the_data_and_says_what_it_read(lake_root: str, tmp_path: Path) -> None:
    first = run_backtest(config(lake_root), REQUEST, tmp_path / "a")
    second = run_backtest(config(lake_root), REQUEST, tmp_path / "b")
    for name in ("fills.parquet", "orders.parquet", "equity.parquet", "run.json", "summary.json"):
        assert (first.out_dir / name).read_bytes() == (second.out_dir / name).read_bytes(), name
    fills = pq.read_table(first.out_dir / "fills.parquet").to_pylist()
    assert [(f["timestamp"], f["side"]) for f in fills] == [(HIGH.timestamp, "sell"), (LOW.timestamp, "buy")]
    info = json.loads((first.out_dir / "run.json").read_text())
    assert info["alt_data"] == {
        "strategies": ["alt"],
        "symbols": ["BTCUSDT", "BTCUSDT-PERP"],
        "kinds": "all",
        "table": f"{lake_root}/alt_data",
        "delta_version": 2,
        "data": 5,  # read: those heard (no other symbol's, none without one)
        "first": "2025-12-01T00:00:02Z",
        "last": "2025-12-01T00:01:30Z",
    }
    assert info["warnings"] == []
    assert first.warnings == []


@pytest.mark.parametrize("where", ["no table", "no rows in the range"])
def test_no_data_is_a_warning_in_the_report_and_the_run_goes_on(
    where: str, ticks_only: str, lake_root: str, tmp_path: Path
) -> None:
    root = ticks_only if where == "no table" else lake_root
    # The next day from after its open interest: a tick, and no datum.
    request = (
        REQUEST if where == "no table" else BacktestRequest(start_ms=T0 + DAY + 200, end_ms=T0 + DAY + 1000)
    )
    result = run_backtest(config(root), request, tmp_path / "run")
    [warning] = result.warnings
    assert warning.startswith("no alternative data: alt takes it (on_alt), but of BTCUSDT, BTCUSDT-PERP from")
    assert ("there is no Delta table at" in warning) == (where == "no table")
    assert ("(version 2) has none" in warning) == (where != "no table")
    info = json.loads((result.out_dir / "run.json").read_text())
    assert info["warnings"] == [warning]
    assert info["alt_data"]["data"] == 0
    assert "warning:" in (result.out_dir / "report.html").read_text()


def test_a_strategy_without_on_alt_never_opens_the_table(
    lake_root: str, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    def refuse(*args: object, **kwargs: object) -> None:
        raise AssertionError("alt_data opened for a run that takes none")

    monkeypatch.setattr(run_module, "LakeAlt", refuse)
    settings = config(lake_root, "tests.unit.backtest.scripted:Scripted")
    settings.strategy.strategies[0].params = {"script": "1:buy:market:1"}
    result = run_backtest(settings, REQUEST, tmp_path / "run")
    info = json.loads((result.out_dir / "run.json").read_text())
    assert info["alt_data"] is None
    assert info["warnings"] == []
