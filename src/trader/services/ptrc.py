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

Restart: the state is rebuilt by replaying every report of the EXEC stream (kept for ever), which is
exact and needs no second source of truth. Then each rebuilt position is compared with the latest one
on its subject, and published when they differ (a crash between a fill and its position), after which
consumption resumes right after the last replayed report.
"""

from __future__ import annotations

import contextlib

import msgspec
from nats.js.errors import NotFoundError

from trader.bus.publish import Outgoing
from trader.bus.read import Stored, decode_message, replay, take_batch, work_consumer, work_through
from trader.bus.streams import position_subject, strategy_position_subject
from trader.marketdata.decode import InvalidMessage
from trader.messages import ExecutionReport, Position, encode
from trader.portfolio import PositionTracker
from trader.runtime.consumer import Delivery
from trader.runtime.service import Runtime, Service

REPORTS = "exec.report.>"

_report = msgspec.json.Decoder(ExecutionReport)
_position = msgspec.json.Decoder(Position)


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

    async def start(self, rt: Runtime) -> None:
        self.rt = rt
        self.tracker = PositionTracker()
        last_seq = 0
        fills = 0

        async def take(stored: Stored) -> None:
            nonlocal last_seq, fills
            last_seq = stored.seq
            with contextlib.suppress(InvalidMessage):  # refused when it was first consumed
                fills += bool(apply_report(self.tracker, decode_message(_report, stored.data)))

        await replay(rt.js, "EXEC", REPORTS, take)
        republished = await self._reconcile(rt)
        rt.log.info("ptrc.rebuilt", fills=fills, last_seq=last_seq, republished=republished)
        self.consumer = work_consumer(rt, stream="EXEC", subject=REPORTS, start_seq=last_seq + 1)
        await self.consumer.start()

    async def _reconcile(self, rt: Runtime) -> int:
        """Publish the rebuilt positions that their subject's latest message does not show."""
        stale = []
        for position in [*self.tracker.positions(), *self.tracker.strategy_positions()]:
            try:
                latest = await rt.js.get_last_msg("POSITIONS", subject_of(position))
            except NotFoundError:
                stale.append(position)
                continue
            if _position.decode(latest.data or b"{}") != position:
                stale.append(position)
        await rt.publish_reliably([position_message(p) for p in stale])
        return len(stale)

    async def run(self, rt: Runtime) -> None:
        await work_through(rt, self.consumer, self._process)

    async def _process(self, batch: list[Delivery]) -> None:
        # A position is a snapshot: several fills of a batch on one make one message, its latest.
        await take_batch(self.rt, "EXEC", batch, self._take_report, latest_only=True)

    async def _take_report(self, stored: Stored) -> list[Outgoing]:
        changed = apply_report(self.tracker, decode_message(_report, stored.data))
        return [position_message(p) for p in changed]

    def ready_checks(self) -> dict[str, bool]:
        return {"consumer": hasattr(self, "consumer")}

    def health_details(self) -> dict[str, object]:
        if not hasattr(self, "tracker"):
            return {}
        return {"positions": len(self.tracker.positions())}


SERVICE = Ptrc
