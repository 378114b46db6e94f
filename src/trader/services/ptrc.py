"""ptrc: positions from fills.

Consumes: ``exec.report.>`` (stream EXEC); every report of kind ``fill`` goes through
``trader.portfolio.PositionTracker`` (average cost, realized PnL through flips, fees), each ``exec_id``
once. Other reports are not about positions and are passed over.
Produces (stream POSITIONS), after every batch of fills (one fill when they come one at a time), the
latest of each position they changed (a position is a snapshot: its subject's latest message is it):

- the account's net position on ``position.<account>.<venue>.<symbol>`` (``strategy`` None),
  ``Nats-Msg-Id`` ``<account>:<venue>:<symbol>:<last_exec_id>``;
- the strategy's own position on ``position.<account>.<venue>.<symbol>.<strategy>`` (``strategy`` set),
  ``Nats-Msg-Id`` the same followed by ``/<strategy>``.

Net subjects have four tokens and strategy subjects five, so the two never collide, whatever the names:
``position.*.*.*`` is every net position, ``position.*.*.*.*`` every strategy's, and the latest message
of a subject is that position now.
Undecodable reports, and fills without a positive quantity and a price, go to the dead letters.

Inputs: ``exec.report.>`` of EXEC in mode HISTORY (``trader.runtime.intake``).
State: the positions and the exec ids applied (of the fills of the last two hours, by their own time:
``IDS_WINDOW_MS``), snapshotted (``trader.runtime.snapshots``, key ``ptrc``)
every ``SNAPSHOT_EVERY_MESSAGES`` reports or ``SNAPSHOT_EVERY_S`` seconds and at a graceful stop, with
the EXEC sequence it covers.

Restart: the state is the latest snapshot's (none, corrupt, or of another schema version: empty), and
the reports after it (the whole EXEC stream without one; it is kept for ever) are applied without
publishing. Once caught up, each rebuilt position is compared with the latest one on its subject, and
published when they differ (a crash between a fill and its position); then every new report is live.
/ready waits for that.
"""

from __future__ import annotations

import msgspec
from nats.js.errors import NotFoundError

from trader.bus.publish import Outgoing
from trader.bus.streams import position_subject, strategy_position_subject
from trader.marketdata.decode import InvalidMessage
from trader.messages import ExecutionReport, Position, encode
from trader.orders.retention import IDS_WINDOW_MS
from trader.portfolio import PositionTracker
from trader.runtime.intake import Input, Intake, Mode, Received
from trader.runtime.service import Runtime, Service
from trader.runtime.snapshots import Snapshotting

REPORTS = "exec.report.>"
REPORTS_INPUT = Input("EXEC", REPORTS, ExecutionReport, Mode.HISTORY)

STATE_VERSION = 2  # of PtrcState: a snapshot of another version is not read. 2: the exec ids' times
SNAPSHOT_EVERY_MESSAGES = 10_000
SNAPSHOT_EVERY_S = 60.0

_position = msgspec.json.Decoder(Position)


class PtrcState(msgspec.Struct, frozen=True):
    """What ptrc knows: every position (net ones without a strategy) and the exec ids applied of the
    fills of the last ``IDS_WINDOW_MS`` (by their own time, before the latest), with those times."""

    positions: list[Position]
    exec_ids: list[str]
    exec_times: list[int] = []


def state_of(tracker: PositionTracker) -> PtrcState:
    positions = [*tracker.positions(), *tracker.strategy_positions()]
    return PtrcState(positions, tracker.applied_exec_ids(), tracker.applied_exec_times())


def new_tracker() -> PositionTracker:
    """Exec ids kept for the window in which a repeat of a fill can still be stored, not for ever."""
    return PositionTracker(exec_id_window_ms=IDS_WINDOW_MS)


def tracker_of(state: PtrcState) -> PositionTracker:
    tracker = new_tracker()
    tracker.rebuild(state.positions, state.exec_ids, state.exec_times)
    return tracker


def subject_of(position: Position) -> str:
    if position.strategy is None:
        return position_subject(position.account, position.venue, position.symbol)
    return strategy_position_subject(position.account, position.venue, position.symbol, position.strategy)


def position_message(position: Position) -> Outgoing:
    msg_id = f"{position.account}:{position.venue}:{position.symbol}:{position.last_exec_id}"
    if position.strategy is not None:
        msg_id = f"{msg_id}/{position.strategy}"
    return Outgoing(subject_of(position), encode(position), msg_id=msg_id)


def apply_report(tracker: PositionTracker, report: ExecutionReport) -> list[Position]:
    """The positions a report changed (none for a repeat or a report that is not a fill); a fill that
    cannot be applied raises ``InvalidMessage``."""
    try:
        change = tracker.apply(report)
    except ValueError as exc:
        raise InvalidMessage("fill", str(exc)) from None
    return [] if change is None else [change.net, change.strategy]


class Ptrc(Service):
    name = "ptrc"
    intake: Intake[ExecutionReport] | None = None

    async def start(self, rt: Runtime) -> None:
        self.rt = rt
        self.tracker = new_tracker()
        snapshots = Snapshotting(
            key=self.name,
            state_type=PtrcState,
            version=STATE_VERSION,
            take=lambda: state_of(self.tracker),
            restore=self._restore,
            every_messages=SNAPSHOT_EVERY_MESSAGES,
            every_s=SNAPSHOT_EVERY_S,
        )
        intake = Intake(
            rt,
            REPORTS_INPUT,
            self._take_report,
            # A position is a snapshot: several fills of a batch on one make one message, its latest.
            latest_only=True,
            on_caught_up=self._reconcile,
            snapshots=snapshots,
        )
        await intake.start()
        self.intake = intake

    def _restore(self, state: PtrcState) -> None:
        self.tracker = tracker_of(state)

    async def _reconcile(self) -> list[Outgoing]:
        """The rebuilt positions that their subject's latest message does not show."""
        stale = []
        for position in [*self.tracker.positions(), *self.tracker.strategy_positions()]:
            try:
                latest = await self.rt.js.get_last_msg("POSITIONS", subject_of(position))
            except NotFoundError:
                stale.append(position)
                continue
            if _position.decode(latest.data or b"{}") != position:
                stale.append(position)
        self.rt.log.info("ptrc.rebuilt", positions=len(self.tracker.positions()), republished=len(stale))
        return [position_message(p) for p in stale]

    async def run(self, rt: Runtime) -> None:
        if self.intake is not None:
            await self.intake.run()

    async def stop(self, rt: Runtime) -> None:
        if self.intake is not None:
            await self.intake.stop()

    def _take_report(self, received: Received[ExecutionReport]) -> list[Outgoing]:
        return [position_message(p) for p in apply_report(self.tracker, received.value)]

    def ready_checks(self) -> dict[str, bool]:
        if self.intake is None:
            return {"intake": False}
        return self.intake.ready_checks()

    def health_details(self) -> dict[str, object]:
        if self.intake is None:
            return {}
        return {"positions": len(self.tracker.positions()), "intake": self.intake.health_details()}


SERVICE = Ptrc
