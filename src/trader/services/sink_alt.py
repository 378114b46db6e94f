"""sink-alt: alternative data into the Delta table ``alt_data``, exactly once, and the venues' latest
funding, open interest, liquidations, mark and index prices into QuestDB.

Consumes: ``alt.norm.>`` (stream ALT_DATA), twice, both intake inputs in mode WORK: the lake's
(``LakeSink``: one Delta commit per batch with the batch's last sequence in it, its checkpoint), and
``sink-alt-questdb`` (the intake's checkpoint, written after the batch's rows are flushed to QuestDB).
Produces: ``<lake_root>/alt_data``, partitioned by ``kind`` and ``dt``; QuestDB tables ``funding``,
``open_interest``, ``liquidations``, ``mark_index`` (``trader.stores.questdb_alt``: DEDUP UPSERT KEYS, so
a batch written again after a crash replaces its rows); refused messages on the dead letters (by the
lake's input only: the QuestDB input skips what the lake refuses, so a bad message is one letter).
State: the lake's commit and the QuestDB input's checkpoint; nothing in memory survives a restart.

Why here and not a service of its own: it is the same stream stored a second way, by the service that
already stores it; its own consumer and checkpoint keep a slow QuestDB from holding the lake back, and
the other way round, with no extra process or port.
"""

from __future__ import annotations

import asyncio
from collections.abc import Sequence
from typing import Any

import pyarrow as pa

from trader.bus.publish import Outgoing
from trader.marketdata.decode import InvalidMessage, decode_alt
from trader.messages import AltDatum
from trader.runtime.intake import Input, Intake, Mode, Received
from trader.runtime.service import Runtime
from trader.services.lake_sink import LakeSink, decimals
from trader.services.lake_sink import Row as LakeRow
from trader.stores.lake import ALT_DATA, TIMESTAMP, VALUE, utc_dates
from trader.stores.questdb import QuestDBClient
from trader.stores.questdb_alt import Row, ensure_alt_tables, row_of, write_alt


def _lenient_alt(data: bytes) -> AltDatum | None:
    """The datum, or None for one the lake's input refuses (and dead-letters) already."""
    try:
        return decode_alt(data)
    except InvalidMessage:
        return None


QUESTDB_INPUT: Input[AltDatum | None] = Input(
    "ALT_DATA", "alt.norm.>", AltDatum, Mode.WORK, name="sink-alt-questdb", decode=_lenient_alt
)  # type: ignore[arg-type]


class SinkAlt(LakeSink):
    name = "sink-alt"
    table = ALT_DATA
    stream = "ALT_DATA"
    message = AltDatum
    subject = "alt.norm.>"

    def decode(self, data: bytes) -> AltDatum:
        return decode_alt(data)

    def to_arrow(self, rows: list[LakeRow]) -> pa.Table:
        data = [a for _, a in rows]
        ts = pa.array([a.timestamp for a in data], pa.int64())
        columns = {
            "ts": ts.cast(TIMESTAMP),
            "ingest_ts": pa.array([d.arrival_ms for d, _ in rows], pa.int64()).cast(TIMESTAMP),
            "kind": pa.array([a.kind for a in data], pa.string()),
            "source": pa.array([a.source for a in data], pa.string()),
            "symbol": pa.array([a.symbol for a in data], pa.string()),
            "value": decimals([a.value for a in data], VALUE),
            "unit": pa.array([a.unit for a in data], pa.string()),
            "stream_seq": pa.array([d.seq for d, _ in rows], pa.int64()),
            "dt": utc_dates(ts),
            "venue_symbol": pa.array([a.venue_symbol for a in data], pa.string()),
            "predicted": decimals([a.predicted for a in data], VALUE),
            "next_ts": pa.array([a.next_time for a in data], pa.int64()).cast(TIMESTAMP),
            "price": decimals([a.price for a in data], VALUE),
            "side": pa.array([a.side for a in data], pa.string()),
        }
        return pa.Table.from_pydict(columns, schema=self.table.schema)

    # QuestDB --------------------------------------------------------------------------------------

    async def start(self, rt: Runtime) -> None:
        await super().start(rt)
        self.qdb = QuestDBClient(self.settings)
        self._questdb_rows: list[Row] = []
        self._tables_ready = False
        questdb = Intake(rt, QUESTDB_INPUT, self._take_questdb, store=self._store_questdb)
        await questdb.start()
        self.questdb = questdb

    async def run(self, rt: Runtime) -> None:
        questdb = asyncio.create_task(self.questdb.run())
        try:
            await super().run(rt)
        finally:
            await asyncio.gather(questdb, return_exceptions=True)

    async def stop(self, rt: Runtime) -> None:
        await super().stop(rt)
        await self.questdb.stop()
        self.qdb.close()

    def _take_questdb(self, received: Received[AltDatum | None]) -> Sequence[Outgoing]:
        if received.value is not None and (row := row_of(received.value)) is not None:
            self._questdb_rows.append(row)
        return ()

    async def _store_questdb(self) -> None:
        rows, self._questdb_rows = self._questdb_rows, []
        if not rows:
            return
        if not self._tables_ready:
            await self.rt.retry("questdb.tables", lambda: asyncio.to_thread(ensure_alt_tables, self.qdb))
            self._tables_ready = True
        await self.rt.retry("questdb.write", lambda: asyncio.to_thread(write_alt, self.qdb, rows))

    def ready_checks(self) -> dict[str, bool]:
        intake = getattr(self, "questdb", None)
        return {
            **super().ready_checks(),
            **(intake.ready_checks() if intake else {"sink-alt-questdb": False}),
        }

    def health_details(self) -> dict[str, Any]:
        intake = getattr(self, "questdb", None)
        return {**super().health_details(), "questdb": intake.health_details() if intake else None}


SERVICE = SinkAlt
