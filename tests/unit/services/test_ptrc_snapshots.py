"""ptrc's snapshots: for any history of fills and a snapshot taken at any point, the snapshot plus the
fills after it give exactly the state of a full replay (and a repeat stays a repeat)."""

from __future__ import annotations

from decimal import Decimal as D

import msgspec
from hypothesis import given, settings
from hypothesis import strategies as st

from trader.messages import ExecutionReport
from trader.orders.retention import IDS_WINDOW_MS
from trader.portfolio import PositionTracker
from trader.runtime.snapshots import decode_record, encode_record
from trader.services.ptrc import STATE_VERSION, PtrcState, apply_report, new_tracker, state_of, tracker_of


@st.composite
def fills(draw: st.DrawFn) -> list[ExecutionReport]:
    count = draw(st.integers(0, 40))
    out = []
    for n in range(count):
        # Now and then a repeat of an earlier fill (same exec id): applied once, whichever side of the
        # snapshot each copy falls.
        if out and draw(st.integers(0, 9)) == 0:
            out.append(draw(st.sampled_from(out)))
            continue
        out.append(
            ExecutionReport(
                exec_id=f"e{n}",
                kind="fill",
                client_order_id=f"o{n}",
                strategy=draw(st.sampled_from(["s1", "s2"])),
                account=draw(st.sampled_from(["a", "b"])),
                venue="paper",
                symbol=draw(st.sampled_from(["BTCUSDT", "ETHUSDT"])),
                side=draw(st.sampled_from(["buy", "sell"])),
                last_quantity=draw(st.decimals(D("0.001"), D(5), places=3)),
                last_price=draw(st.decimals(D(1), D(1000), places=2)),
                fee=draw(st.decimals(D(-1), D(1), places=4)),
                timestamp=n,
            )
        )
    return out


def _replayed(reports: list[ExecutionReport], tracker: PositionTracker | None = None) -> PositionTracker:
    tracker = tracker or PositionTracker()
    for report in reports:
        apply_report(tracker, report)
    return tracker


def _state(tracker: PositionTracker) -> tuple[list, set[str]]:
    state = state_of(tracker)
    key = lambda p: (p.account, p.venue, p.symbol, p.strategy or "")  # noqa: E731
    return sorted(state.positions, key=key), set(state.exec_ids)


@settings(max_examples=200, deadline=None)
@given(history=fills(), data=st.data())
def test_a_snapshot_plus_the_tail_is_a_full_replay(
    history: list[ExecutionReport], data: st.DataObject
) -> None:
    at = data.draw(st.integers(0, len(history)))
    stored = encode_record(state_of(_replayed(history[:at])), {"EXEC": at}, STATE_VERSION, 0)
    loaded = decode_record(stored, PtrcState, STATE_VERSION)
    assert loaded.covers == {"EXEC": at}
    resumed = _replayed(history[at:], tracker_of(loaded.state))
    full = _replayed(history)
    assert _state(resumed) == _state(full)
    # And both take what comes next the same way: a repeat of any fill is nothing.
    for report in history:
        assert apply_report(resumed, report) == []


@settings(max_examples=200, deadline=None)
@given(history=fills(), spacing=st.sampled_from([1, IDS_WINDOW_MS // 7, IDS_WINDOW_MS // 2]), data=st.data())
def test_with_exec_ids_kept_for_a_window_a_snapshot_plus_the_tail_is_a_full_replay(
    history: list[ExecutionReport], spacing: int, data: st.DataObject
) -> None:
    """ptrc's tracker keeps the exec ids of the fills of a window before the latest (by their times):
    what it keeps is the same whether it was snapshotted along the way or not, and a repeat within the
    window is nothing."""
    history = [msgspec.structs.replace(r, timestamp=r.timestamp * spacing) for r in history]
    at = data.draw(st.integers(0, len(history)))
    stored = encode_record(state_of(_replayed(history[:at], new_tracker())), {"EXEC": at}, STATE_VERSION, 0)
    loaded = decode_record(stored, PtrcState, STATE_VERSION)
    resumed = _replayed(history[at:], tracker_of(loaded.state))
    full = _replayed(history, new_tracker())
    assert _state(resumed) == _state(full)
    assert _kept(resumed) == _kept(full)
    latest = max((r.timestamp for r in history), default=0)
    kept = set(state_of(full).exec_ids)
    assert kept == {r.exec_id for r in history if r.timestamp >= latest - IDS_WINDOW_MS}
    for report in history:
        if report.exec_id in kept:
            assert apply_report(resumed, report) == []


def _kept(tracker: PositionTracker) -> list[tuple[str, int]]:
    state = state_of(tracker)
    return sorted(zip(state.exec_ids, state.exec_times, strict=True))
