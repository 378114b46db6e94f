"""strategy: runs the configured strategies on live market data; sends their orders and cancels.

Consumes (``trader.runtime.intake``):
- ``order.submit.>`` and ``order.state.>`` (stream ORDERS, input ``strategy-orders``, mode HISTORY:
  from the first message at every start): the history rebuilds each strategy's open orders (its requests
  on ``order.submit.<strategy>``, the latest state per id on ``order.state.<strategy>``); after it, new
  states go to ``on_order`` (new requests are the service's own: passed over);
- ``exec.report.>`` (stream EXEC, input ``strategy-exec``, mode HISTORY): the reports of the strategies'
  own orders rebuild their positions; after them, new fills go to ``on_fill``. What comes on either input
  after its history and before the start is done (strategies started, warmed up) is held, then applied;
- ``market.bar.<tf>.<venue>.<SYMBOL>`` (stream BARS) at start, after the rebuild and ``on_start``: the warm-up
  (``trader.strategies.warmup``), the last closed bars each strategy declares it needs, fed to
  ``on_bar`` while its context drops every order asked for (strategies act on live data only);
- ``market.tick.<venue>.<SYMBOL>`` and ``market.bar.*.<venue>.<SYMBOL>`` for each strategy's symbols
  on its data venue only (``StrategyConfig.data_venue``, resolved by ``Settings.data_venue_of``: a
  strategy on a live venue never hears of the mock feed; intake inputs of mode LATEST from a sequence,
  ``start_after``, read only once the rebuild and warm-up are done): ticks from what comes after the
  start, bars from the sequence after the last one the warm-up could see, so a bar published meanwhile
  is fed once, live;
- ``alt.norm.>`` (stream ALT_DATA, from what comes after the start) when a strategy overrides
  ``on_alt``: each datum to the strategies of its symbol (``BTCUSDT-PERP`` to ``BTCUSDT``'s);
- ``market.feature.*.<venue>.<SYMBOL>`` (stream FEATURES) when a strategy overrides ``on_features``:
  at start, after the warm-up bars, the features of those bars (the same subjects and numbers); then
  live from the sequence after the last one that read could see;
- the key ``trading.state`` of the TRADER_STATE bucket (watched): while ``halted``, submits are not
  sent (logged and counted) and the strategy hears at once that its order was rejected; a value
  that cannot be read counts as halted.
Produces: ``OrderRequest`` on ``order.submit.<strategy>`` (msg id: the client_order_id) and
``CancelRequest`` on ``order.cancel.<strategy>`` (msg id: a per-strategy unique cancel id), through an
``Outbox``: in order, and without a market event waiting for the acknowledgement of the last one's.
State: each strategy's context (``trader.strategies.context.ContextState``: its orders not settled,
the ids of those settled, fills seen, positions, exec ids applied), snapshotted together (key
``strategy``, with the ORDERS and EXEC sequences the two inputs applied) once the start is done, every
``SNAPSHOT_EVERY_S`` and at a graceful stop, when what the strategies asked is published; a start
restores it and the two HISTORY inputs replay only what came after it (the whole history without a
usable one: none, corrupt, of another schema version, past a stream's end, or taken with other
strategies). A strategy's own state is its code's, rebuilt by its warm-up. A state or fill seen twice
is applied once (versions, exec_ids), so a snapshot taken ahead of the streams (a request the inputs
have not read back yet) is exact too. Messages of the history are applied silently; one that cannot
be decoded goes to the dead letters only when new (the intake's rule for HISTORY); undecodable
features and alternative data are the dead letters of the sinks, not sent again from here.
A strategy that cannot be loaded (or whose venue exeq does not run, or whose data venue no feed
publishes) is logged (and shown in /health) and the others run; the service is then degraded
(``problems``: /ready answers 503 with the reason, `trader status` shows it, `trader up` exits 1), as
it is while an instrument of a strategy has had no tick nor bar for ``NO_DATA_S``.

Warm-up from JetStream rather than QuestDB: the BARS stream is what the live bars come from, so the
hand-over is exact (the warm-up reads up to the stream's last sequence at that moment, the live
consumer starts at the next one: no bar lost or fed twice), the bars are the very messages a live
strategy would have seen (amendments included), and the service needs no store to start. The cost:
history is bounded by the stream's retention (24 h by default: 1,440 bars of 1m), and a warm-up
wanting more gets what the stream holds (logged as ``short``). The read is by arrival time
(``DeliverPolicy.BY_START_TIME``) over a window of about the bars wanted, widened for the subjects
still short until it covers the retention (bars may be late, or the feed may have paused).
"""

from __future__ import annotations

import asyncio
from collections.abc import Callable
from operator import methodcaller
from typing import Any

import msgspec
from nats.js import JetStreamContext

from trader.bus.publish import Outbox, Outgoing
from trader.bus.read import decode_message
from trader.bus.streams import (
    ALL_ORDER_STATES,
    ALL_ORDER_SUBMITS,
    bar_subject,
    feature_subject,
    order_cancel_subject,
    order_submit_subject,
    tick_subject,
)
from trader.bus.trading_switch import read_state, state_bucket, watch_state
from trader.config import Settings
from trader.marketdata.bars import timeframe_ms
from trader.marketdata.decode import InvalidMessage, decode_alt, decode_tick
from trader.messages import (
    AltDatum,
    Bar,
    ExecutionReport,
    Features,
    MarketTick,
    Order,
    OrderRequest,
    TradingState,
    encode,
)
from trader.runtime import pauses
from trader.runtime.health import Problem, Silence, duration
from trader.runtime.intake import Input, Intake, Mode, Received, read_once, run_until_caught_up
from trader.runtime.service import Runtime, Service
from trader.runtime.snapshots import SnapshotStore
from trader.strategies import Actions, Instruction, StrategyRunner, build_runner
from trader.strategies.base import Strategy
from trader.strategies.context import ContextState, wall_clock_ms
from trader.strategies.warmup import HistoryBar, bars_for, merge_wanted, pick_latest, short_of

_order_decoder = msgspec.json.Decoder(Order)
_request_decoder = msgspec.json.Decoder(OrderRequest)
_report_decoder = msgspec.json.Decoder(ExecutionReport)
_bar_decoder = msgspec.json.Decoder(Bar)
_features_decoder = msgspec.json.Decoder(Features)

# The history, then the strategies' order states and fills. Kept raw: decoded by subject.
ORDERS_INPUT = Input(
    "ORDERS",
    (ALL_ORDER_SUBMITS, ALL_ORDER_STATES),
    bytes,
    Mode.HISTORY,
    name="strategy-orders",
    decode=bytes,
    max_batch=2_000,
)
EXECS_INPUT = Input(
    "EXEC", "exec.report.>", bytes, Mode.HISTORY, name="strategy-exec", decode=bytes, max_batch=2_000
)

# The strategies' contexts (what the two history inputs taught them), snapshotted together with the
# ORDERS and EXEC sequences they cover (``trader.runtime.snapshots``, key ``strategy``).
SNAPSHOT_KEY = "strategy"
# Of StrategiesState: a snapshot of another version is not read (a full replay). 2: the times of the
# settled ids and exec ids, kept for a window (trader.orders.retention.IDS_WINDOW_MS).
STATE_VERSION = 2
SNAPSHOT_EVERY_S = 60.0


class StrategiesState(msgspec.Struct, frozen=True):
    """Each strategy's context, by name."""

    contexts: dict[str, ContextState]


BARS = "BARS"
FEATURES = "FEATURES"
WARMUP_WIDEN = 4  # the read window grows so while a subject has fewer bars than wanted
WARMUP_MAX_WINDOW_MS = 7 * 86_400_000  # a stream kept forever: history older than this is not read
WARMUP_WAIT_S = 10.0  # for the next stored message of a warm-up read: the stream holds it already


class StrategyService(Service):
    name = "strategy"
    # An instrument of a strategy with no tick nor bar this long (since subscribed, or since the last
    # one): the strategy idles, and the service says so (a symbol no feed publishes, a feed down).
    NO_DATA_S = 60.0

    def __init__(self, settings: Settings) -> None:
        super().__init__(settings)
        self.runners: dict[str, StrategyRunner] = {}
        self.failed: dict[str, str] = {}  # strategies that could not be loaded, and why
        self.by_instrument: dict[tuple[str, str], list[StrategyRunner]] = {}  # (venue, symbol)
        self.trading = TradingState()
        self.rebuilt = False
        self._loaded = False
        self._lock = asyncio.Lock()  # one event at a time: strategies and their outbox stay in order
        self._history_end: dict[str, int] = {}  # per stream: the last sequence before this run
        self._held: list[Callable[[], None]] = []  # live events that came before the start was done
        self._inputs: list[Intake[Any]] = []  # orders and fills
        self._reading: list[asyncio.Task[None]] = []  # their reading, live once caught up
        self._market: list[Intake[Any]] = []
        self._market_tasks: list[asyncio.Task[None]] = []
        self._bars_end: int | None = None  # the last BARS sequence the warm-up could see
        self._features_end: int | None = None  # the same for FEATURES (strategies taking features)
        self._silence: Silence[tuple[str, str]] = Silence(self.NO_DATA_S)  # (venue, symbol)
        self._snapshots: SnapshotStore | None = None
        self.snapshot_problem: str | None = (
            None  # why the start replayed the whole history (None: it did not)
        )
        self._snapshot_covers: dict[str, int] = {}  # what the last snapshot taken or restored covers

    # Start: load, rebuild, then live data --------------------------------------------------------

    async def start(self, rt: Runtime) -> None:
        self.rt = rt
        if not self._loaded:
            self._load(rt)
        self.kv = await state_bucket(rt.js)
        state, _ = await read_state(self.kv, unreadable=self._unreadable)
        self._set_trading(rt, state)
        if not hasattr(self, "outbox"):  # one for the life of the service: a retried start keeps its queue
            self.outbox = Outbox(rt.publish_reliably)
        await self._rebuild(rt)
        try:
            async with self._lock:
                for runner in self.runners.values():
                    if not runner.started:
                        await self._emit(rt, runner, runner.start())
            await self._warm_up(rt)
            await self._subscribe_market(rt)
        except BaseException:
            await self._stop_inputs()  # a retried start reads the history again
            raise
        held, self._held = self._held, []
        for event in held:  # no await from here on: nothing comes between these and the live ones
            event()
        self.rebuilt = True
        rt.log.info(
            "strategy.rebuilt", strategies={n: r.describe() for n, r in self.runners.items()}, held=len(held)
        )
        self._silence.expect(self.by_instrument)

    async def _rebuild(self, rt: Runtime) -> None:
        """The strategies' orders and fills from the latest snapshot of their contexts and the history
        of both inputs after it (the whole of it without a usable one); they go on reading live (what
        comes before the start is done is held: see ``_deliver``)."""
        await self._stop_inputs()  # those of a start that failed
        self._held = []
        covers = await self._restore_snapshot(rt)
        self._inputs = [
            Intake(rt, ORDERS_INPUT, self._take_order, start_after=covers.get("ORDERS")),
            Intake(rt, EXECS_INPUT, self._take_report, start_after=covers.get("EXEC")),
        ]
        for intake in self._inputs:
            await intake.start()
            self._history_end[intake.input.stream] = intake.replay_to
        self._reading = await run_until_caught_up(self._inputs, "the strategies' orders and fills")
        for stream, end in self._history_end.items():
            rt.log.info("strategy.history_applied", stream=stream, last_seq=end)

    async def _restore_snapshot(self, rt: Runtime) -> dict[str, int]:
        """The contexts from the latest snapshot, and the ORDERS and EXEC sequences it covers; nothing
        (a full replay) when there is none, it cannot be read, is of another schema version, covers
        past a stream's end (the stream was made again) or was taken with other strategies running
        (a strategy new since would miss its history before it)."""
        self._snapshots = store = SnapshotStore(rt.js, SNAPSHOT_KEY)
        loaded = await store.load(StrategiesState, STATE_VERSION)
        self.snapshot_problem = store.problem
        if loaded is None:
            return {}
        ends = {stream: (await rt.js.stream_info(stream)).state.last_seq for stream in ("ORDERS", "EXEC")}
        if sorted(loaded.state.contexts) != sorted(self.runners):
            self.snapshot_problem = f"taken with strategies {sorted(loaded.state.contexts)}"
        elif any(loaded.covers.get(stream, ends[stream] + 1) > ends[stream] for stream in ends):
            self.snapshot_problem = f"covers {loaded.covers}, past the streams' ends {ends}"
        if self.snapshot_problem is not None:
            rt.log.warning("snapshot.unusable", key=SNAPSHOT_KEY, problem=self.snapshot_problem)
            return {}
        for name, runner in self.runners.items():
            runner.ctx.restore(loaded.state.contexts[name])
        self._snapshot_covers = dict(loaded.covers)
        return dict(loaded.covers)

    async def _snapshot(self, rt: Runtime) -> bool:
        """The contexts stored with what the inputs have applied, once the start is done and what the
        strategies asked is published (their requests are then in ORDERS: read again after the
        snapshot, they change nothing); not when nothing was applied since the last one. Whether the
        snapshot stored covers what is applied now."""
        store = self._snapshots
        if store is None or not self.rebuilt or not self.outbox.idle or not self._inputs:
            return False
        covers = {intake.input.stream: intake.covered_seq for intake in self._inputs}
        if covers == self._snapshot_covers:
            return True
        state = StrategiesState({name: runner.ctx.snapshot() for name, runner in self.runners.items()})
        try:
            await pauses.pause(pauses.IN_SNAPSHOT_WRITE)
            size = await store.save(state, covers, STATE_VERSION)
        except Exception as exc:  # a snapshot only shortens the next start: the service goes on
            rt.metrics.count_error("snapshot")
            rt.log.warning("snapshot.failed", key=SNAPSHOT_KEY, error=repr(exc))
            return False
        self._snapshot_covers = covers
        rt.log.info("snapshot.saved", key=SNAPSHOT_KEY, covers=covers, bytes=size, stored_in=store.stored_in)
        return True

    async def _snapshot_every(self, rt: Runtime) -> None:
        """Every ``SNAPSHOT_EVERY_S``; every second while one could not be taken (the outbox busy)."""
        delay = 0.0
        while True:
            await asyncio.sleep(delay)
            delay = SNAPSHOT_EVERY_S if await self._snapshot(rt) else 1.0

    async def _stop_inputs(self) -> None:
        await self._unsubscribe_market()
        for task in self._reading:
            task.cancel()
        await asyncio.gather(*self._reading, return_exceptions=True)
        for intake in self._inputs:
            await intake.stop()
        self._reading, self._inputs = [], []

    def _load(self, rt: Runtime) -> None:
        for config in self.settings.strategy.strategies:
            if not config.enabled:
                rt.log.info("strategy.disabled", strategy=config.name)
                continue
            if config.name in self.runners or config.name in self.failed:
                self._fail(rt, config.name, config.kind, "duplicate name: only the first of this name runs")
                continue
            problem = self.settings.strategy_venue_problem(config)
            if problem is not None:
                self._fail(rt, config.name, config.kind, problem)
                continue
            config = config.model_copy(update={"data_venue": self.settings.data_venue_of(config)})
            try:
                runner = build_runner(config)
            except Exception as exc:  # the user's code may raise anything: it stops only this strategy
                self._fail(rt, config.name, config.kind, f"{type(exc).__name__}: {exc}")
                continue
            self.runners[config.name] = runner
            for symbol in config.symbols:
                self.by_instrument.setdefault((runner.data_venue, symbol), []).append(runner)
            rt.log.info(
                "strategy.loaded",
                strategy=config.name,
                kind=config.kind,
                symbols=config.symbols,
                params=config.params,
                account=config.account,
                venue=config.venue,
                data_venue=runner.data_venue,
            )
        if not self.runners:
            rt.log.warning("strategy.none_running", failed=self.failed)
        self._loaded = True

    def _fail(self, rt: Runtime, name: str, kind: str, error: str) -> None:
        self.failed[name] = error
        rt.metrics.count_error("strategy_load")
        rt.log.error("strategy.load_failed", strategy=name, kind=kind, error=error)

    def _unreadable(self, exc: msgspec.DecodeError, revision: int | None) -> TradingState:
        """A switch that cannot be read counts as halted: sending nothing is safe."""
        self.rt.metrics.count_error("trading_state")
        self.rt.log.error("strategy.trading_state_unreadable", error=str(exc), revision=revision)
        return TradingState(mode="halted", reason=f"unreadable trading state: {exc}")

    async def _subscribe_market(self, rt: Runtime) -> None:
        await self._unsubscribe_market()  # those of a start that failed after subscribing
        instruments = sorted(self.by_instrument)
        if not instruments:
            return
        ticks = Input(
            "MARKET_TICKS",
            tuple(tick_subject(v, s) for v, s in instruments),
            MarketTick,
            Mode.LATEST,
            name="strategy-ticks",
            decode=decode_tick,
        )
        bars = Input(
            BARS,
            tuple(bar_subject("*", v, s) for v, s in instruments),
            Bar,
            Mode.LATEST,
            name="strategy-bars",
            decode=_decode_bar,
        )
        # Ticks from what comes now; bars from just after what the warm-up could see: none lost, none
        # fed twice.
        self._market = [
            Intake(rt, ticks, _in_batches, live=self._take_ticks, start_after=await _last_seq(rt, ticks)),
            Intake(rt, bars, _in_batches, live=self._take_bars, start_after=self._bars_end or 0),
        ]
        if any(r.wants_features() for r in self.runners.values()):
            features = Input(
                FEATURES,
                tuple(feature_subject("*", v, s) for v, s in instruments),
                Features,
                Mode.LATEST,
                name="strategy-features",
                decode=_lenient(_features_decoder),
            )
            start_after = self._features_end or 0  # none lost, none fed twice
            self._market.append(
                Intake(rt, features, _in_batches, live=self._take_features, start_after=start_after)
            )
        if any(type(r.strategy).on_alt is not Strategy.on_alt for r in self.runners.values()):
            alt: Input[AltDatum | None] = Input(
                "ALT_DATA", "alt.norm.>", AltDatum, Mode.LATEST, name="strategy-alt", decode=_lenient_alt
            )  # type: ignore[arg-type]
            self._market.append(
                Intake(rt, alt, _in_batches, live=self._take_alt, start_after=await _last_seq(rt, alt))
            )
        for intake in self._market:
            await intake.start()
        self._market_tasks = [asyncio.create_task(intake.run()) for intake in self._market]
        rt.log.info("strategy.market_subscribed", instruments=[f"{s}.{v}" for v, s in instruments])

    async def _unsubscribe_market(self) -> None:
        for task in self._market_tasks:
            task.cancel()
        await asyncio.gather(*self._market_tasks, return_exceptions=True)
        for intake in self._market:
            await intake.stop()
        self._market, self._market_tasks = [], []

    # Warm-up: the history each strategy asked for, before live data -------------------------------

    async def _warm_up(self, rt: Runtime) -> None:
        """Feed each started strategy its warm-up bars, once (a retried start skips those done). The
        end of what it reads is fixed at the first try: live bars start right after it."""
        if self._bars_end is None:
            self._bars_end = (await rt.js.stream_info(BARS)).state.last_seq
        todo = [r for r in self.runners.values() if r.started and not r.warmed_up]
        wanted = {r.name: r.warmup_wanted() for r in todo}
        merged = merge_wanted(wanted.values())
        picked = await self._read_warmup(rt, merged) if merged and self._bars_end else {}
        features = await self._features_warmup(rt, todo, wanted)
        async with self._lock:
            for runner in todo:
                bars = bars_for(wanted[runner.name], picked)
                await self._emit(rt, runner, runner.warm_up(bars, features.get(runner.name, [])))
        rt.log.info(
            "strategy.warmed_up",
            bars_end=self._bars_end,
            wanted=merged,
            found={subject: len(items) for subject, items in picked.items()},
            short=short_of(merged, picked),
        )

    async def _features_warmup(
        self, rt: Runtime, todo: list[StrategyRunner], wanted: dict[str, dict[str, int]]
    ) -> dict[str, list[Features]]:
        """Per strategy taking features: the features of the last bars its warm-up declares (the same
        subjects and numbers, on FEATURES), up to the stream's last sequence at the first try."""
        takers = [r for r in todo if r.wants_features()]
        if not takers:
            return {}
        if self._features_end is None:
            self._features_end = (await rt.js.stream_info(FEATURES)).state.last_seq
        subjects = {r.name: {_feature_subject_of(s): n for s, n in wanted[r.name].items()} for r in takers}
        merged = merge_wanted(subjects.values())
        if not merged or not self._features_end:
            return {}
        window = max(timeframe_ms(s.split(".")[2]) * (n + 1) for s, n in merged.items()) * WARMUP_WIDEN
        latest: dict[tuple[str, int], Features] = {}
        source = Input(FEATURES, tuple(sorted(merged)), Features, Mode.ONCE, name="strategy-warmup-features")
        found = await read_once(
            rt, source, since_ms=wall_clock_ms() - window, upto=self._features_end, timeout_s=WARMUP_WAIT_S
        )
        for item in found.received:  # (the refused are history: no dead letters when new either)
            latest[(item.subject, item.value.start)] = item.value
        out: dict[str, list[Features]] = {}
        for name, mine in subjects.items():
            for subject, n in mine.items():
                found = sorted((k[1], v) for k, v in latest.items() if k[0] == subject)
                out.setdefault(name, []).extend(v for _, v in found[-n:])
            out[name].sort(key=lambda f: (f.start + timeframe_ms(f.timeframe), f.timeframe))
        return out

    async def _read_warmup(self, rt: Runtime, wanted: dict[str, int]) -> dict[str, list[HistoryBar]]:
        """The latest bars of each subject up to ``_bars_end``: read from a window of about the bars
        wanted, widened for the subjects still short until it covers what the stream keeps."""
        end = self._bars_end or 0
        horizon = await _retention_ms(rt.js)
        picked: dict[str, list[HistoryBar]] = {}
        short = dict(wanted)
        window = max(timeframe_ms(s.split(".")[2]) * (bars + 1) for s, bars in wanted.items())
        while short:
            since = wall_clock_ms() - window
            picked |= pick_latest(await self._read_bars(rt, sorted(short), since, end), short)
            short = short_of(short, picked)
            if window >= horizon:
                break
            window *= WARMUP_WIDEN
        return picked

    async def _read_bars(self, rt: Runtime, subjects: list[str], since_ms: int, end: int) -> list[HistoryBar]:
        """The bars stored on ``subjects`` from ``since_ms`` (arrival time) to sequence ``end``; one that
        cannot be decoded is skipped (history: it went to no dead letters when it was new either)."""
        source = Input(BARS, tuple(subjects), Bar, Mode.ONCE, name="strategy-warmup")
        found = await read_once(rt, source, since_ms=since_ms, upto=end, timeout_s=WARMUP_WAIT_S)
        for refused in found.refused:
            rt.log.warning(
                "strategy.warmup_bar_skipped", seq=refused.seq, subject=refused.subject, error=refused.reason
            )
        return [HistoryBar(item.seq, item.subject, item.value) for item in found.received]

    # Run: order states, fills, the trading switch; market data arrives through callbacks --------

    async def run(self, rt: Runtime) -> None:
        watch = asyncio.create_task(self._watch_trading_state(rt), name="trading-state")
        # The first one at once: the history just replayed, the next start reads from there.
        snapshots = asyncio.create_task(self._snapshot_every(rt), name="snapshots")
        tasks = {*self._reading, *self._market_tasks, watch, snapshots}
        stopping = asyncio.create_task(rt.stopping.wait())
        done, _ = await asyncio.wait({*tasks, stopping}, return_when=asyncio.FIRST_COMPLETED)
        if stopping not in done:
            stopping.cancel()
            failed = next(iter(done))
            raise RuntimeError(f"{failed.get_name()} loop ended") from failed.exception()
        watch.cancel()  # the watch ends only so; the inputs end when intake stops
        snapshots.cancel()
        await asyncio.gather(*tasks, return_exceptions=True)

    async def stop(self, rt: Runtime) -> None:
        inputs = list(self._inputs)
        await self._stop_inputs()
        async with self._lock:
            for runner in self.runners.values():
                await self._emit(rt, runner, runner.stop())
        if hasattr(self, "outbox"):
            await self.outbox.close()
            self._inputs = inputs  # what they applied: the last snapshot covers it
            await self._snapshot(rt)
            self._inputs = []

    async def _watch_trading_state(self, rt: Runtime) -> None:
        async for state in watch_state(self.kv, unreadable=self._unreadable):
            self._set_trading(rt, state)

    def _set_trading(self, rt: Runtime, state: TradingState) -> None:
        if state != self.trading:
            rt.log.warning("strategy.trading_state", mode=state.mode, reason=state.reason, since=state.since)
        self.trading = state
        for runner in self.runners.values():
            runner.ctx.set_trading_state(state)

    # Applying messages ----------------------------------------------------------------------------

    def _take_order(self, received: Received[bytes]) -> list[Outgoing]:
        """An order request (of the history: already this service's own when new) or state."""
        kind, _, strategy = received.subject.removeprefix("order.").partition(".")
        runner = self.runners.get(strategy)
        if runner is None or kind not in ("state", "submit"):
            return []
        history = received.seq <= self._history_end["ORDERS"]
        if kind == "submit":
            if history:
                runner.ctx.note_request(_decode_as(_request_decoder, received.data, "an OrderRequest"))
            return []
        order = _decode_as(_order_decoder, received.data, "an Order")
        self._deliver(history, runner, lambda: runner.on_order(order))
        return []

    def _take_report(self, received: Received[bytes]) -> list[Outgoing]:
        report = _decode_as(_report_decoder, received.data, "an ExecutionReport")
        runner = self.runners.get(report.strategy)
        if runner is not None:
            history = received.seq <= self._history_end["EXEC"]
            self._deliver(history, runner, lambda: runner.on_fill(report))
        return []

    def _deliver(self, history: bool, runner: StrategyRunner, event: Callable[[], Actions]) -> None:
        """An order's event to its strategy now; a live one held while the start is not done (the
        strategies start and warm up first)."""
        if history or self.rebuilt:
            self._emit_now(self.rt, runner, event())
        else:
            self._held.append(lambda: self._emit_now(self.rt, runner, event()))

    async def _take_ticks(self, batch: list[Received[MarketTick]]) -> list[Outgoing]:
        for received in batch:
            tick = received.value
            await self._dispatch(received.subject, tick, methodcaller("on_tick", tick))
        return []

    async def _take_bars(self, batch: list[Received[Bar]]) -> list[Outgoing]:
        for received in batch:
            bar = received.value
            await self._dispatch(received.subject, bar, methodcaller("on_bar", bar))
        return []

    async def _take_features(self, batch: list[Received[Features | None]]) -> list[Outgoing]:
        """Features to the strategies of their instrument that take them; refused ones are sink-features'
        dead letters, not sent again from here."""
        for received in batch:
            features = received.value
            if features is not None:
                await self._dispatch(received.subject, features, methodcaller("on_features", features))
        return []

    async def _take_alt(self, batch: list[Received[AltDatum | None]]) -> list[Outgoing]:
        """Alternative data to every strategy trading its symbol (or the spot pair of its perpetual).
        Refused data is the dead letters of sink-alt, not sent again from here."""
        for received in batch:
            datum = received.value
            if datum is None:
                continue
            try:
                async with self._lock:
                    for runner in self.runners.values():
                        self._emit_now(self.rt, runner, runner.on_alt(datum))
            except Exception as exc:
                self.rt.metrics.count_error("alt_event")
                self.rt.log.exception("strategy.alt_event_failed", kind=datum.kind, error=repr(exc))
        return []

    async def _dispatch(
        self, subject: str, data: MarketTick | Bar | Features, event: Callable[[StrategyRunner], Actions]
    ) -> None:
        """Market data to the strategies of its subject's instrument (its last two tokens: venue and
        symbol); each takes it only when the body names its data venue too, and counts it refused when
        not (``foreign_data_refused``). An error is logged and counted here: the next message must
        still be taken."""
        self._silence.heard((data.venue, data.symbol))
        venue, symbol = subject.split(".")[-2:]
        try:
            async with self._lock:
                for runner in self.by_instrument.get((venue, symbol), ()):
                    self._emit_now(self.rt, runner, event(runner))
        except Exception as exc:
            self.rt.metrics.count_error("market_event")
            self.rt.log.exception("strategy.market_event_failed", symbol=symbol, error=repr(exc))

    # Sending --------------------------------------------------------------------------------------

    async def _emit(self, rt: Runtime, runner: StrategyRunner, actions: Actions) -> None:
        self._emit_now(rt, runner, actions)

    def _emit_now(self, rt: Runtime, runner: StrategyRunner, actions: Actions) -> None:
        """What a strategy asked for, to the outbox (which publishes it in order, in the background)."""
        if not actions:
            return
        for order in actions.suppressed:
            rt.metrics.count_error("submit_halted")
            rt.log.warning(
                "strategy.submit_suppressed",
                strategy=runner.name,
                client_order_id=order.client_order_id,
                symbol=order.symbol,
                side=order.side,
                quantity=str(order.quantity),
                reason=order.reason,
            )
        if actions.error:
            rt.metrics.count_error("strategy_callback")
        if not actions.instructions:
            return
        for instruction in actions.instructions:
            _log_instruction(rt, instruction)
        # Published in order by the outbox: the next market event need not wait for the acknowledgement.
        self.outbox.put([_outgoing(i) for i in actions.instructions])

    # Probes ---------------------------------------------------------------------------------------

    def ready_checks(self) -> dict[str, bool]:
        return {"rebuilt": self.rebuilt}

    def problems(self) -> list[Problem]:
        """Its job: every strategy configured running, each hearing of its instruments."""
        found = []
        if self._loaded and not self.runners:
            none = "" if self.failed else ": none is configured and enabled (strategy.strategies)"
            found.append(Problem(f"no strategy running{none}", lasting=True))
        for name, error in self.failed.items():
            found.append(Problem(f"strategy {name} could not be loaded: {error}", lasting=True))
        for (venue, symbol), (quiet_s, ever) in self._silence.quiet().items():
            idle = ", ".join(runner.name for runner in self.by_instrument.get((venue, symbol), ()))
            since = "" if ever else " (none since the start)"
            found.append(
                Problem(f"no tick nor bar of {symbol} on {venue} for {duration(quiet_s)}{since}: {idle} idle")
            )
        return found

    def health_details(self) -> dict[str, Any]:
        return {
            "trading": {"mode": self.trading.mode, "reason": self.trading.reason},
            "rebuilt": self.rebuilt,
            "strategies": {name: runner.describe() for name, runner in self.runners.items()},
            "failed_strategies": dict(self.failed),
            "snapshot_problem": self.snapshot_problem,
            "snapshot_covers": dict(self._snapshot_covers),
            "inputs": {intake.name: intake.health_details() for intake in self._inputs},
            # Not problems (a strategy warming up is doing its job): what `trader status` tells besides.
            "notes": [
                f"{name} {progress}"
                for name, runner in self.runners.items()
                if (progress := runner.warming_up()) is not None
            ],
        }


async def _retention_ms(js: JetStreamContext) -> int:
    """How far back BARS may hold bars: its ``max_age`` (capped when it keeps them forever)."""
    max_age_s = (await js.stream_info(BARS)).config.max_age or 0
    return min(int(max_age_s * 1000), WARMUP_MAX_WINDOW_MS) if max_age_s else WARMUP_MAX_WINDOW_MS


async def _last_seq(rt: Runtime, source: Input[Any]) -> int:
    return int((await rt.js.stream_info(source.stream)).state.last_seq)


def _in_batches(received: Received[Any]) -> list[Outgoing]:
    raise AssertionError("market data goes to the strategies in batches (live)")


def _decode_as(decoder: msgspec.json.Decoder[Any], data: bytes, what: str) -> Any:
    """Decoded, or ``InvalidMessage`` saying what it is not (``not an Order: ...``)."""
    try:
        return decode_message(decoder, data)
    except InvalidMessage as exc:
        raise InvalidMessage(exc.field, f"not {what}: {exc.reason}") from None


def _decode_bar(data: bytes) -> Bar:
    return _decode_as(_bar_decoder, data, "a Bar")  # type: ignore[no-any-return]


def _lenient(decoder: msgspec.json.Decoder[Any]) -> Callable[[bytes], Any]:
    """Decoded, or None for what another service dead-letters already."""

    def decode(data: bytes) -> Any:
        try:
            return decode_message(decoder, data)
        except InvalidMessage:
            return None

    return decode


def _lenient_alt(data: bytes) -> AltDatum | None:
    try:
        return decode_alt(data)
    except InvalidMessage:
        return None


def _outgoing(instruction: Instruction) -> Outgoing:
    message = instruction.message
    if isinstance(message, OrderRequest):
        subject = order_submit_subject(message.strategy)
    else:
        subject = order_cancel_subject(message.strategy)
    return Outgoing(subject, encode(message), msg_id=instruction.msg_id)


def _log_instruction(rt: Runtime, instruction: Instruction) -> None:
    """At debug: one line per order costs about what the rest of the service's work on it does."""
    message = instruction.message
    if isinstance(message, OrderRequest):
        rt.log.debug(
            "strategy.submit",
            strategy=message.strategy,
            client_order_id=message.client_order_id,
            symbol=message.symbol,
            side=message.side,
            quantity=str(message.quantity),
            type=message.type,
            price=None if message.price is None else str(message.price),
        )
    else:
        rt.log.debug(
            "strategy.cancel",
            strategy=message.strategy,
            client_order_id=message.client_order_id,
            quantity=None if message.quantity is None else str(message.quantity),
            price=None if message.price is None else str(message.price),
            reason=message.reason,
        )


SERVICE = StrategyService


def _feature_subject_of(bar_subject: str) -> str:
    """``market.feature.<tf>.<venue>.<SYMBOL>`` of a ``market.bar.<tf>.<venue>.<SYMBOL>``."""
    _, _, timeframe, venue, symbol = bar_subject.split(".")
    return feature_subject(timeframe, venue, symbol)
