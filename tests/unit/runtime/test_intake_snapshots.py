"""When a HISTORY input snapshots: not every N messages while its history is replayed (each snapshot
would be the whole state so far, so the replay would cost its square), once at the end of that
catch-up, then every N messages live, and at the stop."""

from __future__ import annotations

from typing import Any, cast

from trader.runtime.intake import Input, Intake, Mode, Received
from trader.runtime.snapshots import Snapshotting

from .test_intake_periodic import Item, _Consumer, _delivery, _intake, _Store


def _history_intake(order: list[str], every_messages: int, history_end: int) -> Intake[Item]:
    base = _intake(order, every_s=3600.0)
    applied: list[int] = []

    def handle(message: Received[Item]) -> list[Any]:
        applied.append(message.seq)
        return []

    snapshots = Snapshotting(
        key="svc",
        state_type=list,
        version=1,
        take=lambda: list(applied),
        restore=lambda s: None,
        every_messages=every_messages,
        every_s=3600.0,
    )
    intake = Intake(base.rt, Input("ITEMS", "items.>", Item, Mode.HISTORY), handle, snapshots=snapshots)
    intake._store = cast(Any, _Store(order))
    intake.started = True
    intake.replay_to = intake._end_seq = history_end
    return intake


async def test_a_replayed_history_is_snapshotted_once_caught_up_then_every_n_messages() -> None:
    order: list[str] = []
    intake = _history_intake(order, every_messages=5, history_end=23)
    batches = [[_delivery(seq, "a") for seq in range(first, first + 4)] for first in range(1, 24, 4)]
    batches[-1] = [_delivery(seq, "a") for seq in range(21, 24)]  # the history: 23 messages
    batches += [
        [_delivery(seq, "a") for seq in range(24, 27)],
        [_delivery(seq, "a") for seq in range(27, 30)],
    ]
    consumer = _Consumer(batches, order)
    intake._consumer = cast(Any, consumer)
    await intake._run_consumer(cast(Any, consumer))
    snapshots = [line for line in order if line.startswith("snapshot")]
    # None in the replay of 23 (at every 5 there would have been four); one at its end; one 6 later.
    assert snapshots == ["snapshot {'ITEMS': 23}", "snapshot {'ITEMS': 29}"]
    assert intake.caught_up


async def test_nothing_replayed_no_snapshot_at_the_catch_up() -> None:
    order: list[str] = []
    intake = _history_intake(order, every_messages=5, history_end=0)
    consumer = _Consumer([[_delivery(1, "a")], []], order)
    intake._consumer = cast(Any, consumer)
    await intake._run_consumer(cast(Any, consumer))
    assert [line for line in order if line.startswith("snapshot")] == []
    await intake.stop()
    assert order[-1] == "snapshot {'ITEMS': 1}"  # at the stop
