"""spread-analyzer's wiring: each venue's taker fee from the settings, the messages' subjects and ids,
the rows of QuestDB's spreads, and what a restart publishes of the ticks it applies again."""

from __future__ import annotations

from decimal import Decimal
from types import SimpleNamespace

from trader.analytics.spreads import SpreadEngine
from trader.bus.publish import Outgoing
from trader.config import Settings, VenueConfig
from trader.messages import MarketTick
from trader.services.spread_analyzer import (
    SpreadAnalyzer,
    engine_config,
    opportunity_message,
    snapshot_message,
)
from trader.stores.spreads import _row, spreads_table_ddl

T0 = 1_764_720_000_000


def _tick(venue: str, bid: str, ask: str, at: int) -> MarketTick:
    b = Decimal(bid)
    return MarketTick(
        timestamp=T0 + at,
        exchange=venue,
        venue=venue,
        symbol="BTCUSDT",
        price=b,
        size=Decimal(1),
        volume=Decimal(1),
        bid=b,
        ask=Decimal(ask),
    )


def test_each_venue_takes_its_fee_from_the_first_place_that_names_it() -> None:
    settings = Settings(
        spread_analyzer={"taker_fee_bps": {"kraken": "16"}},
        exeq={"venues": {"paper": {}, "binance": VenueConfig(kind="ccxt", taker_fee_bps=Decimal("7.5"))}},
        live_gateway={"venues": {"binance": {"symbols": ["BTCUSDT"]}, "okx": {"symbols": ["BTC-USDT"]}}},
    )
    fees = engine_config(settings).fees_bps
    assert fees["kraken"] == Decimal(16)  # spread_analyzer.taker_fee_bps
    assert fees["binance"] == Decimal("7.5")  # the exeq venue trading on binance's quotes
    assert fees["mock"] == settings.exeq.paper.taker_fee_bps  # the paper venue trades the mock quotes
    assert fees["mock-b"] == Decimal(2)  # a mock venue's own (gateway.venues)
    assert fees["okx"] == Decimal(10)  # the base tier
    assert engine_config(settings).fee_bps("elsewhere") == settings.spread_analyzer.default_taker_fee_bps


def test_messages_go_on_their_subjects_with_ids_from_their_identity() -> None:
    engine = SpreadEngine(engine_config(Settings()))
    engine.on_tick(_tick("mock", "100.00", "100.01", 0), seq=7)
    out = engine.on_tick(_tick("mock-b", "101.00", "101.01", 1), seq=8)
    assert out.snapshot is not None
    snap = snapshot_message(out.snapshot)
    assert (snap.subject, snap.msg_id) == ("market.spread.BTCUSDT", "BTCUSDT:8")
    [opened] = out.events
    event = opportunity_message(opened)
    assert event.subject == "market.spread.BTCUSDT.opportunity"
    assert event.msg_id == "BTCUSDT:mock:mock-b:open:8"


def test_rows_of_samples_and_events() -> None:
    engine = SpreadEngine(engine_config(Settings()))
    engine.on_tick(_tick("mock", "100.00", "100.01", 0), seq=1)
    out = engine.on_tick(_tick("mock-b", "101.00", "101.01", 1), seq=2)
    assert out.sample is not None
    symbols, columns = _row(out.sample)
    assert symbols["kind"] == "sample"
    assert (symbols["buy_venue"], symbols["sell_venue"]) == ("mock", "mock-b")
    assert columns["best_bid"] == Decimal("101.00")
    assert columns["venues"] == 2
    assert columns["source_seq"] == 2
    symbols, columns = _row(out.events[0])
    assert (symbols["kind"], columns["net_bps"]) == ("open", out.events[0].net_bps.quantize(Decimal("1e-18")))
    assert "DEDUP UPSERT KEYS(ts, symbol, kind, buy_venue, sell_venue, source_seq)" in spreads_table_ddl()


def _replaying(published: dict[str, int]) -> SpreadAnalyzer:
    service = SpreadAnalyzer(Settings())
    service._published, service._stash = published, {}
    # snapshot_problem: why no state snapshot was restored (a first start: "no snapshot")
    service.intake = SimpleNamespace(  # type: ignore[assignment]
        caught_up=False, replay_to=100, snapshot_problem="no snapshot"
    )
    return service


def test_a_replay_keeps_what_the_bus_lacks_and_only_that() -> None:
    snap, event = "market.spread.BTCUSDT", "market.spread.BTCUSDT.opportunity"
    service = _replaying({snap: 50, event: 60})
    for seq in (40, 55, 70):
        service._keep_replayed(seq, [Outgoing(snap, b"s", f"s{seq}"), Outgoing(event, b"e", f"e{seq}")])
    assert [o.msg_id for _, o in service._stash[snap]] == ["s55", "s70"]
    assert [o.msg_id for _, o in service._stash[event]] == ["e70"]
    # A subject never published (a first start): its events are kept, past snapshots are not.
    first = _replaying({})
    first._keep_replayed(5, [Outgoing(snap, b"s", "s5"), Outgoing(event, b"e", "e5")])
    assert list(first._stash) == [event]
    # After a restored snapshot every output past what the bus holds is kept, new subjects' too.
    restored = _replaying({})
    restored.intake.snapshot_problem = None  # type: ignore[union-attr]
    restored._keep_replayed(5, [Outgoing(snap, b"s", "s5"), Outgoing(event, b"e", "e5")])
    assert sorted(restored._stash) == [snap, event]
