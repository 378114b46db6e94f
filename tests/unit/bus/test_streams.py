from __future__ import annotations

from nats.js.api import DiscardPolicy, RetentionPolicy, StorageType

from trader.bus.dlq import ORIGINAL_MSG_ID, REASON, SERVICE, SUBJECT, dead_letter
from trader.bus.publish import MSG_ID
from trader.bus.streams import STREAMS, STREAMS_BY_NAME, history_room, stream_config
from trader.config import Settings


def test_market_streams_keep_the_earlier_contract() -> None:
    settings = Settings()
    ticks = stream_config(STREAMS_BY_NAME["MARKET_TICKS"], settings)
    alt = stream_config(STREAMS_BY_NAME["ALT_DATA"], settings)
    assert ticks.subjects == ["market.tick.>"]
    assert alt.subjects == ["alt.norm.>"]
    for cfg in (ticks, alt):
        assert cfg.storage == StorageType.FILE
        assert cfg.retention == RetentionPolicy.LIMITS
        assert cfg.discard == DiscardPolicy.OLD
        assert cfg.max_age == 24 * 3600


def test_max_age_is_configurable_and_trading_history_is_not_aged_out() -> None:
    settings = Settings(stream_max_age_s=3600)
    assert stream_config(STREAMS_BY_NAME["MARKET_TICKS"], settings).max_age == 3600
    for trading in ("ORDERS", "EXEC", "POSITIONS"):
        assert stream_config(STREAMS_BY_NAME[trading], settings).max_age == 0


def test_pnl_snapshots_made_every_second_whatever_the_trading_are_kept_a_week() -> None:
    assert stream_config(STREAMS_BY_NAME["PNL"], Settings()).max_age == 7 * 24 * 3600


def test_market_data_has_budgets_and_leaves_the_trading_history_at_least_40_percent() -> None:
    settings = Settings(jetstream_max_file_store_bytes=10_000_000)
    budgets = {spec.name: stream_config(spec, settings).max_bytes for spec in STREAMS}
    assert budgets["MARKET_TICKS"] == 4_000_000
    history = ("ORDERS", "EXEC", "POSITIONS", "OPERATOR")  # OPERATOR: the audit of operator actions
    for trading in history:
        assert budgets[trading] == -1  # never dropped to make room
    others = [b for name, b in budgets.items() if name not in history]
    assert all(b > 0 for b in others)
    assert sum(others) <= 6_000_000
    assert history_room(settings) == 10_000_000 - sum(others)


def test_stream_subjects_do_not_overlap() -> None:
    roots = [s.subjects[0].removesuffix(">") for s in STREAMS_BY_NAME.values()]
    for a in roots:
        for b in roots:
            assert a == b or not a.startswith(b), (a, b)


def test_dead_letter_keeps_the_original_and_says_why() -> None:
    original = b'{"price": "NaN"}'
    out = dead_letter(
        service="normalizer",
        subject="market.tick.BTCUSDT",
        data=original,
        headers={MSG_ID: "mock:BTCUSDT:1", "X-Other": "v"},
        reason="price: must be\na finite number",
        stream="MARKET_TICKS",
        stream_seq=42,
    )
    assert out.payload == original
    assert out.subject == "dlq.normalizer.market.tick.BTCUSDT"
    headers = out.all_headers() or {}
    assert headers[REASON] == "price: must be a finite number"
    assert headers[SERVICE] == "normalizer"
    assert headers[SUBJECT] == "market.tick.BTCUSDT"
    assert headers[ORIGINAL_MSG_ID] == "mock:BTCUSDT:1"
    assert headers["X-Other"] == "v"
    assert headers[MSG_ID] == "normalizer:MARKET_TICKS:42"
