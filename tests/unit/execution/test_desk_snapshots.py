"""exeq's desk from snapshots: for any history of venue orders, cancels, replaces, ticks, algos (TWAP and
iceberg parents, driven on their clock) and forgetting, a snapshot of the live desk taken whenever it is
settled (an algo working too), plus the stream after what it covers, gives exactly what a replay of the
whole stream gives: the same state, algos included, and the same restore (what it sends again to the
venue and publishes)."""

from __future__ import annotations

from decimal import Decimal as D
from typing import Any

import msgspec
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from trader.execution.desk import DeskState, ExecutionDesk
from trader.messages import VenueOrder
from trader.runtime.snapshots import decode_record, encode_record

from .test_desk import T0, Harness, order, tick

VERSION = 1
COIDS = ["o1", "o2", "o3", "o4", "p1", "p2"]

steps = st.lists(
    st.one_of(
        st.tuples(st.just("tick"), st.integers(95, 105), st.integers(1, 3)),
        st.tuples(
            st.just("new"),
            st.sampled_from(COIDS),
            st.sampled_from(["market", "limit"]),
            st.sampled_from(["buy", "sell"]),
            st.integers(1, 3),
            st.integers(95, 105),
        ),
        st.tuples(st.just("cancel"), st.sampled_from([*COIDS, "never"])),
        st.tuples(st.just("replace"), st.sampled_from(COIDS), st.integers(1, 4), st.integers(95, 105)),
        st.tuples(st.just("later"), st.integers(1, 50)),
        st.tuples(st.just("forget"), st.integers(0, 60), st.integers(0, 60)),
        st.tuples(
            st.just("algo"),
            st.sampled_from(["p1", "p2"]),
            st.sampled_from(["twap", "iceberg"]),
            st.sampled_from(["market", "limit"]),
            st.integers(2, 5),
            st.integers(95, 105),
        ),
        st.tuples(st.just("drive"), st.integers(1, 400)),
    ),
    max_size=30,
)


async def _live(history: list[tuple[Any, ...]]) -> tuple[Harness, list[tuple[bytes, int]]]:
    """The live desk through ``history``; a snapshot (encoded, as stored) after every step at which it
    is settled, with how much of its stream it covers."""
    h = Harness()
    snapshots: list[tuple[bytes, int]] = []
    gone: set[str] = set()  # keys dropped: a message about one past the window is not in a history
    for step in history:
        kind = step[0]
        if kind in ("new", "cancel", "replace", "algo") and step[1] in gone:
            continue
        if await h.play(step):
            pass
        elif kind == "later":
            h.now += step[1]
        else:  # forget: what ended before a cutoff leaves, and the keys of what ended before another
            forget_at, drop_at = T0 + step[1], T0 + min(step[1], step[2])
            h.desk.forget_ended(forget_at)
            held = {vcid for _, vcid in h.desk._forgotten}
            h.desk.drop_forgotten(drop_at)
            gone |= held - {vcid for _, vcid in h.desk._forgotten}
        assert h.desk.snapshottable  # no turn under way: it always is here, an algo working or not
        snapshots.append(
            (encode_record(h.desk.snapshot(), {"EXEC": len(h.stream)}, VERSION, 0), len(h.stream))
        )
    return h, snapshots


def _replayed(h: Harness, start: int, state: DeskState | None = None) -> Harness:
    """A desk rebuilt from ``h``'s stream after ``start``, from ``state`` (a snapshot covering up to
    ``start``) or from nothing; its clock is ``h``'s now, and what it publishes goes onto its own copy
    of the stream (compared after the restore)."""
    fresh = Harness(list(h.stream))
    fresh.now = h.now
    if state is not None:
        fresh.desk.restore_snapshot(state)
    for item in h.stream[start:]:
        fresh.desk.replay(item.subject, item.payload)
    return fresh


def _whole(desk: ExecutionDesk) -> tuple[object, ...]:
    state = desk.snapshot()
    return (
        sorted((held.venue, held.venue_client_id, held.tracked) for held in state.orders),
        sorted(state.numbers),
        sorted(state.ended),
        sorted(state.forgotten),
        sorted(state.last_fill_ms),
        sorted(state.cancels),
        sorted(desk._top_level.items()),
        desk.open_orders(),
        sorted((key, algo.state()) for key, algo in desk.algos.items()),
        sorted(desk._paused),
    )


@settings(max_examples=200, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(history=steps, data=st.data())
async def test_a_snapshot_plus_the_tail_is_a_full_replay(
    history: list[tuple[Any, ...]], data: st.DataObject
) -> None:
    live, snapshots = await _live(history)
    if not snapshots:
        return
    stored, covers = data.draw(st.sampled_from(snapshots))
    loaded = decode_record(stored, DeskState, VERSION)
    assert loaded.covers == {"EXEC": covers}
    resumed = _replayed(live, covers, loaded.state)
    full = _replayed(live, 0)
    # Once caught up: the same restore (what the live desk forgot had ended: a restore passes it
    # over), then the same forgetting, at or after every live one.
    published = len(live.stream)
    for h in (resumed, full):
        await h.desk.restore()
    assert resumed.stream[published:] == full.stream[published:]
    forget_at = T0 + data.draw(st.integers(60, 120))
    drop_at = data.draw(st.integers(T0 + 60, forget_at))
    for h in (resumed, full):
        h.desk.forget_ended(forget_at)
        h.desk.drop_forgotten(drop_at)
    assert _whole(resumed.desk) == _whole(full.desk)


async def test_a_snapshot_taken_while_an_algo_works_resumes_it_where_it_was() -> None:
    h = Harness()
    await h.tick(tick("100", "101"))
    await h.send(order("p1", quantity="1", algo="twap", duration_s="1", slices="4"))
    h.now = T0 + 250
    await h.desk.drive_algos()  # two of the four children released and filled
    assert sorted(h.desk.algos[("paper", "p1")].children) == ["p1.1", "p1.2"]
    assert h.desk.snapshottable
    stored = encode_record(h.desk.snapshot(), {"EXEC": len(h.stream)}, VERSION, 0)
    covers = len(h.stream)
    h.now = T0 + 500
    await h.desk.drive_algos()  # the third, after the snapshot: in the tail
    resumed = _replayed(h, covers, decode_record(stored, DeskState, VERSION).state)
    full = _replayed(h, 0)
    assert _whole(resumed.desk) == _whole(full.desk)
    published = len(h.stream)
    for r in (resumed, full):  # restarted: the algo goes on once its symbol has a tick again
        await r.desk.restore()
        await r.tick(tick("100", "101", ts=T0 + 600))
        r.now = T0 + 1_000
        await r.desk.drive_algos()
    assert resumed.stream[published:] == full.stream[published:]
    children = [
        msgspec.json.decode(i.payload, type=VenueOrder).venue_client_id
        for i in resumed.stream
        if i.subject.startswith("exec.algo.order.")
    ]
    assert children == ["p1.1", "p1.2", "p1.3", "p1.4"]  # none released twice
    assert resumed.desk.algos == full.desk.algos == {}
    assert _whole(resumed.desk) == _whole(full.desk)
    assert sum(f.last_quantity for f in resumed.fills() if f.client_order_id == "p1") == D(1)
    assert resumed.desk.orders[("paper", "p1")].ended


async def test_a_repeat_of_a_forgotten_order_after_the_snapshot_is_not_tracked_again() -> None:
    # Found by the property above: the order ended, was forgotten, the snapshot kept its key, then a
    # second copy of its "new" was stored. Live ignores it; the replay of the tail must too.
    history = [
        ("new", "o1", "market", "buy", 1, 95),
        ("cancel", "o1"),
        ("forget", 1, 0),
        ("new", "o1", "market", "buy", 1, 95),
    ]
    live, snapshots = await _live(history)
    stored, covers = snapshots[-2]  # after the forget, before the repeat
    assert covers < len(live.stream)
    resumed = _replayed(live, covers, decode_record(stored, DeskState, VERSION).state)
    assert _whole(resumed.desk) == _whole(live.desk)
