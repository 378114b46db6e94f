"""Every JetStream stream, declared once, and their idempotent provisioning.

Streams are created (or brought up to date) before any consumer starts: `trader up` provisions them,
and every service provisions them again on start, which changes nothing when they are current.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Literal

from nats.js import JetStreamContext
from nats.js.api import DiscardPolicy, KeyValueConfig, RetentionPolicy, StorageType, StreamConfig
from nats.js.errors import BucketNotFoundError, NotFoundError

from trader.config import Settings

WEEK_S = 7 * 24 * 3600.0


@dataclass(frozen=True)
class StreamSpec:
    name: str
    subjects: tuple[str, ...]
    description: str
    # None: the stream_max_age_s setting (24 h by default); 0: kept until its share of the store is full.
    max_age_s: float | None = None
    # The share of JetStream's file store (jetstream_max_file_store_bytes) the stream may fill before
    # it drops its oldest messages; 0: no budget of its own. When the whole store is full JetStream
    # refuses every message of every stream: a feed busy enough to fill it would leave orders unstored.
    store_share: float = 0.0


STREAMS: tuple[StreamSpec, ...] = (
    StreamSpec(
        "MARKET_TICKS",
        ("market.tick.>",),
        "Normalised trades and quotes, market.tick.<venue>.<SYMBOL>",
        None,
        0.4,
    ),
    # A few small messages a second: 3 % of the store keeps far more than its 24 h.
    StreamSpec("ALT_DATA", ("alt.norm.>",), "Alternative data, alt.norm.<kind>", None, 0.03),
    StreamSpec(
        "BARS", ("market.bar.>",), "Closed OHLCV bars, market.bar.<timeframe>.<venue>.<SYMBOL>", None, 0.03
    ),
    # feature-eng's output: about 600 bytes a bar, so a share of BARS' former 5 %.
    StreamSpec(
        "FEATURES",
        ("market.feature.>",),
        "Streaming features of closed bars, market.feature.<timeframe>.<venue>.<SYMBOL>",
        None,
        0.02,
    ),
    StreamSpec(
        "MARKET_EVENTS", ("market.event.>",), "Feed events: gaps, reconnects, stale streams", None, 0.01
    ),
    # spread-analyzer: SpreadSnapshot on market.spread.<SYMBOL> (every publish interval of event time),
    # SpreadOpportunity on market.spread.<SYMBOL>.opportunity.
    StreamSpec(
        "SPREADS",
        ("market.spread.>",),
        "Cross-venue spreads, market.spread.<SYMBOL>; opportunities, market.spread.<SYMBOL>.opportunity",
        None,
        0.02,
    ),
    StreamSpec("DLQ", ("dlq.>",), "Refused messages: original bytes, subject, headers, reason", WEEK_S, 0.05),
    # The trading history is the state of record: services rebuild from it, so it is not aged out, and
    # it has the rest of the store (at least 40 %), never dropped to make room.
    StreamSpec("ORDERS", ("order.>",), "Order requests, decisions and state changes", 0),
    StreamSpec("EXEC", ("exec.>",), "Child orders and execution reports", 0),
    StreamSpec("POSITIONS", ("position.>",), "Position snapshots", 0),
    # Derived, and written every pnl.snapshot_interval_s whatever the trading (about 60 MB a day at the
    # default second): kept a week. Every snapshot is also a row of QuestDB's ``pnl`` table.
    StreamSpec("PNL", ("pnl.>",), "PnL snapshots", WEEK_S, 0.04),
    # The audit of what operators did through the api: small, and kept like the trading history.
    StreamSpec("OPERATOR", ("operator.>",), "Operator actions through the api: who, what, when, outcome", 0),
)

STREAMS_BY_NAME = {spec.name: spec for spec in STREAMS}

Outcome = Literal["created", "updated", "unchanged"]


def stream_config(spec: StreamSpec, settings: Settings) -> StreamConfig:
    max_age = settings.stream_max_age_s if spec.max_age_s is None else spec.max_age_s
    return StreamConfig(
        name=spec.name,
        subjects=list(spec.subjects),
        description=spec.description,
        retention=RetentionPolicy.LIMITS,
        storage=StorageType.FILE,
        discard=DiscardPolicy.OLD,
        max_age=max_age,
        max_bytes=stream_max_bytes(spec, settings),
        duplicate_window=settings.stream_duplicate_window_s,
        num_replicas=1,
    )


def stream_max_bytes(spec: StreamSpec, settings: Settings) -> int:
    """The stream's byte budget, -1 for none (the trading history)."""
    if not spec.store_share:
        return -1
    return int(settings.jetstream_max_file_store_bytes * spec.store_share)


# The trading history: the streams with no share of their own, never dropped to make room.
HISTORY_STREAMS = tuple(spec.name for spec in STREAMS if not spec.store_share)


def history_room(settings: Settings) -> int:
    """The bytes of JetStream's store the trading history has: what the other streams' shares leave."""
    budgets = sum(max(stream_max_bytes(spec, settings), 0) for spec in STREAMS)
    return settings.jetstream_max_file_store_bytes - budgets


async def history_bytes(js: JetStreamContext) -> int:
    """The bytes the trading history's streams hold now (against ``history_room``)."""
    used = 0
    for name in HISTORY_STREAMS:
        used += (await js.stream_info(name)).state.bytes or 0
    return used


def _differs(current: StreamConfig, wanted: StreamConfig) -> bool:
    def norm(cfg: StreamConfig) -> tuple[object, ...]:
        return (
            sorted(cfg.subjects or []),
            cfg.description,
            cfg.retention,
            cfg.storage,
            cfg.discard,
            round(float(cfg.max_age or 0), 3),
            cfg.max_bytes if cfg.max_bytes is not None else -1,
            round(float(cfg.duplicate_window or 0), 3),
        )

    return norm(current) != norm(wanted)


async def ensure_stream(js: JetStreamContext, spec: StreamSpec, settings: Settings) -> Outcome:
    wanted = stream_config(spec, settings)
    try:
        info = await js.stream_info(spec.name)
    except NotFoundError:
        await js.add_stream(wanted)
        return "created"
    if info.config.storage != wanted.storage:
        raise RuntimeError(
            f"stream {spec.name} uses {info.config.storage} storage; {wanted.storage} is wanted and "
            "JetStream cannot change it in place: back it up and delete it"
        )
    if not _differs(info.config, wanted):
        return "unchanged"
    await js.update_stream(wanted)
    return "updated"


async def ensure_streams(js: JetStreamContext, settings: Settings) -> dict[str, Outcome]:
    outcome = {spec.name: await ensure_stream(js, spec, settings) for spec in STREAMS}
    await ensure_state_bucket(js)
    return outcome


# Service state ----------------------------------------------------------------------------------

STATE_BUCKET = "TRADER_STATE"


async def ensure_state_bucket(js: JetStreamContext) -> None:
    """The key-value bucket where services keep their checkpoints and shared switches."""
    try:
        await js.key_value(STATE_BUCKET)
    except BucketNotFoundError:
        await js.create_key_value(
            KeyValueConfig(
                bucket=STATE_BUCKET,
                history=5,
                storage=StorageType.FILE,
                description="Service checkpoints and shared trading state",
            )
        )


# Subjects -------------------------------------------------------------------------------------


# Market data carries its venue in the subject: an instrument is a symbol on a venue (NautilusTrader's
# InstrumentId), and the mock feed's BTCUSDT (gateway.venue, "mock") is not Binance's. Consumers take the
# one venue they want (``market.tick.binance.BTCUSDT``) or every one (``market.tick.*.BTCUSDT``).


def tick_subject(venue: str, symbol: str) -> str:
    """MarketTick of ``symbol`` on ``venue``: gateway, live-gateway -> normalizer, strategy, exeq, ..."""
    return f"market.tick.{venue}.{symbol}"


def alt_subject(kind: str) -> str:
    return f"alt.norm.{kind}"


def bar_subject(timeframe: str, venue: str, symbol: str) -> str:
    """Closed Bar of ``symbol`` on ``venue``, built from that venue's ticks only: normalizer -> strategy."""
    return f"market.bar.{timeframe}.{venue}.{symbol}"


def spread_subject(symbol: str) -> str:
    """SpreadSnapshot of ``symbol`` across venues: spread-analyzer -> feature-eng, CLI."""
    return f"market.spread.{symbol}"


def spread_opportunity_subject(symbol: str) -> str:
    """SpreadOpportunity (open, close) of ``symbol``: four tokens, where a snapshot's subject has three."""
    return f"market.spread.{symbol}.opportunity"


def feature_subject(timeframe: str, venue: str, symbol: str) -> str:
    """Features of a closed bar of ``symbol`` on ``venue``: feature-eng -> strategy, sink-features."""
    return f"market.feature.{timeframe}.{venue}.{symbol}"


def dlq_subject(service: str, original_subject: str) -> str:
    return f"dlq.{service}.{original_subject}"


# The order flow (messages in ``trader.messages``). Strategy names, venues, accounts and symbols are
# single subject tokens: no dots, spaces or wildcards.


def order_submit_subject(strategy: str) -> str:
    """OrderRequest: strategy (or the CLI) -> risk."""
    return f"order.submit.{strategy}"


def order_cancel_subject(strategy: str) -> str:
    """CancelRequest: strategy (or the CLI, or the kill switch) -> oms; a cancel-replace -> risk."""
    return f"order.cancel.{strategy}"


def order_risk_subject(strategy: str) -> str:
    """RiskDecision: risk -> oms (approved or denied, with the reason)."""
    return f"order.risk.{strategy}"


def order_replace_subject(strategy: str) -> str:
    """ReplaceDecision: risk -> oms, the verdict on a cancel-replace (approved or denied, with the reason)."""
    return f"order.replace.{strategy}"


def order_state_subject(strategy: str) -> str:
    """Order, whole, at every change: oms -> strategy, risk, CLI. The latest per id is the state."""
    return f"order.state.{strategy}"


# Every order's state (``order_state_subject`` of every strategy): the orders view, risk's open orders.
ALL_ORDER_STATES = "order.state.>"
# Every strategy's order requests (``order_submit_subject``): the strategy service's own history.
ALL_ORDER_SUBMITS = "order.submit.>"


def exec_route_subject(strategy: str) -> str:
    """VenueOrder with the venue still to choose (empty) or fixed: oms -> execution-router."""
    return f"exec.route.{strategy}"


def exec_order_subject(venue: str) -> str:
    """VenueOrder for one venue: execution-router -> exeq."""
    return f"exec.order.{venue}"


def exec_report_subject(venue: str) -> str:
    """ExecutionReport: exeq (from the venue) -> oms, ptrc."""
    return f"exec.report.{venue}"


def position_subject(account: str, venue: str, symbol: str) -> str:
    """Position, net per (account, venue, symbol): ptrc -> pnl, risk."""
    return f"position.{account}.{venue}.{symbol}"


def pnl_subject(scope: str) -> str:
    """PnlSnapshot per strategy, or ``total``: pnl -> risk (post-trade), CLI."""
    return f"pnl.{scope}"


# Subjects the execution services add to the EXEC and POSITIONS streams. They match none of the
# wildcards above (``exec.order.>``, ``exec.report.>``, ``position.*.*.*``).


def exec_algo_order_subject(venue: str) -> str:
    """VenueOrder of an algo's child order, as exeq sent it to the venue (EXEC). Not ``exec.order.>``:
    the router and exeq's order intake do not see children."""
    return f"exec.algo.order.{venue}"


def exec_algo_report_subject(venue: str) -> str:
    """ExecutionReport about an algo's child that is not a fill (accepted, canceled, expired, rejected):
    kept for exeq's rebuild, and off ``exec.report.>`` because the oms knows only the parent order.
    A child's fills do go on ``exec.report.<venue>``: they fill the parent."""
    return f"exec.algo.report.{venue}"


def strategy_position_subject(account: str, venue: str, symbol: str, strategy: str) -> str:
    """Position of one strategy: five tokens, where the net ``position.<account>.<venue>.<symbol>`` has
    four, so ``position.*.*.*`` is every net position and ``position.*.*.*.*`` every strategy's."""
    return f"position.{account}.{venue}.{symbol}.{strategy}"


def operator_action_subject(action: str) -> str:
    """OperatorAction: api -> the audit (``/api/actions``, the WebSocket's ``actions``)."""
    return f"operator.action.{action}"


# Header on what the router publishes: the EXEC stream sequence of the route message it answers, so that a
# restarted router knows where it stopped from the stream alone.
SOURCE_SEQ = "Trader-Source-Seq"

# Header on an order state the oms published: the id of the execution report that made it.
EXEC_ID_HEADER = "Trader-Exec-Id"

# Keys of the shared trading state in the STATE_BUCKET key-value store.
TRADING_STATE_KEY = "trading.state"  # TradingState: active, reduce_only or halted
