"""exeq's desk forgetting while it replays its history (``ExecutionDesk.forget_replayed``): for any
history of venue orders, cancels, replaces, ticks and algos over hours, forgetting every few messages
by the history's own clock (a snapshot taken on the way and resumed from too) ends, after the restore
and its forgetting, in exactly the state of a replay that forgets once at the end; and the desk holds
the retention's window of a long history, not the history."""

from __future__ import annotations

from decimal import Decimal as D
from typing import Any

import msgspec
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from trader.bus.publish import Outgoing
from trader.execution.desk import DeskState, ExecutionDesk, Key
from trader.messages import ExecutionReport, encode
from trader.orders.retention import IDS_WINDOW_MS, ids_cutoff
from trader.runtime.snapshots import decode_record, encode_record

from .test_desk import T0, Harness, order, tick
from .test_desk_snapshots import _whole

COIDS = [f"o{i}" for i in range(1, 13)]
ALGOS = ["p1", "p2", "p3"]
MINUTE = 60_000
_report = msgspec.json.Decoder(ExecutionReport)

steps = st.lists(
    st.one_of(
        st.tuples(st.just("tick"), st.integers(95, 105), st.integers(1, 3)),
        # A tick stamped ahead of exeq's clock (a feed's clock ahead): its fills are, too.
        st.tuples(st.just("tick ahead"), st.integers(95, 105), st.integers(1, 90)),
        st.tuples(
            st.just("new"),
            st.sampled_from(COIDS),
            st.sampled_from(["market", "limit"]),
            st.sampled_from(["buy", "sell"]),
            st.integers(1, 3),
            st.integers(95, 105),
        ),
        st.tuples(st.just("cancel"), st.sampled_from([*COIDS, *ALGOS])),
        st.tuples(st.just("replace"), st.sampled_from(COIDS), st.integers(1, 4), st.integers(95, 105)),
        st.tuples(st.just("later"), st.integers(0, 100)),  # minutes
        st.tuples(st.just("forget")),  # live: what ended a retention ago leaves, as exeq's clock does
        st.tuples(
            st.just("algo"),
            st.sampled_from(ALGOS),
            st.sampled_from(["twap", "iceberg"]),
            st.sampled_from(["market", "limit"]),
            st.integers(2, 5),
            st.integers(95, 105),
        ),
        st.tuples(st.just("drive"), st.integers(1, 400)),
    ),
    max_size=40,
)


def _ended_ms(desk: ExecutionDesk, key: Key) -> int | None:
    """When the venue order of ``key`` ended, as the desk has it (None: it works, was never seen, or
    its key was dropped)."""
    for ended in (desk._ended, desk._forgotten_at):
        at = ended._at.get(key)
        if at is not None:
            return at
    return next((at for held in desk._held.values() for k, at in held if k == key), None)


async def _live(history: list[tuple[Any, ...]], retention_s: int) -> Harness:
    """The live desk through ``history``. A message about an order comes within the ids window after it
    ended, by the latest report's time (a repeat is stored within minutes; a cancel or replace comes
    from the oms, which holds an ended order a retention), and a venue client id is never used again
    after that."""
    h = Harness()
    retention_ms = retention_s * 1000
    window_ms = retention_ms + max(retention_ms, IDS_WINDOW_MS - retention_ms)
    ended: dict[str, int] = {}  # venue client id -> when its order ended
    latest, read = h.now, 0  # the latest report's time (a tick ahead stamps fills ahead), what was read
    for step in history:
        kind = step[0]
        for item in h.stream[read:]:
            if item.subject.startswith(("exec.report.", "exec.algo.report.")):
                latest = max(latest, _report.decode(item.payload).timestamp)
        read, latest = len(h.stream), max(latest, h.now)
        if kind in ("new", "cancel", "replace", "algo") and latest - ended.get(step[1], latest) >= window_ms:
            continue
        if await h.play(step):
            pass
        elif kind == "tick ahead":
            level = D(step[1])
            await h.tick(tick(str(level), str(level + 1), ts=h.now + step[2] * MINUTE))
        elif kind == "later":
            h.now += step[1] * MINUTE
        else:  # what the service's forgetting does on the algos' clock
            cutoff = h.now - retention_ms
            h.desk.forget_ended(cutoff)
            ids_before = ids_cutoff(cutoff, retention_s)
            assert ids_before is not None
            h.desk.drop_forgotten(ids_before)
        for coid in [*COIDS, *ALGOS]:
            if coid not in ended and (at := _ended_ms(h.desk, ("paper", coid))) is not None:
                ended[coid] = at
    return h


def _fresh(live: Harness, now: int | None = None) -> Harness:
    """A new desk on ``live``'s stream, its clock at ``now`` (``live``'s by default)."""
    fresh = Harness(list(live.stream))
    fresh.now = live.now if now is None else now
    return fresh


def _resumed(h: Harness, state: DeskState, replayed_ms: int) -> Harness:
    """A new desk from a snapshot of ``h`` taken during its replay (encoded and decoded, as stored)."""
    stored = encode_record(state, {"EXEC": 0}, 1, 0)
    resumed = _fresh(h, h.now)
    resumed.desk.restore_snapshot(decode_record(stored, DeskState, 1).state)
    resumed.desk.replayed_ms = replayed_ms
    return resumed


async def _restored_and_forgotten(h: Harness, retention_s: int) -> list[Outgoing]:
    """The restore and the forgetting after it, as the service does them; what the restore published."""
    published = len(h.stream)
    await h.desk.restore()
    cutoff = h.now - retention_s * 1000
    h.desk.forget_ended(cutoff)
    ids_before = ids_cutoff(cutoff, retention_s)
    assert ids_before is not None
    h.desk.drop_forgotten(ids_before)
    return h.stream[published:]


@settings(max_examples=300, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(
    history=steps,
    retention_s=st.sampled_from([600, 3600, 5400]),
    every=st.integers(1, 6),
    restart_after=st.integers(0, 300),  # minutes after the last step
    data=st.data(),
)
async def test_forgetting_during_the_replay_ends_as_forgetting_after_it(
    history: list[tuple[Any, ...]], retention_s: int, every: int, restart_after: int, data: st.DataObject
) -> None:
    live = await _live(history, retention_s)
    stream = live.stream
    now = live.now + restart_after * MINUTE
    full = _fresh(live, now)
    for item in stream:
        full.desk.replay(item.subject, item.payload)
    going = _fresh(live, now)
    # As the service: never past the cutoff of the forgetting after the restore (its clock is later).
    not_after = now - retention_s * 1000
    snapshot_at = data.draw(st.integers(0, len(stream)))
    for i, item in enumerate(stream, 1):
        going.desk.replay(item.subject, item.payload)
        if i % every == 0:
            going.desk.forget_replayed(retention_s, not_after)
        if i == snapshot_at:  # a snapshot taken during the replay, and a restart from it
            going = _resumed(going, going.desk.snapshot(), going.desk.replayed_ms)
    assert await _restored_and_forgotten(going, retention_s) == await _restored_and_forgotten(
        full, retention_s
    )
    assert _whole(going.desk) == _whole(full.desk)


async def test_an_order_ended_within_the_retention_stays_through_the_replay() -> None:
    # The cutoff is the latest report's time less the retention: o1 ended at T0, o2's report at
    # T0 + 59 min (within the hour) keeps it; o3's at T0 + 61 min forgets it, key and counter kept.
    h = Harness()
    await h.tick(tick("100", "101"))
    await h.send(order("o1"))
    for coid, minutes in (("o2", 59), ("o3", 61)):
        h.now = T0 + minutes * MINUTE
        await h.tick(tick("100", "101", ts=h.now))
        await h.send(order(coid))
    replayed = _fresh(h)
    for item in h.stream:
        replayed.desk.replay(item.subject, item.payload)
        replayed.desk.forget_replayed(3600, h.now)
        assert (("paper", "o1") in replayed.desk.orders) == (replayed.desk.replayed_ms - 3600_000 <= T0)
    assert replayed.desk.replayed_ms == T0 + 61 * MINUTE
    assert ("paper", "o1") not in replayed.desk.orders
    assert replayed.desk.numbers[("paper", "o1")] == 2
    assert (replayed.desk.forgotten_count, len(replayed.desk.orders)) == (1, 2)
    # Never past the cutoff it is given (the wall clock's, at the start), whatever the reports say.
    capped = _fresh(h)
    for item in h.stream:
        capped.desk.replay(item.subject, item.payload)
    assert capped.desk.forget_replayed(3600, T0) == 0  # o1 ended at T0: not before it
    assert capped.desk.forget_replayed(3600, T0 + 1) == 1


def _filled(i: int, at_ms: int) -> list[Outgoing]:
    """The venue order of one order filled at once, and exeq's two reports about it."""
    venue_order = order(f"o{i}")
    reports = [
        ExecutionReport(
            exec_id=f"paper:o{i}:{n}",
            kind=kind,  # type: ignore[arg-type]
            client_order_id=f"o{i}",
            venue_client_id=f"o{i}",
            strategy="s1",
            account="acc",
            venue="paper",
            symbol=venue_order.symbol,
            side="buy",
            last_quantity=D(1) if kind == "fill" else D(0),
            last_price=D(100) if kind == "fill" else None,
            timestamp=at_ms,
        )
        for n, kind in ((1, "accepted"), (2, "fill"))
    ]
    return [Outgoing("exec.order.paper", encode(venue_order))] + [
        Outgoing("exec.report.paper", encode(r)) for r in reports
    ]


def test_a_long_replay_holds_the_retention_window_not_the_history() -> None:
    # 2,000 orders ten seconds apart (five and a half hours), forgetting every 200 messages with an
    # hour's retention (three messages an order): at most the 360 orders of the last hour are held, plus
    # those of one batch, and the keys of the hour before (the ids window is two hours after the end).
    spacing_ms, every, retention_s = 10_000, 200, 3600
    per_hour = retention_s * 1000 // spacing_ms
    desk = ExecutionDesk({}, _no_publish, lambda: T0)
    held, keys, n = 0, 0, 0
    for i in range(2000):
        for item in _filled(i, T0 + i * spacing_ms):
            desk.replay(item.subject, item.payload)
            n += 1
            if n % every == 0:
                desk.forget_replayed(retention_s, T0 + 10**12)
            held, keys = max(held, len(desk.orders)), max(keys, desk.forgotten_count)
    # The hour's orders, both ends included, and those of the messages since the last forgetting.
    bound = per_hour + 1 + -(-every // 3)
    assert per_hour < held <= bound
    assert 0 < keys <= bound
    assert len(desk.numbers) == len(desk.orders) + desk.forgotten_count
    # A replay that does not forget holds them all.
    whole = ExecutionDesk({}, _no_publish, lambda: T0)
    for i in range(2000):
        for item in _filled(i, T0 + i * spacing_ms):
            whole.replay(item.subject, item.payload)
    assert len(whole.orders) == 2000


async def _no_publish(items: list[Outgoing]) -> None:
    raise AssertionError("a replay publishes nothing")
