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
"""

from __future__ import annotations

import asyncio
import contextlib
import functools
from decimal import Decimal

import msgspec

from trader.bus.publish import Outgoing
from trader.bus.read import Stored, decode_message, follow_latest
from trader.bus.streams import pnl_subject
from trader.marketdata.decode import decode_tick
from trader.messages import MarketTick, PnlSnapshot, Position, encode
from trader.portfolio import PnlBook, unrealized_pnl
from trader.runtime.consumer import now_ms
from trader.runtime.service import Runtime, Service
from trader.stores.questdb import (
    PositionRow,
    QuestDBClient,
    ensure_trading_tables,
    write_pnl,
    write_positions,
)

_position = msgspec.json.Decoder(Position)
MAX_UNWRITTEN = 100_000  # snapshots kept for QuestDB while it is away; the PNL stream has them all


class Marks:
    """The positions as last published, and which of them changed since last written."""

    def __init__(self, book: PnlBook) -> None:
        self.book = book
        self.latest: dict[str, Position] = {}  # by subject
        self._written: dict[str, tuple[Position, Decimal | None]] = {}

    def update(self, subject: str, position: Position) -> None:
        self.latest[subject] = position
        self.book.update_position(position)

    def changed_rows(self, now: int) -> dict[str, PositionRow]:
        """By subject, the positions whose quantity, cost or mark changed since last written."""
        rows = {}
        for subject, position in self.latest.items():
            mark = self.book.mark_of(position)
            if self._written.get(subject) != (position, mark):
                unrealized = unrealized_pnl(position, mark) if mark is not None else Decimal(0)
                rows[subject] = PositionRow(position, mark, unrealized, now)
        return rows

    def written(self, rows: dict[str, PositionRow]) -> None:
        for subject, row in rows.items():
            self._written[subject] = (row.position, row.mark)


def snapshot_message(snapshot: PnlSnapshot) -> Outgoing:
    return Outgoing(
        pnl_subject(snapshot.scope), encode(snapshot), msg_id=f"{snapshot.scope}:{snapshot.timestamp}"
    )


class Pnl(Service):
    name = "pnl"

    async def start(self, rt: Runtime) -> None:
        self.rt = rt
        await self.stop(rt)  # a start retried after a failure begins afresh
        self.unwritten: list[PnlSnapshot] = []
        self.qdb = QuestDBClient(self.settings)
        await asyncio.to_thread(ensure_trading_tables, self.qdb)
        self.book = PnlBook(quote_venue=self.settings.quote_venue_of)
        self.marks = Marks(self.book)
        self.followers = [
            follow_latest(
                rt,
                stream="POSITIONS",
                subjects="position.>",
                decode=functools.partial(decode_message, _position),
                apply=self._on_position,
            ),
            follow_latest(
                rt, stream="MARKET_TICKS", subjects="market.tick.>", decode=decode_tick, apply=self._on_tick
            ),
        ]
        for follower in self.followers:
            await follower.start()

    async def _on_position(self, position: Position, stored: Stored) -> None:
        self.rt.metrics.count_in()
        self.marks.update(stored.subject, position)

    async def _on_tick(self, tick: MarketTick, stored: Stored) -> None:
        self.rt.metrics.count_in()
        self.book.update_mark(tick.venue, tick.symbol, tick.price)

    async def run(self, rt: Runtime) -> None:
        interval = self.settings.pnl.snapshot_interval_s
        while not rt.stopping.is_set():
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(rt.stopping.wait(), timeout=interval)
            if not rt.stopping.is_set():
                await self._snapshot(rt)

    async def _snapshot(self, rt: Runtime) -> None:
        now = now_ms()
        snapshots = self.book.snapshots(now)
        await rt.publish_reliably([snapshot_message(s) for s in snapshots])
        # QuestDB being away must not stop the snapshots: what it missed is written with the next ones.
        self.unwritten = [*self.unwritten, *snapshots][-MAX_UNWRITTEN:]
        rows = self.marks.changed_rows(now)
        pending = self.unwritten

        def write() -> None:
            write_pnl(self.qdb, pending)
            write_positions(self.qdb, list(rows.values()))

        try:
            await asyncio.to_thread(write)
        except Exception as exc:
            rt.metrics.count_error("questdb.write")
            rt.log.warning("questdb.write.failed", error=repr(exc), unwritten=len(self.unwritten))
            return
        self.unwritten = []
        self.marks.written(rows)

    async def stop(self, rt: Runtime) -> None:
        for follower in getattr(self, "followers", []):
            await follower.stop()
        if hasattr(self, "qdb"):
            self.qdb.close()

    def ready_checks(self) -> dict[str, bool]:
        return {"followers": hasattr(self, "followers")}

    def health_details(self) -> dict[str, object]:
        if not hasattr(self, "marks"):
            return {}
        return {"positions": len(self.marks.latest), "strategies": self.book.strategies()}


SERVICE = Pnl
