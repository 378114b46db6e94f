"""Duplicates, gaps and late trades, per venue and symbol."""

from __future__ import annotations

from decimal import Decimal

from hypothesis import given
from hypothesis import strategies as st

from trader.marketdata.feeds.base import Trade
from trader.marketdata.feeds.tracker import TradeTracker


def trade(seq: int, ts: int = 1_700_000_000_000, span: int = 1, trade_id: str | None = None) -> Trade:
    return Trade("BTCUSDT", trade_id or str(seq), Decimal("1"), Decimal("1"), "buy", ts, seq=seq, span=span)


def test_consecutive_ids_are_new_and_a_replay_is_a_duplicate() -> None:
    tracker = TradeTracker(contiguous=True)
    assert [tracker.accept(trade(s))[0] for s in (10, 11, 12)] == [True, True, True]
    assert tracker.accept(trade(11)) == (False, None)
    assert tracker.duplicates == 1
    assert tracker.gaps == []


def test_a_jump_opens_a_gap_that_starts_after_the_last_trade_time() -> None:
    tracker = TradeTracker(contiguous=True)
    tracker.accept(trade(10, ts=1_000))
    new, gap = tracker.accept(trade(14, ts=2_000))
    assert new
    assert gap is not None
    assert (gap.first, gap.last, gap.missing, gap.after_ts) == (11, 13, {11, 12, 13}, 1_000)


def test_a_late_trade_fills_its_gap_and_a_healed_gap_is_no_event() -> None:
    tracker = TradeTracker(contiguous=True)
    tracker.accept(trade(1), now=0.0)
    tracker.accept(trade(3), now=0.0)
    assert tracker.due_gaps(grace_s=1.0, now=0.5) == ([], [])  # still within the grace period
    assert tracker.accept(trade(2))[0]
    assert not tracker.accept(trade(2))[0]  # once only
    due, healed = tracker.due_gaps(grace_s=1.0, now=1.5)
    assert due == []
    assert [(g.first, g.last) for g in healed] == [(2, 2)]
    assert tracker.gaps == []


def test_a_gap_still_open_after_the_grace_is_due_once() -> None:
    tracker = TradeTracker(contiguous=True)
    tracker.accept(trade(1), now=0.0)
    tracker.accept(trade(5), now=0.0)
    tracker.accept(trade(3))
    due, _ = tracker.due_gaps(grace_s=1.0, now=1.0)
    assert [(g.first, g.last, g.missing) for g in due] == [(2, 4, {2, 4})]
    assert tracker.due_gaps(grace_s=1.0, now=2.0) == ([], [])
    tracker.close_gap(due[0])
    assert not tracker.is_missing(2)


def test_aggregated_trades_cover_their_span_of_ids() -> None:
    tracker = TradeTracker(contiguous=True)
    tracker.accept(trade(7))
    assert tracker.accept(trade(10, span=3)) == (True, None)  # 8, 9, 10: nothing missing
    new, gap = tracker.accept(trade(20, span=2))  # 19, 20: 11..18 missing
    assert new
    assert gap is not None
    assert (gap.first, gap.last) == (11, 18)
    # REST gives the single fills; a replay of an aggregate over them is a duplicate.
    assert all(tracker.accept(trade(s))[0] for s in range(11, 19))
    assert tracker.accept(trade(18, span=2)) == (False, None)


def test_a_heartbeats_last_trade_id_shows_a_gap_without_a_trade() -> None:
    tracker = TradeTracker(contiguous=True)
    assert tracker.observe_last_id(5) is None  # nothing seen yet: no reference
    tracker.accept(trade(5))
    assert tracker.observe_last_id(5) is None
    gap = tracker.observe_last_id(8)
    assert gap is not None
    assert gap.missing == {6, 7, 8}
    assert tracker.accept(trade(8))[0]  # the trade the heartbeat announced, arriving late, counts
    assert tracker.accept(trade(9)) == (True, None)


def test_a_huge_gap_wants_at_most_the_fill_limit() -> None:
    tracker = TradeTracker(contiguous=True, max_missing=10)
    tracker.accept(trade(0))
    _, gap = tracker.accept(trade(1001))
    assert gap is not None
    assert (gap.size, gap.missing) == (1000, set(range(1, 11)))


def test_without_per_symbol_ids_duplicates_are_told_by_recent_ids() -> None:
    tracker = TradeTracker(contiguous=False, recent_size=3)
    ids = ["a", "b", "c"]
    assert [tracker.accept(trade(0, trade_id=i))[0] for i in ids] == [True, True, True]
    assert tracker.accept(trade(0, trade_id="b")) == (False, None)
    tracker.accept(trade(0, trade_id="d"))  # "a" leaves the window
    assert tracker.accept(trade(0, trade_id="a"))[0]
    assert tracker.gaps == []


def test_state_survives_a_restart() -> None:
    tracker = TradeTracker(contiguous=True)
    tracker.accept(trade(41, ts=5))
    restarted = TradeTracker(contiguous=True)
    restarted.restore(tracker.state())
    assert restarted.accept(trade(41, ts=5)) == (False, None)
    _, gap = restarted.accept(trade(44, ts=9))
    assert gap is not None
    assert (gap.first, gap.last, gap.after_ts) == (42, 43, 5)


@given(
    st.integers(min_value=1, max_value=60).flatmap(
        lambda n: st.tuples(
            st.just(n),
            st.lists(
                st.integers(min_value=0, max_value=n - 1), max_size=2 * n
            ),  # delivered (any order, repeats)
        )
    )
)
def test_every_id_from_the_first_seen_on_is_accepted_exactly_once(case: tuple[int, list[int]]) -> None:
    """Whatever the websocket delivers (out of order, repeated, with holes), the stream plus the REST
    fill of the gaps it reports yields each id at or after the first one seen exactly once."""
    _, delivered = case
    tracker = TradeTracker(contiguous=True)
    accepted: list[int] = []
    for seq in delivered:
        if tracker.accept(trade(seq))[0]:
            accepted.append(seq)
    for gap in list(tracker.gaps):  # the REST fill: every id of the gap, those already there included
        for seq in range(gap.first, gap.last + 1):
            if tracker.accept(trade(seq))[0]:
                accepted.append(seq)
        tracker.close_gap(gap)
    assert len(accepted) == len(set(accepted))
    if delivered:
        # What came before the first trade seen is history the feed did not start from.
        assert set(accepted) == set(range(delivered[0], max(delivered) + 1))
