"""`trader replay`: stored ticks from the lake back onto the bus, under replay venues, at a chosen speed.

The lake is read in a thread (``LakeTicks``: time order across symbols, memory bounded), a batch at a
time through a small queue; the event loop paces the ticks (``trader.backtest.replay.Pacer``) and
publishes them in order with up to ``WINDOW`` acknowledgements in flight. Ctrl-C (SIGINT) or SIGTERM
stops reading, waits for the acknowledgements of what was published, says how far it got and exits 130.
docs/backtest.md, "Replay".
"""

from __future__ import annotations

import asyncio
import contextlib
import functools
import signal
import sys
import threading
import time
from collections import deque
from typing import TYPE_CHECKING, Annotated

import typer

from trader.bus.backoff import Backoff, set_within
from trader.cli.backtest import parse_time
from trader.cli.format import fail
from trader.config import Settings, is_replay_venue, replay_venue

WINDOW = 10_000  # acknowledgements in flight at most
ACK_TIMEOUT_S = 10.0
RETRIES = 8  # a tick whose publish failed is tried again this many times (same id: stored once)
QUEUE_BATCHES = 4  # batches read ahead of the publisher
PROGRESS_EVERY_S = 1.0  # on a terminal; a line every 5 s otherwise
INTERRUPTED = 130  # the exit code of a run stopped by Ctrl-C, as a shell gives one


# The replay's own modules (nats-py through trader.bus.publish) are imported when a replay runs, not
# on every `trader` start.
if TYPE_CHECKING:
    from nats.js import JetStreamContext

    from trader.backtest.data import DataRange, LakeTicks
    from trader.bus.publish import AckedPublisher, BatchResult, Outgoing, PubAck
    from trader.messages import MarketTick

    # What the reader thread hands over: a batch of ticks with their stream sequences, an error, the end.
    Batches = asyncio.Queue[tuple[list[MarketTick], list[int]] | BaseException | None]


class ReplayFailed(RuntimeError):
    """A tick could not be stored after every retry: the replay stops there."""


def replay(
    start: Annotated[str, typer.Option("--from", help="Start, inclusive: ISO 8601 (UTC) or epoch ms.")] = "",
    end: Annotated[str, typer.Option("--to", help="End, exclusive: ISO 8601 (UTC) or epoch ms.")] = "",
    speed: Annotated[
        str, typer.Option(help="Times real time (10: ten times faster); 0 or max: as fast as the bus takes.")
    ] = "1",
    symbols: Annotated[str | None, typer.Option(help="Comma-separated symbols (default: all).")] = None,
    venues: Annotated[
        str | None,
        typer.Option(help="Comma-separated venues whose ticks to replay (default: all but replay venues)."),
    ] = None,
) -> None:
    """Republish stored ticks from the lake onto the bus as venue replay-<venue>, at --speed, in event-time
    order: bars, analytics and paper strategies pointed at the replay venue run on history."""
    from trader.backtest.data import BacktestDataError, DataRange, LakeTicks
    from trader.backtest.replay import new_run_id, parse_speed
    from trader.cli.backtest import _check_lake_reachable

    if not start or not end:
        raise fail("--from and --to are required: the range of ticks to replay")
    try:
        pace = parse_speed(speed)
    except ValueError as exc:
        raise fail(str(exc)) from None
    data = DataRange(
        parse_time(start, "--from"),
        parse_time(end, "--to"),
        _names(symbols),
        venues=_names(venues),
        skip_replays=not venues,
    )
    if data.end_ms <= data.start_ms:
        raise fail(f"--to {end!r} must be after --from {start!r}")
    bad = [v for v in data.venues if is_replay_venue(v)]
    if bad:
        raise fail(f"--venues {', '.join(bad)}: a replay venue is not replayed again (name its source venue)")
    settings = Settings()
    _check_lake_reachable(settings)
    try:
        source = LakeTicks(settings)
        total = source.check_has_data(data)
    except BacktestDataError as exc:
        raise fail(str(exc)) from None
    run_id = new_run_id(int(time.time() * 1000))
    code = _run_on_nats(settings, source, data, total, pace, run_id)
    raise typer.Exit(code)


def _names(text: str | None) -> tuple[str, ...]:
    return tuple(s.strip() for s in (text or "").split(",") if s.strip())


def _run_on_nats(
    settings: Settings, source: LakeTicks, data: DataRange, total: int, speed: float, run: str
) -> int:
    from trader.bus.connection import NatsUnreachable, connect_once
    from trader.cli.connect import CLIENT_NAME, unreachable

    async def main() -> int:
        nc = await connect_once(settings.effective_nats_url, CLIENT_NAME)
        try:
            return await Replay(nc.jetstream(), source, data, total, speed, run).run()
        finally:
            await nc.close()

    try:
        return asyncio.run(main())
    except NatsUnreachable as exc:
        raise unreachable(exc) from None
    except ReplayFailed as exc:
        raise fail(str(exc)) from None


class Replay:
    """One run: read, pace, publish, report."""

    def __init__(
        self, js: JetStreamContext, source: LakeTicks, data: DataRange, total: int, speed: float, run_id: str
    ) -> None:
        from trader.backtest.replay import Pacer, Progress

        self.js, self.source, self.data, self.speed, self.run_id = js, source, data, speed, run_id
        self.pacer = Pacer(speed)
        self.progress = Progress(data.start_ms, data.end_ms, total, time.monotonic())
        self.in_flight: deque[tuple[Outgoing, int, asyncio.Future[PubAck]]] = deque()
        self.stop = asyncio.Event()
        self.venues: set[str] = set()
        self._shown_at = 0.0

    async def run(self) -> int:
        from trader.backtest.replay import iso_ms

        await self._check_stream()
        loop = asyncio.get_running_loop()
        for signum in (signal.SIGINT, signal.SIGTERM):
            loop.add_signal_handler(signum, self.stop.set)
        rate = "as fast as the bus takes them" if self.speed == 0 else f"at {self.speed:g}x real time"
        _say(
            f"replaying {self.progress.total:,} ticks from {iso_ms(self.data.start_ms)} to "
            f"{iso_ms(self.data.end_ms)} {rate}; run {self.run_id}"
        )
        cancelled = threading.Event()
        queue: Batches = asyncio.Queue(QUEUE_BATCHES)
        reader = loop.run_in_executor(None, self._read, loop, queue, cancelled)
        try:
            await self._publish_all(queue)
        finally:
            cancelled.set()
            with contextlib.suppress(asyncio.QueueEmpty):
                while True:
                    queue.get_nowait()  # let the reader put its last batch and see it is cancelled
            await self._drain()
            with contextlib.suppress(Exception):
                await asyncio.wait_for(reader, 30)
            for signum in (signal.SIGINT, signal.SIGTERM):
                loop.remove_signal_handler(signum)
        return self._report()

    async def _check_stream(self) -> None:
        try:
            await self.js.stream_info("MARKET_TICKS")
        except Exception as exc:
            raise ReplayFailed(f"no stream MARKET_TICKS on the bus ({exc!r}): is the stack up?") from None

    def _read(self, loop: asyncio.AbstractEventLoop, queue: Batches, cancelled: threading.Event) -> None:
        """In a thread: the range's ticks, a batch at a time, onto the queue; None at the end."""
        batches = self.source.batches_with_seq(self.data)
        try:
            for batch in batches:
                if cancelled.is_set():
                    return
                asyncio.run_coroutine_threadsafe(queue.put(batch), loop).result()
            item: BaseException | None = None
        except BaseException as exc:  # the lake failed mid-run: the publisher reports it
            item = exc
        if not cancelled.is_set():
            asyncio.run_coroutine_threadsafe(queue.put(item), loop).result()

    async def _publish_all(self, queue: Batches) -> None:
        from trader.backtest.replay import replay_message

        waiting = asyncio.create_task(self.stop.wait())
        try:
            while not self.stop.is_set():
                getting = asyncio.ensure_future(queue.get())
                await asyncio.wait([getting, waiting], return_when=asyncio.FIRST_COMPLETED)
                if not getting.done():
                    getting.cancel()
                    return
                item = getting.result()
                if item is None:
                    return
                if isinstance(item, BaseException):
                    raise ReplayFailed(f"reading the lake failed: {item!r}")
                ticks, seqs = item
                for tick, seq in zip(ticks, seqs, strict=True):
                    if not await self._wait_until_due(tick.timestamp):
                        return
                    await self._publish(replay_message(tick, seq, self.run_id), tick.timestamp)
                    self.venues.add(replay_venue(tick.venue))
                self._settle_done()
                self._show()
        finally:
            waiting.cancel()

    async def _wait_until_due(self, event_ms: int) -> bool:
        """False when stopped meanwhile. A long wait shows progress every second."""
        delay = self.pacer.wait_s(event_ms, time.monotonic())
        while delay > 0 and not self.stop.is_set():
            self._settle_done()
            self._show()
            await set_within(self.stop, min(delay, PROGRESS_EVERY_S))
            delay = self.pacer.wait_s(event_ms, time.monotonic())
        return not self.stop.is_set()

    def _settle_done(self) -> None:
        """Count the acknowledgements already in, oldest first (a failed one waits for ``_settle``)."""
        while self.in_flight and self.in_flight[0][2].done() and not self.in_flight[0][2].exception():
            _, event_ms, future = self.in_flight.popleft()
            self.progress.acked(event_ms, future.result().duplicate)

    async def _publish(self, item: Outgoing, event_ms: int) -> None:
        future = await self._send(item)
        self.in_flight.append((item, event_ms, future))
        if len(self.in_flight) >= WINDOW:
            await self._settle(WINDOW // 2)

    async def _settle(self, count: int) -> None:
        """Wait for the oldest ``count`` acknowledgements, retrying what failed."""
        for _ in range(min(count, len(self.in_flight))):
            item, event_ms, future = self.in_flight.popleft()
            try:
                ack = await asyncio.wait_for(future, ACK_TIMEOUT_S)
                duplicate = ack.duplicate
            except Exception:  # not acknowledged in time, or refused: the same id again
                duplicate = await self._retry(item)
            self.progress.acked(event_ms, duplicate)

    async def _retry(self, item: Outgoing) -> bool:
        backoff = Backoff(initial=0.2, maximum=5.0)
        errors: list[str] = []
        for _ in range(RETRIES):
            result = await self._send_again(item)
            if not result.failed:
                return result.duplicates > 0
            errors = result.errors
            await backoff.sleep()
        raise ReplayFailed(f"{item.subject} ({item.msg_id}) not stored after {RETRIES} tries: {errors[:2]}")

    @functools.cached_property
    def publisher(self) -> AckedPublisher:
        from trader.bus.publish import publisher_of

        return publisher_of(self.js)

    async def _send(self, item: Outgoing) -> asyncio.Future[PubAck]:
        """Publish; the future is the acknowledgement."""
        return await self.publisher.publish(item.subject, item.payload, item.all_headers())

    async def _send_again(self, item: Outgoing) -> BatchResult:
        from trader.bus.publish import publish_batch

        return await publish_batch(self.js, [item], ack_timeout=ACK_TIMEOUT_S)

    async def _drain(self) -> None:
        await self._settle(len(self.in_flight))

    def _show(self) -> None:
        now = time.monotonic()
        every = PROGRESS_EVERY_S if sys.stderr.isatty() else 5 * PROGRESS_EVERY_S
        if now - self._shown_at >= every:
            self._shown_at = now
            end = "\r" if sys.stderr.isatty() else "\n"
            sys.stderr.write(f"replay: {self.progress.line(now)}{end}")
            sys.stderr.flush()

    def _report(self) -> int:
        p, now = self.progress, time.monotonic()
        venues = ", ".join(sorted(self.venues)) or "none"
        stored = f"{p.stored:,} stored, {p.duplicates:,} duplicates"
        if self.stop.is_set():
            _say(
                f"stopped (interrupted): {p.line(now)}; every tick published was acknowledged ({stored}); "
                f"venues {venues}; run {self.run_id}"
            )
            return INTERRUPTED
        _clear_progress()
        typer.echo(f"replayed {p.line(now)} ({stored}) as {venues}; run {self.run_id}")
        return 0


def _say(line: str) -> None:
    _clear_progress()
    sys.stderr.write(line + "\n")
    sys.stderr.flush()


def _clear_progress() -> None:
    if sys.stderr.isatty():
        sys.stderr.write("\x1b[2K\r")
