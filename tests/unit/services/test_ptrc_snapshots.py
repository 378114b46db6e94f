"""ptrc's snapshots: for any history of fills and a snapshot taken at any point, the snapshot plus the
fills after it give exactly the state of a full replay (and a repeat stays a repeat)."""

from __future__ import annotations

from decimal import Decimal as D

from hypothesis import given, settings
from hypothesis import strategies as st

from trader.messages import ExecutionReport
from trader.portfolio import PositionTracker
from trader.runtime.snapshots import decode_record, encode_record
from trader.services.ptrc import STATE_VERSION, PtrcState, apply_report, state_of, tracker_of


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
