"""ohlcv-agg: higher timeframes (by default 5m, 15m, 1h, 4h, 1d) from the normalizer's 1m bars.

Consumes: ``market.bar.1m.>`` (stream BARS), the normalizer's closed 1m bars and their amendments.
Produces: rows in QuestDB ``ohlcv_<tf>`` (``DEDUP UPSERT KEYS(ts, venue, symbol)``; the bar in progress
with ``closed`` false, rewritten as it changes, then closed true), and every closed bar, and every
amendment of one, on ``market.bar.<tf>.<venue>.<SYMBOL>`` (stream BARS) with ``Nats-Msg-Id``
``<venue>:<symbol>:<tf>:<start>:<trades>`` (the normalizer's form: an amendment has more trades, so it is
a new message; the same bar again is stored once). A 1m bar the engine refuses (its minute is past its
amend window, ``trader.analytics.timeframes``) goes to the dead letters with the reason.

Inputs: ``market.bar.1m.>`` of BARS in mode HISTORY (``trader.runtime.intake``).
State: the engine's open bars and recent minutes (``trader.analytics.timeframes.EngineState``),
snapshotted (key ``ohlcv-agg``) every ``snapshot_every_messages`` bars or ``snapshot_every_s`` seconds
and at a graceful stop. The flush (bars taken from the engine, stored, published) is the intake's
periodic work (``Periodic``, every ``flush_interval_s``, and at the stop): it runs between batches and
before a snapshot, so a snapshot never holds a bar marked stored that is not.

Restart (SIGKILL included): the snapshot's state, then the 1m bars after it, rebuild exactly the bars
of before (the engine's rules use the messages alone, never the time they are read). While that replay
runs, a closed bar is published only if its subject's latest message at the start does not already hold
it or a later bar: what was published before the crash is not published again, however long ago. Rows
are upserted, so writing them again changes nothing. Once caught up, bars are published as they close.
Without a snapshot (the first start) the whole BARS stream is read: the higher bars of what it holds
are built, stored and published (a backfill of what is missing).
"""

from __future__ import annotations

import asyncio

import msgspec
from nats.js.errors import NotFoundError

from trader.analytics.timeframes import EngineState, HigherTimeframes, TimeframeConfig, TooLate
from trader.bus.publish import Outgoing
from trader.bus.streams import bar_subject
from trader.marketdata.decode import InvalidMessage
from trader.messages import Bar, encode
from trader.runtime.consumer import now_ms
from trader.runtime.intake import Input, Intake, Mode, Periodic, Received
from trader.runtime.service import Runtime, Service
from trader.runtime.snapshots import Snapshotting
from trader.stores.questdb import QuestDBClient

MINUTE_BARS = "market.bar.1m.>"
STATE_VERSION = 1  # of EngineState
_LOOKUPS = 32  # latest-message lookups in flight during a replay

_bar = msgspec.json.Decoder(Bar)


def bar_message(bar: Bar) -> Outgoing:
    msg_id = f"{bar.venue}:{bar.symbol}:{bar.timeframe}:{bar.start}:{bar.trades}"
    return Outgoing(bar_subject(bar.timeframe, bar.venue, bar.symbol), encode(bar), msg_id=msg_id)


def holds(latest: Bar | None, bar: Bar) -> bool:
    """Whether a subject whose latest message is ``latest`` already has ``bar`` (or a later bar)."""
    if latest is None:
        return False
    return bar.start < latest.start or (bar.start == latest.start and bar.trades <= latest.trades)


class OhlcvAgg(Service):
    name = "ohlcv-agg"
    intake: Intake[Bar] | None = None

    async def start(self, rt: Runtime) -> None:
        cfg = self.settings.ohlcv_agg
        self.rt = rt
        self.engine = HigherTimeframes(self._config())
        self.qdb = QuestDBClient(self.settings)
        tables = cfg.timeframes
        await rt.retry("questdb.tables", lambda: asyncio.to_thread(self.qdb.ensure_bar_tables, tables))
        self._latest_at_start: dict[str, Bar | None] = {}  # subject -> its latest bar, for the replay
        snapshots = Snapshotting(
            key=self.name,
            state_type=EngineState,
            version=STATE_VERSION,
            take=self.engine.state,
            restore=self.engine.restore,
            every_messages=cfg.snapshot_every_messages,
            every_s=cfg.snapshot_every_s,
        )
        source = Input("BARS", MINUTE_BARS, Bar, Mode.HISTORY, max_batch=cfg.max_batch)
        flush = Periodic(cfg.flush_interval_s, lambda: self._flush(rt))
        intake = Intake(rt, source, self._take_bar, snapshots=snapshots, periodic=flush)
        await intake.start()
        self.intake = intake

    def _config(self) -> TimeframeConfig:
        cfg = self.settings.ohlcv_agg
        lateness_s = self.settings.normalizer.lateness_s
        if cfg.amend_window_s < lateness_s + self.settings.normalizer.flush_interval_s:
            raise ValueError(
                f"ohlcv_agg.amend_window_s ({cfg.amend_window_s}) is shorter than the normalizer's "
                f"lateness_s ({lateness_s}) plus its flush interval: amendments would be refused"
            )
        both = sorted(set(cfg.timeframes) & set(self.settings.normalizer.timeframes))
        if both:
            raise ValueError(
                f"timeframes {both} are built by both the normalizer and ohlcv-agg: they would write the "
                "same ohlcv_<tf> rows and publish on the same subjects; give each timeframe to one"
            )
        return TimeframeConfig(
            tuple(cfg.timeframes),
            amend_window_ms=int(cfg.amend_window_s * 1000),
            close_after_ms=int(cfg.close_after_s * 1000),
        )

    def _take_bar(self, received: Received[Bar]) -> list[Outgoing]:
        try:
            self.engine.add(received.value)
        except TooLate as exc:
            raise InvalidMessage("start", str(exc)) from None
        except ValueError as exc:
            raise InvalidMessage("timeframe", str(exc)) from None
        return []  # bars are stored and published by the flush, at most every flush_interval_s

    async def run(self, rt: Runtime) -> None:
        if self.intake is not None:
            await self.intake.run()  # the flush runs in it, between batches

    async def _flush(self, rt: Runtime) -> None:
        """Take the changed bars from the engine and store them: QuestDB, and the closed ones on the
        bus. Until the intake has caught up, the wall clock closes nothing (a replay is not cut short)
        and what the bus already holds is not published again."""
        live = self.intake is not None and self.intake.caught_up
        out = self.engine.take(now_ms() if live else None)
        publish = out.publish
        if not live:
            publish = await self._not_on_bus(publish)
        elif self._latest_at_start:
            self._latest_at_start = {}
        await asyncio.gather(self._write(rt, out.write), self._publish(rt, publish))

    async def _write(self, rt: Runtime, rows: list[Bar]) -> None:
        if rows:
            await rt.retry("questdb.write", lambda: asyncio.to_thread(self.qdb.write_bars, rows))

    async def _publish(self, rt: Runtime, closed: list[Bar]) -> None:
        if closed:
            await rt.publish_reliably([bar_message(bar) for bar in closed])
            rt.metrics.count_out(len(closed))

    async def _not_on_bus(self, closed: list[Bar]) -> list[Bar]:
        """The bars the latest message of their subject (as it was when the service started) does not
        hold yet: during a replay, nothing published before the crash is published again."""
        subjects = {bar_subject(b.timeframe, b.venue, b.symbol) for b in closed}
        missing = [s for s in subjects if s not in self._latest_at_start]
        limit = asyncio.Semaphore(_LOOKUPS)

        async def look(subject: str) -> None:
            async with limit:
                self._latest_at_start[subject] = await self.rt.retry(
                    "bars.latest", lambda: self._latest(subject)
                )

        await asyncio.gather(*(look(s) for s in missing))
        latest = self._latest_at_start
        return [b for b in closed if not holds(latest[bar_subject(b.timeframe, b.venue, b.symbol)], b)]

    async def _latest(self, subject: str) -> Bar | None:
        try:
            message = await self.rt.js.get_last_msg("BARS", subject)
        except NotFoundError:
            return None
        return _bar.decode(message.data or b"{}")

    async def stop(self, rt: Runtime) -> None:
        if self.intake is not None:
            await self.intake.stop()  # the last flush, then the last snapshot
        self.qdb.close()

    def ready_checks(self) -> dict[str, bool]:
        if self.intake is None:
            return {"intake": False}
        return self.intake.ready_checks()

    def health_details(self) -> dict[str, object]:
        if self.intake is None:
            return {}
        return {
            "series": self.engine.series_count(),
            "open_bars": self.engine.open_buckets(),
            "timeframes": list(self.engine.config.timeframes),
            "intake": self.intake.health_details(),
        }


SERVICE = OhlcvAgg
