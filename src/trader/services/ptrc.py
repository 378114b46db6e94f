"""ptrc: positions from fills.

Consumes: ``exec.report.>`` (stream EXEC); every report of kind ``fill`` goes through
``trader.portfolio.PositionTracker`` (average cost, realized PnL through flips, fees), each ``exec_id``
once. Other reports are not about positions and are passed over.
Produces (stream POSITIONS), after every fill, the two positions it changed:

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

import time

import msgspec
from nats.js.errors import NotFoundError

from trader.bus.publish import Outgoing
from trader.bus.streams import position_subject
from trader.marketdata.decode import InvalidMessage
from trader.messages import ExecutionReport, Position, encode
from trader.portfolio import PositionTracker
from trader.runtime.consumer import Delivery, StreamConsumer
from trader.runtime.service import Refused, Runtime, Service
from trader.services.exec_support import Stored, decode_message, replay, strategy_position_subject

MAX_WAIT_S = 0.02
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
        self.tracker = PositionTracker()
        last_seq = 0
        fills = 0
        async for stored in replay(rt.js, "EXEC", [REPORTS]):
            last_seq = stored.seq
            try:
                fills += bool(apply_report(self.tracker, decode_message(_report, stored.data)))
            except InvalidMessage:
                continue  # refused when it was first consumed
        republished = await self._reconcile(rt)
        rt.log.info("ptrc.rebuilt", fills=fills, last_seq=last_seq, republished=republished)
        self.consumer = StreamConsumer(
            rt,
            stream="EXEC",
            name=self.name,
            subject=REPORTS,
            start_seq=last_seq + 1,
            max_rows=1_000,
            max_wait_s=MAX_WAIT_S,
        )
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
        async for batch in self.consumer.batches():
            if batch:
                await self._process(rt, batch)
                await self.consumer.ack(batch)

    async def _process(self, rt: Runtime, batch: list[Delivery]) -> None:
        started = time.perf_counter()
        out: list[Outgoing] = []
        refused: list[Refused] = []
        for d in batch:
            stored = Stored(d.seq, d.subject, d.data, d.headers)
            try:
                changed = apply_report(self.tracker, decode_message(_report, d.data))
            except InvalidMessage as exc:
                refused.append(stored.refused(exc))
                continue
            out += [position_message(p) for p in changed]
        await rt.dead_letter("EXEC", refused)
        await rt.publish_reliably(out)
        rt.metrics.count_in(len(batch))
        rt.metrics.observe_batch(time.perf_counter() - started)

    def ready_checks(self) -> dict[str, bool]:
        return {"consumer": hasattr(self, "consumer")}

    def health_details(self) -> dict[str, object]:
        if not hasattr(self, "tracker"):
            return {}
        return {"positions": len(self.tracker.positions())}


SERVICE = Ptrc
