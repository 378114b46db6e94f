"""spread-analyzer: cross-venue spreads, the NBBO, and opportunities net of taker fees.

Consumes: ``market.tick.>`` (stream MARKET_TICKS), every venue's ticks (the mock feed's venues and the
live gateway's), through ``trader.analytics.spreads.SpreadEngine`` (the latest quote of each venue per
instrument; event time; venues older than ``spread_analyzer.staleness_ms`` left out). Undecodable
ticks go to the dead letters.
Produces (stream SPREADS):

- ``SpreadSnapshot`` on ``market.spread.<SYMBOL>`` at the first tick of each ``publish_interval_ms`` of
  the instrument's event-time clock, ``Nats-Msg-Id`` ``<symbol>:<source_seq>`` (the tick's MARKET_TICKS
  sequence);
- ``SpreadOpportunity`` (open, close) on ``market.spread.<SYMBOL>.opportunity`` whenever a pair's net
  edge crosses ``threshold_bps``, ``Nats-Msg-Id`` ``<symbol>:<buy>:<sell>:<kind>:<source_seq>``;
- rows of QuestDB ``spreads`` (``trader.stores.spreads``): a sample every ``sample_interval_s`` of event
  time per instrument, and every opportunity event.

Inputs: ``market.tick.>`` of MARKET_TICKS in mode HISTORY (``trader.runtime.intake``).
State: the engine's (every venue's latest quote, the open opportunities, the interval clocks),
snapshotted (key ``spread-analyzer``) every ``SNAPSHOT_EVERY_MESSAGES`` ticks or ``SNAPSHOT_EVERY_S``
seconds, and at a graceful stop, once every row it made is in QuestDB.

Restart (even after SIGKILL): the engine is the snapshot's, and the ticks after it are applied again.
Every output is a function of the ticks in stream order, so they make the same messages with the same
ids: the replayed ticks' rows are written again (upserts), and their messages, which the intake does not
publish for a replay, are published once caught up unless their subject already held them at the start
(its latest message's ``source_seq``), so a crash leaves nothing missing and nothing doubled. Without a
usable snapshot (the first start) the whole stream is applied: QuestDB gets every sample and event, the
bus every event it lacks, and snapshots only on subjects it already has (not a day of past snapshots).
"""

from __future__ import annotations

import asyncio

import msgspec
from nats.js.errors import NotFoundError

from trader.analytics.spreads import SpreadConfig, SpreadEngine, SpreadState
from trader.bus.backoff import set_within
from trader.bus.publish import Outgoing
from trader.bus.streams import spread_opportunity_subject, spread_subject
from trader.config import Settings
from trader.marketdata.decode import decode_tick
from trader.messages import MarketTick, SpreadOpportunity, SpreadSnapshot, encode
from trader.runtime.intake import Input, Intake, Mode, Received
from trader.runtime.service import Runtime, Service
from trader.runtime.snapshots import Snapshotting
from trader.stores.questdb import QuestDBClient
from trader.stores.spreads import ensure_spreads_table, write_spreads

TICKS_INPUT = Input("MARKET_TICKS", "market.tick.>", MarketTick, Mode.HISTORY, decode=decode_tick)
OUTPUT_STREAM = "SPREADS"

STATE_VERSION = 1  # of SpreadState
SNAPSHOT_EVERY_MESSAGES = 50_000
# Short: the ticks after a snapshot are what a restart applies again.
SNAPSHOT_EVERY_S = 5.0

Row = SpreadSnapshot | SpreadOpportunity
_seq_of = msgspec.json.Decoder(dict[str, object])


def snapshot_message(snapshot: SpreadSnapshot) -> Outgoing:
    msg_id = f"{snapshot.symbol}:{snapshot.source_seq}"
    return Outgoing(spread_subject(snapshot.symbol), encode(snapshot), msg_id=msg_id)


def opportunity_message(event: SpreadOpportunity) -> Outgoing:
    msg_id = f"{event.symbol}:{event.buy_venue}:{event.sell_venue}:{event.kind}:{event.source_seq}"
    return Outgoing(spread_opportunity_subject(event.symbol), encode(event), msg_id=msg_id)


def engine_config(settings: Settings) -> SpreadConfig:
    """The engine's numbers from the settings, with every market-data venue's taker fee resolved."""
    cfg = settings.spread_analyzer
    venues = {*settings.market_data_venues(), *cfg.taker_fee_bps}
    return SpreadConfig(
        staleness_ms=cfg.staleness_ms,
        threshold_bps=cfg.threshold_bps,
        publish_interval_ms=cfg.publish_interval_ms,
        sample_interval_ms=max(1, round(cfg.sample_interval_s * 1000)),
        fees_bps={venue: settings.taker_fee_bps_of(venue) for venue in venues},
        default_fee_bps=cfg.default_taker_fee_bps,
        symbols=frozenset(cfg.symbols),
    )


class SpreadAnalyzer(Service):
    name = "spread-analyzer"
    intake: Intake[MarketTick] | None = None

    async def start(self, rt: Runtime) -> None:
        self.rt = rt
        self.config = engine_config(self.settings)
        self.engine = SpreadEngine(self.config)
        self.qdb = QuestDBClient(self.settings)
        await rt.retry("questdb.ddl", lambda: asyncio.to_thread(ensure_spreads_table, self.qdb))
        self._rows: list[Row] = []  # made, not yet in QuestDB
        self._writing = False
        self._stash: dict[str, list[tuple[int, Outgoing]]] = {}  # replayed outputs, by subject
        # Each output subject's latest source_seq on the bus at the start: what a replay need not publish.
        self._published = await rt.retry("spreads.published", self._published_seqs)
        self._events = 0
        snapshots = Snapshotting(
            key=self.name,
            state_type=SpreadState,
            version=STATE_VERSION,
            take=self.engine.state,
            restore=self.engine.restore,
            every_messages=SNAPSHOT_EVERY_MESSAGES,
            every_s=SNAPSHOT_EVERY_S,
            settled=self._settled,
        )
        intake = Intake(rt, TICKS_INPUT, self._take, on_caught_up=self._caught_up, snapshots=snapshots)
        self.intake = intake
        await intake.start()
        rt.log.info("spread_analyzer.started", fees_bps={k: str(v) for k, v in self.config.fees_bps.items()})

    def _settled(self) -> bool:
        """A snapshot waits until every row made so far is in QuestDB: none is lost by a crash after it."""
        return not self._rows and not self._writing

    # Ticks ---------------------------------------------------------------------------------------------

    def _take(self, received: Received[MarketTick]) -> list[Outgoing]:
        out = self.engine.on_tick(received.value, received.seq)
        if out.snapshot is None and out.sample is None and not out.events:
            return []
        if out.sample is not None:
            self._rows.append(out.sample)
        self._rows += out.events
        self._events += len(out.events)
        messages = [opportunity_message(e) for e in out.events]
        if out.snapshot is not None:
            messages.insert(0, snapshot_message(out.snapshot))
        intake = self.intake
        if intake is not None and not intake.caught_up and received.seq <= intake.replay_to:
            self._keep_replayed(received.seq, messages)
            return []  # the intake publishes nothing of a replay: _caught_up decides
        return messages

    def _keep_replayed(self, seq: int, messages: list[Outgoing]) -> None:
        """Keep what the bus lacks of a replayed tick's outputs: every event, and every snapshot after a
        restored state snapshot; without one (a first start), snapshots only on a subject already
        published (a day of past snapshots is history, not news)."""
        restored = self.intake is not None and self.intake.snapshot_problem is None
        for message in messages:
            last = self._published.get(message.subject)
            if seq <= (last or 0):
                continue
            if restored or last is not None or message.subject.endswith(".opportunity"):
                self._stash.setdefault(message.subject, []).append((seq, message))

    async def _caught_up(self) -> list[Outgoing]:
        """The replayed outputs that the bus did not hold (a crash before they were stored), in order."""
        missing = sorted((item for items in self._stash.values() for item in items), key=lambda i: i[0])
        self._stash = {}
        self.rt.log.info("spread_analyzer.caught_up", republished=len(missing))
        return [message for _, message in missing]

    async def _published_seqs(self) -> dict[str, int]:
        info = await self.rt.js.stream_info(OUTPUT_STREAM, subjects_filter="market.spread.>")
        published = {}
        for subject in info.state.subjects or {}:
            try:
                last = await self.rt.js.get_last_msg(OUTPUT_STREAM, subject)
            except NotFoundError:
                continue
            seq = _seq_of.decode(last.data or b"{}").get("source_seq", 0)
            published[subject] = seq if isinstance(seq, int) else 0
        return published

    # Running -------------------------------------------------------------------------------------------

    async def run(self, rt: Runtime) -> None:
        if self.intake is None:
            return
        done = asyncio.Event()
        writer = asyncio.create_task(self._write_loop(rt, done))
        try:
            await self.intake.run()
        finally:
            done.set()  # never cancelled: rows taken for a write must reach QuestDB
            await writer

    async def _write_loop(self, rt: Runtime, done: asyncio.Event) -> None:
        interval = self.settings.spread_analyzer.flush_interval_s
        while not done.is_set():
            await set_within(done, interval)
            await self._write(rt)

    async def _write(self, rt: Runtime) -> None:
        if not self._rows or self._writing:
            return
        self._writing = True
        try:
            rows, self._rows = self._rows, []
            await rt.retry("questdb.write", lambda: asyncio.to_thread(write_spreads, self.qdb, rows))
        finally:
            self._writing = False

    async def stop(self, rt: Runtime) -> None:
        await self._write(rt)  # every row made, so that the last snapshot holds nothing unwritten
        if self.intake is not None:
            await self.intake.stop()
        self.qdb.close()

    # Probes --------------------------------------------------------------------------------------------

    def ready_checks(self) -> dict[str, bool]:
        if self.intake is None:
            return {"intake": False}
        return self.intake.ready_checks()

    def health_details(self) -> dict[str, object]:
        if self.intake is None:
            return {}
        symbols = self.engine.symbols()
        return {
            "instruments": symbols,
            "open_opportunities": sum(len(self.engine.open_opportunities(s)) for s in symbols),
            "opportunity_events": self._events,
            "rows_pending": len(self._rows),
            "intake": self.intake.health_details(),
        }


SERVICE = SpreadAnalyzer
