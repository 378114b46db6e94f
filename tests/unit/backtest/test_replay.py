"""The replay engine (trader.backtest.replay): pacing on a fake clock, what a replayed tick becomes on
the bus, its identity per run, the speed option and progress; the lake reader's venue filter it uses;
and a paper strategy pointed at a replay venue."""

from __future__ import annotations

import re
from decimal import Decimal
from pathlib import Path

import msgspec
import pytest

from trader.backtest.data import DataRange, LakeTicks, lake_table
from trader.backtest.replay import Pacer, Progress, new_run_id, parse_speed, replay_message
from trader.config import Settings
from trader.messages import MarketTick
from trader.stores.lake import MARKET_TICKS, Lake

T0 = 1_795_600_000_000


def tick(ts: int, venue: str = "mock", symbol: str = "BTCUSDT", trade_id: str | None = "7") -> MarketTick:
    return MarketTick(
        timestamp=ts,
        exchange="mock",
        venue=venue,
        symbol=symbol,
        price=Decimal("60000.5"),
        size=Decimal("0.01"),
        volume=Decimal("0.01"),
        bid=Decimal("60000.4"),
        ask=Decimal("60000.6"),
        side="buy",
        trade_id=trade_id,
        source_seq=3,
    )


class FakeClock:
    def __init__(self) -> None:
        self.now = 1_000.0

    def sleep(self, seconds: float) -> None:
        self.now += seconds


@pytest.mark.parametrize("speed", [1.0, 10.0, 0.5])
def test_each_tick_is_due_its_event_time_after_the_first_divided_by_the_speed(speed: float) -> None:
    clock, pacer = FakeClock(), Pacer(speed)
    published: list[tuple[int, float]] = []
    for event_ms in [T0, T0 + 250, T0 + 250, T0 + 1_000, T0 + 61_000]:
        clock.sleep(pacer.wait_s(event_ms, clock.now))
        published.append((event_ms, clock.now))
    for event_ms, at in published:
        assert at == pytest.approx(1_000.0 + (event_ms - T0) / 1000 / speed)


def test_a_publisher_slower_than_the_pace_never_waits_and_catches_up() -> None:
    clock, pacer = FakeClock(), Pacer(10.0)
    assert pacer.wait_s(T0, clock.now) == 0
    clock.sleep(5.0)  # publishing took 5 s: ticks due before now go at once
    assert pacer.wait_s(T0 + 20_000, clock.now) == 0  # due at +2 s
    assert pacer.wait_s(T0 + 60_000, clock.now) == pytest.approx(1.0)  # due at +6 s
    assert pacer.wait_s(T0 - 5_000, clock.now) == 0  # out of order: at once


def test_speed_zero_never_waits() -> None:
    pacer = Pacer(0.0)
    assert [pacer.wait_s(T0 + d, 0.0) for d in (0, 10**6, 10**9)] == [0.0, 0.0, 0.0]


def test_the_speed_option() -> None:
    assert parse_speed("max") == 0.0
    assert parse_speed("0") == 0.0
    assert parse_speed("10") == 10.0
    assert parse_speed("0.5") == 0.5
    for bad in ("-1", "fast", "inf", "nan"):
        with pytest.raises(ValueError, match="--speed"):
            parse_speed(bad)


def test_a_replayed_tick_is_the_stored_one_under_its_replay_venue_with_the_run_in_its_id() -> None:
    original = tick(T0)
    out = replay_message(original, 41, "run-a")
    assert out.subject == "market.tick.replay-mock.BTCUSDT"
    replayed = msgspec.json.decode(out.payload, type=MarketTick)
    assert replayed == msgspec.structs.replace(original, venue="replay-mock")  # event time, values kept
    assert out.msg_id == "replay:run-a:mock:BTCUSDT:7"
    assert replay_message(original, 41, "run-a").msg_id == out.msg_id  # a retry: the same id
    assert replay_message(original, 41, "run-b").msg_id != out.msg_id  # another run: another id
    # Without a trade id, the event time and the lake's stream sequence name it.
    assert replay_message(tick(T0, trade_id=None), 41, "r").msg_id == f"replay:r:mock:BTCUSDT:{T0}:41"
    assert replay_message(tick(T0, trade_id=None), 42, "r").msg_id != f"replay:r:mock:BTCUSDT:{T0}:41"


def test_run_ids_sort_by_start_and_do_not_repeat() -> None:
    ids = [new_run_id(T0) for _ in range(50)]
    assert len(set(ids)) == 50
    assert all(re.fullmatch(r"20261125T094640-[0-9a-f]{6}", i) for i in ids), ids[0]
    assert new_run_id(T0) < new_run_id(T0 + 1_000)


def test_progress_counts_acknowledgements_and_the_share_of_the_range() -> None:
    p = Progress(T0, T0 + 10_000, total=4, started_s=100.0)
    assert p.range_fraction() == 0.0
    p.acked(T0 + 2_499, duplicate=False)
    p.acked(T0 + 4_999, duplicate=True)
    assert (p.acknowledged, p.stored, p.duplicates) == (2, 1, 1)
    assert p.range_fraction() == pytest.approx(0.5)
    line = p.line(102.0)
    assert line.startswith("2 of 4 ticks, 50.0% of the range (at ")
    assert line.endswith(", 1 ticks/s")


def test_the_reader_keeps_the_venues_asked_for_and_leaves_replay_venues_out(tmp_path: Path) -> None:
    root = str(tmp_path / "lake")
    ticks = [tick(T0 + i, venue=("mock", "mock-b", "replay-mock")[i % 3], trade_id=str(i)) for i in range(30)]
    Lake(Settings(lake_root=root)).append(MARKET_TICKS, lake_table(ticks), app_id="t", version=1)
    source = LakeTicks(Settings(lake_root=root))

    def read(data: DataRange) -> list[tuple[str, int]]:
        return [
            (t.venue, seq)
            for batch, seqs in source.batches_with_seq(data)
            for t, seq in zip(batch, seqs, strict=True)
        ]

    everything = DataRange(T0, T0 + 30, ())
    assert len(read(everything)) == 30
    kept = read(DataRange(T0, T0 + 30, (), skip_replays=True))
    assert [v for v, _ in kept] == ["mock", "mock-b"] * 10
    assert [s for _, s in kept] == [i + 1 for i in range(30) if i % 3 != 2]  # stream sequences, in order
    assert {v for v, _ in read(DataRange(T0, T0 + 30, (), venues=("mock-b",)))} == {"mock-b"}
    assert source.count(DataRange(T0, T0 + 30, (), venues=("mock",))) == 10


def test_a_paper_strategy_may_take_a_replay_venue_as_its_data_venue_a_live_one_may_not() -> None:
    settings = Settings()
    strategy = settings.strategy.strategies[0]
    assert settings.strategy_venue_problem(strategy.model_copy(update={"data_venue": "replay-mock"})) is None
    unknown = settings.strategy_venue_problem(strategy.model_copy(update={"data_venue": "replay-nowhere"}))
    assert unknown is not None
    assert "no market-data source" in unknown
    live = Settings(
        exeq={"venues": {"paper": {}, "binance": {"kind": "ccxt"}}},
        routing={"venues": {"*": ["paper", "binance"]}},
    )
    on_live = strategy.model_copy(update={"venue": "binance", "data_venue": "replay-mock"})
    assert live.strategy_venue_problem(on_live) == (
        "strategy ma-cross-btc trades the live venue 'binance': it cannot take replayed data ('replay-mock')"
    )
