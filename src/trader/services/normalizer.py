"""normalizer: ticks to OHLCV bars.

Consumes: ``market.tick.>`` (stream MARKET_TICKS), one intake input in mode WORK (``trader.runtime.intake``)
with its own checkpoint (``OwnCheckpoint``): the batches go whole to ``trader.marketdata.bars.BarBuilder``.
Produces: rows in QuestDB ``ohlcv_<timeframe>`` (upserted on (ts, venue, symbol); the bar in progress
too, with ``closed`` false) and closed bars on ``market.bar.<timeframe>.<venue>.<SYMBOL>`` (stream BARS):
bars are built per (venue, symbol), so the mock feed's ticks and a live venue's never share a bar;
ticks that `trader replay` republishes (venue ``replay-<venue>``, old event times) on a clock of their
own, their event time standing for arrival (``trader.marketdata.replay_bars``); refused ticks
(undecodable, invalid: by the intake; late: here) on the dead letters.
State: the unfinished bars, and a checkpoint in the TRADER_STATE bucket: the stream sequence a restart
replays from to rebuild them (the intake resumes there), the last sequence processed (the ticks up to it
rebuild the bars without their refusals sent again), and the clock before which every bar is final and
stored. A restart rebuilds the same bars from the same messages (see ``trader.marketdata.bars``), so a
crash changes nothing in QuestDB but the moment rows are written. Bars are stored at most every
``flush_interval_s`` (each flush is a QuestDB commit per table and a checkpoint), and at a stop; the
wall clock closes quiet bars only while nothing waits to be read.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Sequence

import msgspec
from nats.js.kv import KeyValue

from trader.bus.publish import Outgoing
from trader.bus.streams import STATE_BUCKET, bar_subject
from trader.marketdata.decode import decode_tick
from trader.marketdata.replay_bars import BarsWithReplays
from trader.messages import Bar, MarketTick, encode
from trader.runtime.consumer import now_ms
from trader.runtime.intake import Batching, Input, Intake, Mode, Received, Resume
from trader.runtime.service import Refused, Runtime, Service
from trader.stores.questdb import QuestDBClient

CHECKPOINT_KEY = "normalizer.checkpoint"


class Checkpoint(msgspec.Struct):
    resume_seq: int = 0  # replay from here to rebuild every unfinished bar
    final_before: int = 0  # bars ending (plus lateness) at or before this clock are final and stored
    last_seq: int = 0  # everything up to here was processed (its dead letters already sent)
    # Ticks of `trader replay` (venue replay-<venue>) are cut into bars on a clock of their own
    # (trader.marketdata.replay_bars): its horizon, and where the replays that ended stop.
    replay_final_before: int = 0
    replay_done_seq: int = 0


def ticks_input(max_batch: int, flush_interval_s: float) -> Input[MarketTick]:
    """Every tick once, in batches of up to ``max_batch`` or ``flush_interval_s``; delivery runs ahead
    of a flush by several batches (the server goes on sending while bars are stored)."""
    batching = Batching(eager=False, wait_s=flush_interval_s, max_ack_pending=max_batch * 10)
    return Input(
        "MARKET_TICKS",
        "market.tick.>",
        MarketTick,
        Mode.WORK,
        decode=decode_tick,
        max_batch=max_batch,
        batching=batching,
    )


def _not_one_by_one(received: Received[MarketTick]) -> list[Outgoing]:
    raise AssertionError("the normalizer takes its batches whole (live)")


class Normalizer(Service):
    name = "normalizer"
    intake: Intake[MarketTick] | None = None

    async def start(self, rt: Runtime) -> None:
        cfg = self.settings.normalizer
        self.rt = rt
        self.qdb = QuestDBClient(self.settings)
        await asyncio.to_thread(self.qdb.ensure_bar_tables, cfg.timeframes)
        self.kv: KeyValue = await rt.js.key_value(STATE_BUCKET)
        self.lateness_ms = int(cfg.lateness_s * 1000)
        self.checkpoint = Checkpoint()
        self.builder = self._builder(self.checkpoint)
        self.next_seq = 1
        self._refused: list[Refused] = []  # late ticks of the batches since the last flush
        self._flushed_at = float("-inf")  # monotonic
        intake = Intake(
            rt,
            ticks_input(cfg.max_batch, cfg.flush_interval_s),
            _not_one_by_one,
            live=self._take,
            checkpoint=self,
        )
        await intake.start()  # loads the checkpoint (``load``)
        rt.log.info("normalizer.resumed", **msgspec.structs.asdict(self.checkpoint))
        self.intake = intake

    async def load(self) -> Resume:
        """The checkpoint; the bars' clock from it; the intake resumes where the bars must be rebuilt."""
        try:
            entry = await self.kv.get(CHECKPOINT_KEY)
        except Exception:  # no checkpoint yet: a first start
            checkpoint = Checkpoint()
        else:
            checkpoint = msgspec.json.decode(entry.value or b"{}", type=Checkpoint)
        self.checkpoint = checkpoint
        self.builder = self._builder(checkpoint)
        self.next_seq = checkpoint.resume_seq or 1
        return Resume(after=self.next_seq - 1, seen_to=checkpoint.last_seq)

    def _builder(self, checkpoint: Checkpoint) -> BarsWithReplays:
        return BarsWithReplays(
            self.settings.normalizer.timeframes,
            self.lateness_ms,
            final_before=checkpoint.final_before,
            replay_final_before=checkpoint.replay_final_before,
            replay_done_seq=checkpoint.replay_done_seq,
            replayed_to=checkpoint.last_seq,
        )

    async def run(self, rt: Runtime) -> None:
        if self.intake is not None:
            await self.intake.run()

    async def stop(self, rt: Runtime) -> None:
        if self.intake is not None:
            await self.intake.stop()
            await self._flush()  # what the last batches changed, stored before the process ends
        self.qdb.close()

    async def _take(self, batch: list[Received[MarketTick]]) -> Sequence[Outgoing]:
        """The batch's ticks counted in the bars together; the late ones kept for the dead letters
        (not those of ticks processed before a restart: sent then)."""
        entries = [(r.value, r.seq, r.arrival_ms) for r in batch]
        for i, outcome in self.builder.add_many(entries):
            received = batch[i]
            if received.redelivered:
                continue  # refused before the restart, or a tick whose bars were final and stored
            delay = received.arrival_ms - received.value.timestamp
            if outcome == "late":
                reason = f"late: arrived {delay} ms after its event time; the window is {self.lateness_ms} ms"
            else:
                reason = f"late: arrived {delay} ms after its event time, when its bars were final"
            stored = received.stored
            self._refused.append(
                Refused(stored.seq, stored.subject, stored.data, stored.headers, "late", reason)
            )
        return ()

    async def save(self, seq: int) -> int:
        """Everything up to ``seq`` processed (its undecodable ticks dead-lettered by the intake): the
        bars stored and the checkpoint moved once ``flush_interval_s`` has passed since the last flush.
        Returns the last tick whose bars are stored (the intake acknowledges up to it)."""
        self.next_seq = max(self.next_seq, seq + 1)
        if time.monotonic() - self._flushed_at >= self.settings.normalizer.flush_interval_s:
            await self._flush()
        return self.checkpoint.last_seq

    async def _flush(self) -> None:
        """Late ticks' dead letters, then the bars that closed or changed to QuestDB and the bus, then
        the checkpoint."""
        rt = self.rt
        self._flushed_at = time.monotonic()
        refused, self._refused = self._refused, []
        safety_ms = int(self.settings.normalizer.clock_safety_s * 1000)
        at_end = self.intake is None or self.intake.at_end
        out = self.builder.advance(now_ms() - safety_ms if at_end else None)
        checkpoint = Checkpoint(
            resume_seq=self.builder.resume_seq(self.next_seq),
            final_before=self.builder.final_before,
            last_seq=max(self.next_seq - 1, self.checkpoint.last_seq),
            replay_final_before=self.builder.replay_final_before,
            replay_done_seq=self.builder.replay_done_seq,
        )
        # Dead letters first: once the checkpoint moves past them, they are not sent again.
        await rt.dead_letter("MARKET_TICKS", refused)
        # QuestDB and the bus at once: the checkpoint waits for both.
        await asyncio.gather(self._write_bars(out.bars + out.open_bars), self._publish_bars(out.bars))
        if checkpoint != self.checkpoint:
            await rt.retry("checkpoint", lambda: self.kv.put(CHECKPOINT_KEY, msgspec.json.encode(checkpoint)))
            self.checkpoint = checkpoint

    async def _write_bars(self, rows: list[Bar]) -> None:
        if rows:
            await self.rt.retry("questdb.write", lambda: asyncio.to_thread(self.qdb.write_bars, rows))

    async def _publish_bars(self, closed: list[Bar]) -> None:
        if closed:
            await self.rt.publish_reliably([_bar_message(bar) for bar in closed])

    def ready_checks(self) -> dict[str, bool]:
        if self.intake is None:
            return {"intake": False}
        return self.intake.ready_checks()

    def health_details(self) -> dict[str, object]:
        if self.intake is None:
            return {}
        return {
            "open_bars": self.builder.open_bars(),
            "checkpoint": msgspec.structs.asdict(self.checkpoint),
            "intake": self.intake.health_details(),
        }


def _bar_message(bar: Bar) -> Outgoing:
    # The trade count tells versions of one bar apart: an amendment is a new message, a rebuild of
    # the same bar after a restart is the same message and is stored once.
    msg_id = f"{bar.venue}:{bar.symbol}:{bar.timeframe}:{bar.start}:{bar.trades}"
    return Outgoing(bar_subject(bar.timeframe, bar.venue, bar.symbol), encode(bar), msg_id=msg_id)


SERVICE = Normalizer
