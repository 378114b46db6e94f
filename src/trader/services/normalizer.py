"""normalizer: ticks to OHLCV bars.

Consumes: ``market.tick.>`` (stream MARKET_TICKS).
Produces: rows in QuestDB ``ohlcv_<timeframe>`` (upserted on (ts, venue, symbol); the bar in progress
too, with ``closed`` false) and closed bars on ``market.bar.<timeframe>.<venue>.<SYMBOL>`` (stream BARS):
bars are built per (venue, symbol), so the mock feed's ticks and a live venue's never share a bar;
ticks that `trader replay` republishes (venue ``replay-<venue>``, old event times) on a clock of their
own, their event time standing for arrival (``trader.marketdata.replay_bars``); refused ticks
(undecodable, invalid, late) on the dead letters.
State: the unfinished bars, and a checkpoint in the TRADER_STATE bucket: the stream sequence a restart
replays from to rebuild them, and the clock before which every bar is final and stored. A restart
rebuilds the same bars from the same messages (see ``trader.marketdata.bars``), so a crash changes
nothing in QuestDB but the moment rows are written.
"""

from __future__ import annotations

import asyncio
import time

import msgspec

from trader.bus.publish import Outgoing
from trader.bus.streams import STATE_BUCKET, bar_subject
from trader.marketdata.decode import InvalidMessage, decode_tick
from trader.marketdata.replay_bars import BarsWithReplays
from trader.messages import Bar, MarketTick, encode
from trader.runtime.consumer import Delivery, StreamConsumer, now_ms
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


class Normalizer(Service):
    name = "normalizer"

    async def start(self, rt: Runtime) -> None:
        cfg = self.settings.normalizer
        self.qdb = QuestDBClient(self.settings)
        await asyncio.to_thread(self.qdb.ensure_bar_tables, cfg.timeframes)
        self.kv = await rt.js.key_value(STATE_BUCKET)
        self.checkpoint = await self._load_checkpoint()
        self.lateness_ms = int(cfg.lateness_s * 1000)
        self.builder = BarsWithReplays(
            cfg.timeframes,
            self.lateness_ms,
            final_before=self.checkpoint.final_before,
            replay_final_before=self.checkpoint.replay_final_before,
            replay_done_seq=self.checkpoint.replay_done_seq,
            replayed_to=self.checkpoint.last_seq,
        )
        self.next_seq = self.checkpoint.resume_seq or 1
        self.consumer = StreamConsumer(
            rt,
            stream="MARKET_TICKS",
            name=self.name,
            subject="market.tick.>",
            start_seq=self.checkpoint.resume_seq or None,
            max_rows=cfg.max_batch,
            max_wait_s=cfg.flush_interval_s,
            # Batches go on while earlier ones are stored (see ``run``), and a flush waits its turns on
            # a busy event loop: room for several batches not yet acknowledged.
            max_ack_pending=cfg.max_batch * 10,
        )
        self._refused: list[Refused] = []  # dead letters of the batches processed since the last flush
        self._unacked: list[Delivery] = []  # the last batch processed and not yet covered by a flush
        self._work, self._closing = asyncio.Event(), False
        await self.consumer.start()
        rt.log.info("normalizer.resumed", **msgspec.structs.asdict(self.checkpoint))

    async def _load_checkpoint(self) -> Checkpoint:
        try:
            entry = await self.kv.get(CHECKPOINT_KEY)
        except Exception:  # no checkpoint yet: a first start
            return Checkpoint()
        return msgspec.json.decode(entry.value or b"{}", type=Checkpoint)

    async def run(self, rt: Runtime) -> None:
        """Batches are processed while the previous results are being stored: a flush (QuestDB, bars
        on the bus, checkpoint, acknowledgement) waits on the servers for longer than a batch takes to
        count, and one flush covers every batch processed while the one before it ran."""
        flusher = asyncio.create_task(self._flush_loop(rt))
        async for batch in self.consumer.batches():
            if flusher.done():
                break  # it failed: its error is raised below
            started = time.perf_counter()
            self._refused += self._process(batch)
            if batch:
                self.next_seq = batch[-1].seq + 1
                self._unacked = batch
                rt.metrics.count_in(len(batch))
                rt.metrics.observe_batch(time.perf_counter() - started)
            self._work.set()  # also for an empty batch: the clock may close bars
        self._closing = True
        self._work.set()
        await flusher  # never cancelled: bars taken from the builder must reach QuestDB

    async def _flush_loop(self, rt: Runtime) -> None:
        interval = self.settings.normalizer.flush_interval_s
        while True:
            await self._work.wait()
            self._work.clear()
            started = time.monotonic()
            await self._flush(rt)
            if self._closing and not self._work.is_set():
                return  # the batches processed during the last flush are stored too
            # One flush per interval at most, however fast batches come: each is a QuestDB commit per
            # table and a checkpoint, which cost the servers as much as the ticks themselves.
            rest = interval - (time.monotonic() - started)
            if rest > 0 and not self._closing:
                await asyncio.sleep(rest)

    async def stop(self, rt: Runtime) -> None:
        await self._flush(rt)
        self.qdb.close()

    def _process(self, batch: list[Delivery]) -> list[Refused]:
        """Decode the batch, count its ticks in the bars together; what is refused, in stream order."""
        refused: list[Refused] = []
        replayed_to = self.checkpoint.last_seq
        decoded: list[Delivery] = []
        entries: list[tuple[MarketTick, int, int]] = []
        for d in batch:
            try:
                entries.append((decode_tick(d.data), d.seq, d.arrival_ms))
            except InvalidMessage as exc:
                if d.seq > replayed_to:  # a replay does not send the same dead letter twice
                    refused.append(Refused(d.seq, d.subject, d.data, d.headers, exc.field, str(exc)))
                continue
            decoded.append(d)
        for i, outcome in self.builder.add_many(entries):
            d, tick = decoded[i], entries[i][0]
            if d.seq <= replayed_to:
                continue  # refused before the restart, or a tick whose bars were final and stored
            delay = d.arrival_ms - tick.timestamp
            if outcome == "late":
                reason = f"late: arrived {delay} ms after its event time; the window is {self.lateness_ms} ms"
            else:
                reason = f"late: arrived {delay} ms after its event time, when its bars were final"
            refused.append(Refused(d.seq, d.subject, d.data, d.headers, "late", reason))
        refused.sort(key=lambda r: r.seq or 0)
        return refused

    async def _flush(self, rt: Runtime) -> None:
        """Dead letters, then the bars that closed or changed to QuestDB and the bus, then the checkpoint,
        then the acknowledgement. What to store is taken at once, before any wait: batches processed
        meanwhile belong to the next flush."""
        refused, self._refused = self._refused, []
        unacked, self._unacked = self._unacked, []
        safety_ms = int(self.settings.normalizer.clock_safety_s * 1000)
        wall = now_ms() - safety_ms if self.consumer.caught_up else None
        out = self.builder.advance(wall)
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
        await asyncio.gather(self._write_bars(rt, out.bars + out.open_bars), self._publish_bars(rt, out.bars))
        if checkpoint != self.checkpoint:
            await rt.retry("checkpoint", lambda: self.kv.put(CHECKPOINT_KEY, msgspec.json.encode(checkpoint)))
            self.checkpoint = checkpoint
        await self.consumer.ack(unacked)

    async def _write_bars(self, rt: Runtime, rows: list[Bar]) -> None:
        if rows:
            await rt.retry("questdb.write", lambda: asyncio.to_thread(self.qdb.write_bars, rows))

    async def _publish_bars(self, rt: Runtime, closed: list[Bar]) -> None:
        if closed:
            await rt.publish_reliably([_bar_message(bar) for bar in closed])

    def ready_checks(self) -> dict[str, bool]:
        return {"consumer": hasattr(self, "consumer")}

    def health_details(self) -> dict[str, object]:
        if not hasattr(self, "builder"):
            return {}
        return {"open_bars": self.builder.open_bars(), "checkpoint": msgspec.structs.asdict(self.checkpoint)}


def _bar_message(bar: Bar) -> Outgoing:
    # The trade count tells versions of one bar apart: an amendment is a new message, a rebuild of
    # the same bar after a restart is the same message and is stored once.
    msg_id = f"{bar.venue}:{bar.symbol}:{bar.timeframe}:{bar.start}:{bar.trades}"
    return Outgoing(bar_subject(bar.timeframe, bar.venue, bar.symbol), encode(bar), msg_id=msg_id)


SERVICE = Normalizer
