"""feature-eng: streaming features of closed bars (``trader.analytics.features``).

Consumes:
- ``market.bar.>`` (stream BARS) in mode HISTORY: every closed bar of a configured timeframe and venue
  (``feature_eng.timeframes``, ``.venues``), in stream order, into its (venue, symbol, timeframe)'s
  feature set (``feature_eng.features``);
- ``market.tick.>`` (MARKET_TICKS) in mode LATEST: the sided volume of each bar's ticks (``imbalance``),
  only when the feature set has it;
- ``market.spread.<SYMBOL>`` (SPREADS) in mode LATEST: spread-analyzer's best cross-venue pair
  (``spread_bps``), only when the feature set has it.
Produces, for every bar taken:
- ``Features`` on ``market.feature.<tf>.<venue>.<SYMBOL>`` (stream FEATURES), ``Nats-Msg-Id``
  ``<venue>:<symbol>:<tf>:<start>``;
- a row of QuestDB ``features_<tf>`` (``trader.stores.questdb_features``: DEDUP UPSERT KEYS), written
  by the intake's store hook after the batch's features are stored and before the batch is
  acknowledged or snapshotted (a replayed bar's row is written again: the write replaces itself).
The Delta table ``<lake_root>/features`` is sink-features' (``trader.services.sink_features``), from the
FEATURES stream: the lake's exactly-once (the stream sequence committed in the Delta transaction) holds
only for a writer reading one stream in order, which feature-eng, publishing features of a replay
after a restart, is not.

State: every series' features, the open tick buckets, the latest spreads (``EngineState``), snapshotted
(key ``feature-eng``) every ``snapshot_every_bars`` bars or ``snapshot_every_s`` seconds and at a
graceful stop, with the BARS sequence it covers; never while rows or features of the replay are still
to be stored.

Restart (even after SIGKILL): the state is the latest snapshot's (none, or of another schema: empty,
and every bar BARS holds warms the features up), then the bars after it are replayed. The features of
a replayed bar are published (and written) only when they are newer than the last one on their
subject in FEATURES, read at start: the bars that came while the service was down, or whose features
a crash kept from the bus. So nothing is missing and nothing doubled, and the numbers are those an
uninterrupted run gives (the snapshot holds the running state, digit for digit). Ticks and spreads are
live only: the imbalance of the bar in progress at a restart counts only the ticks after it, and a
replayed bar has the latest spread, not the one of its time. /ready waits for the replay.
"""

from __future__ import annotations

import asyncio

import msgspec
from nats.js.errors import NotFoundError

from trader.analytics.features.engine import EngineState, FeatureEngine
from trader.bus.publish import Outgoing
from trader.bus.streams import feature_subject
from trader.marketdata.decode import decode_tick
from trader.messages import Bar, Features, MarketTick, SpreadSnapshot, encode
from trader.runtime.intake import Input, Intake, Mode, Received
from trader.runtime.service import Runtime, Service
from trader.runtime.snapshots import Snapshotting
from trader.stores.questdb import QuestDBClient
from trader.stores.questdb_features import ensure_feature_tables, write_features

STREAM = "FEATURES"
# Batches of up to 5,000 bars: each costs a publish round and a QuestDB commit, whatever its size.
BARS_INPUT = Input("BARS", "market.bar.>", Bar, Mode.HISTORY, max_batch=5_000)
TICKS_INPUT = Input(
    "MARKET_TICKS", "market.tick.>", MarketTick, Mode.LATEST, name="feature-eng-ticks", decode=decode_tick
)
SPREADS_INPUT = Input("SPREADS", "market.spread.*", SpreadSnapshot, Mode.LATEST, name="feature-eng-spreads")

STATE_VERSION = 1  # of EngineState

_features = msgspec.json.Decoder(Features)


def features_message(features: Features) -> Outgoing:
    subject = feature_subject(features.timeframe, features.venue, features.symbol)
    msg_id = f"{features.venue}:{features.symbol}:{features.timeframe}:{features.start}"
    return Outgoing(subject, encode(features), msg_id=msg_id)


class FeatureEng(Service):
    name = "feature-eng"

    async def start(self, rt: Runtime) -> None:
        self.rt = rt
        cfg = self.settings.feature_eng
        self.engine = FeatureEngine(cfg)
        self.qdb = QuestDBClient(self.settings)
        await asyncio.to_thread(ensure_feature_tables, self.qdb, cfg.timeframes, self.engine.columns)
        self.published = await self._last_published(rt)
        self._rows: list[Features] = []  # to QuestDB at the batch's store
        self._replayed: list[Outgoing] = []  # features of the replay not on the bus yet
        self.republished = 0
        snapshots = Snapshotting(
            key=self.name,
            state_type=EngineState,
            version=STATE_VERSION,
            take=self.engine.state,
            restore=self.engine.restore,
            every_messages=cfg.snapshot_every_bars,
            every_s=cfg.snapshot_every_s,
            settled=lambda: not self._rows and not self._replayed,
        )
        self.bars = Intake(rt, BARS_INPUT, self._take_bar, snapshots=snapshots, store=self._store)
        self.intakes: list[Intake] = [self.bars]
        # Ticks and spreads only for a feature set that uses them: decoding every tick costs CPU.
        if "imbalance" in self.engine.columns:
            self.intakes.append(Intake(rt, TICKS_INPUT, self._take_tick))
        if "spread_bps" in self.engine.columns:
            self.intakes.append(Intake(rt, SPREADS_INPUT, self._take_spread))
        for intake in self.intakes:
            await intake.start()

    async def _last_published(self, rt: Runtime) -> dict[str, int]:
        """The start of the last bar whose features each FEATURES subject holds."""
        info = await rt.js.stream_info(STREAM, subjects_filter="market.feature.>")
        published: dict[str, int] = {}
        for subject in info.state.subjects or {}:
            try:
                latest = await rt.js.get_last_msg(STREAM, subject)
            except NotFoundError:
                continue
            try:
                published[subject] = _features.decode(latest.data or b"").start
            except msgspec.DecodeError:
                rt.log.warning("feature_eng.unreadable_last", subject=subject)
        rt.log.info("feature_eng.last_published", subjects=len(published))
        return published

    def _take_bar(self, received: Received[Bar]) -> list[Outgoing]:
        features = self.engine.on_bar(received.value)
        if features is None:
            return []
        message = features_message(features)
        # Every row, a replayed bar's too: a crash may have come between its features and its row
        # (written again, the row replaces itself).
        self._rows.append(features)
        if self.bars.caught_up:
            return [message]
        if features.start > self.published.get(message.subject, -1):
            self._replayed.append(message)  # a replayed bar whose features never reached the bus
        return []

    async def _store(self) -> None:
        """The batch's features not yet on the bus (a replay's) and the batch's rows to QuestDB, at
        once: both wait on another server, and neither needs the other (a row without its features on
        the bus, after a crash, is written again with them at the next start)."""
        replayed, self._replayed = self._replayed, []
        rows, self._rows = self._rows, []
        await asyncio.gather(self._publish_replayed(replayed), self._write_rows(rows))

    async def _publish_replayed(self, replayed: list[Outgoing]) -> None:
        if replayed:
            await self.rt.publish_reliably(replayed)
            self.republished += len(replayed)
            self.rt.metrics.count_out(len(replayed))

    async def _write_rows(self, rows: list[Features]) -> None:
        if rows:
            await self.rt.retry("questdb.write", lambda: asyncio.to_thread(write_features, self.qdb, rows))

    def _take_tick(self, received: Received[MarketTick]) -> list[Outgoing]:
        self.engine.on_tick(received.value)
        return []

    def _take_spread(self, received: Received[SpreadSnapshot]) -> list[Outgoing]:
        spread = received.value
        best = None if spread.best is None else float(spread.best.gross_bps)
        self.engine.on_spread(spread.symbol, spread.timestamp, best)
        return []

    async def run(self, rt: Runtime) -> None:
        await asyncio.gather(*(intake.run() for intake in self.intakes))

    async def stop(self, rt: Runtime) -> None:
        for intake in reversed(getattr(self, "intakes", [])):  # the bars last: their final snapshot
            await intake.stop()
        if hasattr(self, "qdb"):
            self.qdb.close()

    def ready_checks(self) -> dict[str, bool]:
        if not hasattr(self, "intakes"):
            return {"intake": False}
        return {name: ok for intake in self.intakes for name, ok in intake.ready_checks().items()}

    def health_details(self) -> dict[str, object]:
        if not hasattr(self, "intakes"):
            return {}
        return {
            "series": len(self.engine.series),
            "columns": self.engine.columns,
            "amended_bars_not_taken": self.engine.amended,
            "republished_after_restart": self.republished,
            "intake": self.bars.health_details(),
        }


SERVICE = FeatureEng
