"""pnl: positions marked to market, PnL snapshots, positions and PnL in QuestDB.

Consumes: ``position.>`` (stream POSITIONS: net positions on four-token subjects, strategies' on five, see
``trader.services.ptrc``) and ``market.tick.>`` (MARKET_TICKS, ``market.tick.<venue>.<SYMBOL>``: each
tick's trade price marks the positions of the symbol at the venues it quotes for, ``Settings.quote_venue_of``:
a live venue's own ticks, a paper venue's ``exeq.paper.quote_venue``; never another feed's, so the mock
feed's prices never mark a live position). Both from the latest message of
each subject, then live: the latest position of a subject is that position now, and the latest tick
the mark, so a restart needs no history and no checkpoint.
Produces, every ``settings.pnl.snapshot_interval_s``: a ``PnlSnapshot`` per strategy and the total
(``trader.portfolio.PnlBook``) on ``pnl.<strategy>`` and ``pnl.total`` (stream PNL, ``Nats-Msg-Id``
``<scope>:<time>``), rows in the QuestDB tables ``pnl`` (every snapshot) and ``positions`` (the positions
whose quantity, cost or mark changed since last written; while QuestDB is away the rows wait for the
next snapshot, which does not wait for QuestDB). Undecodable positions and ticks go to the dead
letters.

Inputs (``trader.runtime.intake``): ``position.>`` of POSITIONS and ``market.tick.>`` of MARKET_TICKS,
both in mode LATEST. Engine: ``trader.portfolio.marks.Marks`` over a ``PnlBook``.
State: the latest position of each subject and the marks, none of it kept over a restart.
"""

from __future__ import annotations

import asyncio
from dataclasses import dataclass, field

from trader.bus.backoff import set_within
from trader.bus.publish import Outgoing
from trader.bus.streams import pnl_subject
from trader.marketdata.decode import decode_tick
from trader.messages import MarketTick, PnlSnapshot, Position, encode
from trader.portfolio import PnlBook
from trader.portfolio.marks import Marks
from trader.runtime.consumer import now_ms
from trader.runtime.intake import Input, Intake, Mode, Received
from trader.runtime.service import Runtime, Service
from trader.stores.questdb import QuestDBClient, ensure_trading_tables, write_pnl, write_positions

POSITIONS_INPUT = Input("POSITIONS", "position.>", Position, Mode.LATEST, name="positions")
TICKS_INPUT = Input(
    "MARKET_TICKS", "market.tick.>", MarketTick, Mode.LATEST, name="ticks", decode=decode_tick
)
MAX_UNWRITTEN = 100_000  # snapshots kept for QuestDB while it is away; the PNL stream has them all


def snapshot_message(snapshot: PnlSnapshot) -> Outgoing:
    return Outgoing(
        pnl_subject(snapshot.scope), encode(snapshot), msg_id=f"{snapshot.scope}:{snapshot.timestamp}"
    )


@dataclass
class PnlState:
    """A started pnl: its engine, its inputs, and what QuestDB has not taken yet."""

    book: PnlBook
    marks: Marks
    qdb: QuestDBClient
    inputs: list[Intake[Position] | Intake[MarketTick]]
    unwritten: list[PnlSnapshot] = field(default_factory=list)


class Pnl(Service):
    name = "pnl"
    state: PnlState | None = None

    async def start(self, rt: Runtime) -> None:
        qdb = QuestDBClient(self.settings)
        try:
            await asyncio.to_thread(ensure_trading_tables, qdb)
            book = PnlBook(quote_venue=self.settings.quote_venue_of)
            marks = Marks(book)

            def take_position(received: Received[Position]) -> list[Outgoing]:
                marks.update(received.subject, received.value)
                return []

            def take_tick(received: Received[MarketTick]) -> list[Outgoing]:
                tick = received.value
                book.update_mark(tick.venue, tick.symbol, tick.price)
                return []

            positions = Intake(rt, POSITIONS_INPUT, take_position)
            ticks = Intake(rt, TICKS_INPUT, take_tick)
            for intake in (positions, ticks):
                await intake.start()
        except BaseException:
            qdb.close()  # a start retried after a failure begins afresh
            raise
        self.state = PnlState(book, marks, qdb, [positions, ticks])

    async def run(self, rt: Runtime) -> None:
        state = self.state
        assert state is not None, "run follows a successful start"
        readers = [asyncio.create_task(intake.run()) for intake in state.inputs]
        try:
            interval = self.settings.pnl.snapshot_interval_s
            while not rt.stopping.is_set():
                await set_within(rt.stopping, interval)
                if not rt.stopping.is_set():
                    await self._snapshot(rt, state)
        finally:
            await asyncio.gather(*readers, return_exceptions=True)

    async def _snapshot(self, rt: Runtime, state: PnlState) -> None:
        now = now_ms()
        snapshots = state.book.snapshots(now)
        await rt.publish_reliably([snapshot_message(s) for s in snapshots])
        # QuestDB being away must not stop the snapshots: what it missed is written with the next ones.
        state.unwritten = [*state.unwritten, *snapshots][-MAX_UNWRITTEN:]
        rows = state.marks.changed_rows(now)
        pending = state.unwritten

        def write() -> None:
            write_pnl(state.qdb, pending)
            write_positions(state.qdb, list(rows.values()))

        try:
            await asyncio.to_thread(write)
        except Exception as exc:
            rt.metrics.count_error("questdb.write")
            rt.log.warning("questdb.write.failed", error=repr(exc), unwritten=len(state.unwritten))
            return
        state.unwritten = []
        state.marks.written(rows)

    async def stop(self, rt: Runtime) -> None:
        if self.state is None:
            return
        for intake in self.state.inputs:
            await intake.stop()
        self.state.qdb.close()

    def ready_checks(self) -> dict[str, bool]:
        if self.state is None:
            return {"positions": False, "ticks": False}
        checks: dict[str, bool] = {}
        for intake in self.state.inputs:
            checks |= intake.ready_checks()
        return checks

    def health_details(self) -> dict[str, object]:
        if self.state is None:
            return {}
        return {"positions": len(self.state.marks.latest), "strategies": self.state.book.strategies()}


SERVICE = Pnl
