"""The one typed settings object, and the one port map.

Every value comes from, in order of precedence: environment variables (``TRADER_*``; nested
fields use ``__``, e.g. ``TRADER_PORTS__GATEWAY=9080``), the YAML file named by ``TRADER_CONFIG``,
then the defaults below. A key no setting has, in any of them, is refused with its place and the
nearest valid name (``trader.settings_keys``). docs/ports.md documents the port map; a test keeps the
two in step.
"""

from __future__ import annotations

import os
import re
from decimal import Decimal
from functools import cached_property
from pathlib import Path
from typing import Any
from urllib.parse import urlparse

from pydantic import BaseModel, Field, model_validator
from pydantic_settings import (
    BaseSettings,
    PydanticBaseSettingsSource,
    SettingsConfigDict,
    YamlConfigSettingsSource,
)

from trader.analytics.features.config import FeatureEngSettings
from trader.analytics.spreads import BASE_TIER_TAKER_FEE_BPS, SpreadAnalyzerSettings
from trader.execution.venues.paper import PaperVenueSettings
from trader.marketdata.mock import MockVenueSettings
from trader.risk.limits import RiskLimits
from trader.settings_keys import KeyCheck


class PortMap(BaseModel):
    """Every TCP port the stack listens on. Services keep the ports of the earlier design."""

    # NATS
    nats: int = 4222
    nats_monitor: int = 8222
    # SeaweedFS (the volume server defaults to 8080, which belongs to gateway: moved to 8380)
    s3: int = 8333
    s3_grpc: int = 18333
    seaweed_master: int = 9333
    seaweed_master_grpc: int = 19333
    seaweed_volume: int = 8380
    seaweed_volume_grpc: int = 18380
    seaweed_filer: int = 8888
    seaweed_filer_grpc: int = 18888
    # QuestDB
    questdb_http: int = 9000
    questdb_pg: int = 8812
    questdb_ilp: int = 9009
    questdb_health: int = 9003
    # Market data
    gateway: int = 8080
    alt_feed: int = 8081
    normalizer: int = 8091
    sink_ticks: int = 8111
    sink_ticks_metrics: int = 9111
    sink_alt: int = 8112
    sink_alt_metrics: int = 9112
    live_gateway: int = 8200
    # Trading core
    strategy: int = 8301
    risk: int = 8302
    oms: int = 8303
    execution_router: int = 8304
    exeq: int = 8305
    ptrc: int = 8306
    pnl: int = 8307
    # Analytics
    ohlcv_agg: int = 8401
    spread_analyzer: int = 8402
    feature_eng: int = 8403
    sink_features: int = 8113
    # Operator
    api: int = 8500
    dashboard: int = 8501

    @model_validator(mode="after")
    def _no_two_share_a_port(self) -> PortMap:
        seen: dict[int, str] = {}
        for name, port in self.model_dump().items():
            if not 0 < port < 65536:
                raise ValueError(f"port {name}={port} is not a valid TCP port")
            if port in seen:
                raise ValueError(f"port {port} is assigned to both {seen[port]} and {name}")
            seen[port] = name
        return self


# A venue's name is a subject token (market.tick.<venue>.<SYMBOL>): no dots, spaces or wildcards.
VENUE_PATTERN = r"^[A-Za-z0-9_-]+$"
# The mock feed's venue by default, and the market data of the default paper setup.
MOCK_VENUE = "mock"
# `trader replay` republishes a venue's stored ticks as venue ``replay-<venue>`` (docs/backtest.md,
# "Replay"): a name of its own, so no consumer takes history for live data.
REPLAY_VENUE_PREFIX = "replay-"


def replay_venue(venue: str) -> str:
    """The venue ``trader replay`` republishes ``venue``'s ticks under."""
    return REPLAY_VENUE_PREFIX + venue


def is_replay_venue(venue: str) -> bool:
    return venue.startswith(REPLAY_VENUE_PREFIX)


class GatewaySettings(BaseModel):
    """The mock market feed."""

    symbols: list[str] = Field(default_factory=lambda: ["BTCUSDT", "ETHUSDT"])
    venue: str = Field(default=MOCK_VENUE, pattern=VENUE_PATTERN, description="the venue of its ticks")
    rate: float = Field(default=20.0, ge=0, description="ticks per second over all symbols; 0 = unlimited")
    seed: int | None = None
    volatility: float = Field(default=0.6, gt=0, description="annualised volatility of the random walk")
    start_prices: dict[str, str] = Field(
        default_factory=lambda: {"BTCUSDT": "60000.00", "ETHUSDT": "3000.00", "SOLUSDT": "150.00"}
    )
    # Multi-venue mode: the same instruments on other mock venues, each tick of ``venue`` followed by one
    # on each of them (trader.marketdata.mock.MultiVenueTicks), so spread-analyzer has spreads to show.
    # ``{}``: the main venue alone.
    venues: dict[str, MockVenueSettings] = Field(
        default_factory=lambda: {
            "mock-b": MockVenueSettings(noise_bps=3.0, latency_ms=50, taker_fee_bps=Decimal(2)),
            "mock-c": MockVenueSettings(noise_bps=3.0, latency_ms=200, taker_fee_bps=Decimal(10)),
        },
        description="other mock venues quoting the same instruments (noise, latency, taker fee)",
    )

    @model_validator(mode="after")
    def _venue_names(self) -> GatewaySettings:
        for name in self.venues:
            if not re.fullmatch(VENUE_PATTERN, name) or name == self.venue:
                raise ValueError(
                    f"gateway.venues: {name!r} is no venue name of its own (letters, digits, - _)"
                )
        return self


class AltFeedSettings(BaseModel):
    """The mock alternative-data source."""

    symbols: list[str] = Field(default_factory=lambda: ["BTCUSDT", "ETHUSDT"])
    interval_s: float = Field(default=1.0, gt=0)
    seed: int | None = None


class NormalizerSettings(BaseModel):
    timeframes: list[str] = Field(default_factory=lambda: ["1s", "1m"])
    lateness_s: float = Field(
        default=5.0, ge=0, description="how long after its event time a tick may arrive"
    )
    flush_interval_s: float = Field(
        default=0.25, gt=0, description="how often closed bars are written (at most; at least when quiet)"
    )
    # The wall clock closes quiet bars only this long after their window, for ticks still in flight.
    clock_safety_s: float = Field(default=1.0, ge=0)
    max_batch: int = Field(default=5_000, gt=0)


class OhlcvAggSettings(BaseModel):
    """ohlcv-agg: higher timeframes from the normalizer's 1m bars (trader.analytics.timeframes)."""

    # Whole numbers of minutes above 1m that divide a day; UTC, aligned to the epoch.
    timeframes: list[str] = Field(default_factory=lambda: ["5m", "15m", "1h", "4h", "1d"])
    # How long after a minute's end its 1m bar may still be amended, by the series' own event clock.
    # At least the normalizer's lateness_s plus the time between its flushes; a later amendment is refused
    # (dead letter) because the minute is already summed into its higher bars for good.
    amend_window_s: float = Field(default=65.0, gt=0)
    # The wall clock closes a bar whose last minutes had no trades this long after its end (the
    # normalizer closes a quiet 1m bar lateness_s + clock_safety_s after its end).
    close_after_s: float = Field(default=10.0, ge=0)
    flush_interval_s: float = Field(default=0.5, gt=0, description="how often changed bars are stored")
    # A snapshot of 10,000 symbols' open bars is about 15 MiB (docs/benchmarks.md): every 30 s, so the
    # object store is not rewritten all the time; a restart replays at most that much of BARS.
    snapshot_every_s: float = Field(default=30.0, gt=0)
    snapshot_every_messages: int = Field(default=50_000, gt=0)
    max_batch: int = Field(default=5_000, gt=0)


class SinkSettings(BaseModel):
    """A lake sink: batches close at whichever limit comes first."""

    batch_rows: int = Field(default=50_000, gt=0)
    batch_bytes: int = Field(default=64 * 1024 * 1024, gt=0)
    batch_seconds: float = Field(default=1.0, gt=0)
    # A trickle (batches under small_batch_rows rows, one after another) is committed every
    # small_batch_seconds instead: each Delta commit costs more the more files the table holds, and a
    # commit a second of a few rows each would keep adding files (docs/benchmarks.md, "The lake at a
    # trickle"). The lake then lags a trickle by up to that long; QuestDB and the bus do not.
    small_batch_rows: int = Field(default=1_000, ge=0)
    small_batch_seconds: float = Field(default=30.0, gt=0)
    compact_interval_s: float = Field(default=3600.0, gt=0)


class StrategyConfig(BaseModel):
    """One strategy instance: ``kind`` is a built-in name (``ma_cross``, ``market_maker``) or a
    ``package.module:Class`` path to the user's own ``trader.strategies.base.Strategy`` subclass."""

    name: str = Field(pattern=r"^[A-Za-z0-9_-]+$")
    kind: str
    symbols: list[str]
    params: dict[str, str] = Field(default_factory=dict)  # strings: exact decimals, parsed by the strategy
    account: str = "paper"
    enabled: bool = True
    # Bars of history fed at start, per timeframe the strategy declares (``Strategy.warmup``):
    # None keeps the strategy's own number, 0 turns the warm-up off.
    warmup_bars: int | None = Field(default=None, ge=0)
    # An instrument is a symbol on a venue (NautilusTrader's InstrumentId, BTCUSDT.BINANCE): the strategy
    # trades its symbols on ``venue`` and hears only of ticks, bars and warm-up bars of ``data_venue``.
    venue: str = Field(
        default="paper",
        pattern=VENUE_PATTERN,
        description="the exeq venue (exeq.venues) its orders go to",
    )
    data_venue: str | None = Field(
        default=None,
        pattern=VENUE_PATTERN,
        description="the market-data venue of its ticks, bars and warm-up: the mock gateway's "
        "(gateway.venue) or a live-gateway venue; None: the venue's own quotes (a paper venue's "
        "exeq.paper.quote_venue, else the venue itself)",
    )


class StrategySettings(BaseModel):
    strategies: list[StrategyConfig] = Field(
        default_factory=lambda: [
            StrategyConfig(
                name="ma-cross-btc",
                kind="ma_cross",
                symbols=["BTCUSDT"],
                # 1s bars: on the mock feed it decides 20 s after the start and trades at the next cross
                # (on 1m bars it said nothing for 20 minutes); real markets want 1m bars or longer.
                params={"fast": "5", "slow": "20", "timeframe": "1s", "quantity": "0.01"},
            ),
            StrategyConfig(
                name="mm-eth",
                kind="market_maker",
                symbols=["ETHUSDT"],
                params={
                    "spread_bps": "10",
                    "quantity": "0.1",
                    "max_position": "1",
                    "refresh_s": "5",
                    "tick_size": "0.01",  # quotes on the instrument's price grid, as a venue requires
                },
            ),
        ]
    )


class RoutingSettings(BaseModel):
    """Which venues may trade each symbol (``*`` for any symbol not named), and an optional fixed one."""

    venues: dict[str, list[str]] = Field(default_factory=lambda: {"*": ["paper"]})
    fixed_venue: str | None = None

    def venues_for(self, symbol: str) -> list[str]:
        return self.venues.get(symbol, self.venues.get("*", []))


class CcxtVenueSettings(BaseModel):
    """One live venue through ccxt (kind ``ccxt``; docs/venues.md, "Live execution"). Secrets are never
    here: only where to find them."""

    exchange: str | None = Field(default=None, description="ccxt exchange id; None: the venue name")
    testnet: bool = Field(default=True, description="trade on the exchange's sandbox (set_sandbox_mode)")
    api_key_env: str | None = Field(default=None, description="env var of the key; TRADER_<NAME>_API_KEY")
    api_secret_env: str | None = Field(default=None, description="env var; TRADER_<NAME>_API_SECRET")
    api_passphrase_env: str | None = Field(
        default=None, description="env var of the API passphrase (OKX); TRADER_<NAME>_API_PASSPHRASE"
    )
    secret_file: Path | None = Field(
        default=None, description='JSON {"api_key": ..., "api_secret": ..., "api_passphrase": ...}'
    )
    base_url: str | None = Field(default=None, description="replaces the API's scheme and host (tests)")
    poll_interval_s: float = Field(default=1.0, gt=0, description="how often working orders are polled")
    retries: int = Field(default=4, ge=0, description="retries of a call after a network error")
    backoff_s: float = Field(default=0.5, ge=0, description="first retry delay; doubles each retry")
    timeout_ms: int = Field(default=10_000, gt=0, description="ccxt's timeout per request")
    rate_limit: bool = Field(default=True, description="ccxt's client-side rate limiter; off for a fake")
    balance_tolerance: Decimal = Field(
        default=Decimal("0.00000001"), ge=0, description="the largest balance difference not reported"
    )


class VenueConfig(CcxtVenueSettings):
    """A venue exeq runs: ``kind`` names an adapter in ``trader.execution.venues``. The fields of
    ``CcxtVenueSettings`` are those of kind ``ccxt`` (a live exchange), which exeq hands the adapter."""

    kind: str = "paper"
    taker_fee_bps: Decimal = Decimal(5)  # what the router nets prices with


def _retention(kept: str, stream: str) -> Any:
    """How long an ended order stays in a service's memory (an hour by default; 0: for ever): the window
    in which a repeat of its messages can still be stored, with room to spare (trader.orders.retention)."""
    return Field(
        default=3600,
        ge=0,
        description=f"an order that ended is held in memory this long, then only {kept} until two hours "
        f"after it ended, or this long again if longer (a repeat stays a repeat), then nothing ({stream} "
        "keeps it for ever); 0: held for ever",
    )


class ExeqSettings(BaseModel):
    venues: dict[str, VenueConfig] = Field(default_factory=lambda: {"paper": VenueConfig()})
    paper: PaperVenueSettings = Field(default_factory=PaperVenueSettings)
    algo_interval_s: float = Field(default=0.1, gt=0, description="how often algos are driven")
    closed_order_retention_s: float = _retention("its key and exec id counter", "EXEC")


class OmsSettings(BaseModel):
    closed_order_retention_s: float = _retention("its id and its reports' ids", "ORDERS")


class PnlSettings(BaseModel):
    snapshot_interval_s: float = Field(default=1.0, gt=0, description="PnL and positions to QuestDB")


class LiveVenueSettings(BaseModel):
    """One exchange the live gateway streams from. Unset URLs and limits are the venue's own
    (trader.marketdata.feeds.<venue>); tests point the URLs at local servers."""

    symbols: list[str] = Field(default_factory=list, description="BTCUSDT, or the venue's form: BTC-USD")
    enabled: bool = True
    ws_url: str | None = None
    rest_url: str | None = None
    rest_rate_per_s: float | None = Field(default=None, gt=0, description="REST requests per second")
    stale_after_s: float | None = Field(default=None, gt=0, description="no frame this long: reconnect")


class LiveAltSettings(BaseModel):
    """One venue's derivatives data the live gateway streams (trader.marketdata.feeds.alt): funding,
    mark and index prices, open interest, liquidations of its linear perpetuals."""

    symbols: list[str] = Field(default_factory=list, description="perpetuals: BTCUSDT, BTC-USDT-SWAP")
    kinds: list[str] = Field(
        default_factory=lambda: ["funding", "mark_price", "index_price", "open_interest", "liquidation"]
    )
    enabled: bool = True
    ws_url: str | None = None
    rest_url: str | None = None
    rest_rate_per_s: float | None = Field(default=None, gt=0, description="REST requests per second")
    stale_after_s: float | None = Field(default=None, gt=0, description="no frame this long: reconnect")
    poll_interval_s: float | None = Field(default=None, gt=0, description="REST polls: open interest")


class LiveGatewaySettings(BaseModel):
    """Exchange market data (live-gateway): no venue by default, and then the service idles."""

    venues: dict[str, LiveVenueSettings] = Field(default_factory=dict, description="by venue: binance, ...")
    alt: dict[str, LiveAltSettings] = Field(default_factory=dict, description="alt data by venue")
    reconnect_initial_s: float = Field(default=0.5, gt=0)
    reconnect_max_s: float = Field(default=30.0, gt=0)
    gap_grace_s: float = Field(default=1.0, ge=0, description="wait for late frames before a gap is one")
    fill_gaps: bool = True
    max_gap_fill: int = Field(default=10_000, gt=0, description="most trades recovered by REST per gap")
    checkpoint_interval_s: float = Field(default=1.0, gt=0)

    @model_validator(mode="after")
    def _known_venues_and_symbols(self) -> LiveGatewaySettings:
        # Imported here: only live-gateway settings need them, and they need nothing from this module.
        from trader.marketdata.feeds import VENUES
        from trader.marketdata.feeds.symbols import parse_symbol

        unknown = sorted(set(self.venues) - set(VENUES))
        if unknown:
            raise ValueError(f"unknown live venue(s) {unknown}; known: {sorted(VENUES)}")
        for venue in self.venues.values():
            for symbol in venue.symbols:
                parse_symbol(symbol)  # a SymbolError (a ValueError) says what is wrong with it
        self._known_alt()
        return self

    def _known_alt(self) -> None:
        from trader.marketdata.feeds import ALT_VENUES
        from trader.marketdata.feeds.symbols import parse_perpetual

        unknown = sorted(set(self.alt) - set(ALT_VENUES))
        if unknown:
            raise ValueError(f"no alternative data from {unknown}; known: {sorted(ALT_VENUES)}")
        kinds = {"funding", "mark_price", "index_price", "open_interest", "liquidation"}
        for alt in self.alt.values():
            if wrong := sorted(set(alt.kinds) - kinds):
                raise ValueError(f"unknown alt data kind(s) {wrong}; known: {sorted(kinds)}")
            for symbol in alt.symbols:
                parse_perpetual(symbol)


class ApiToken(BaseModel):
    """One bearer token of the operator api: ``name`` is who acts (recorded with every action, the
    token never), ``role`` what it may do (``read``: look; ``trade``: also act)."""

    name: str = Field(pattern=r"^[A-Za-z0-9_.-]{1,64}$")
    role: str = Field(default="read", pattern="^(read|trade)$")
    token: str = Field(min_length=16, repr=False)


class ApiSettings(BaseModel):
    """The operator api (trader.services.api, docs/api.md)."""

    # Tokens here, or (when none is given here) in token_file: JSON {"tokens": [{name, role, token}]},
    # which `trader up` creates with a random read token and trade token, mode 0600.
    tokens: list[ApiToken] = Field(default_factory=list)
    token_file: Path | None = Field(default=None, description="default <data_dir>/secrets/api-tokens.json")
    # Where the api listens. Unset: bind_host (loopback). Anything else is explicit, and logged as a
    # warning: the api can halt trading and place orders.
    host: str | None = None
    # Order endpoints (submit, cancel, cancel-all) per token: a steady rate and a burst.
    order_rate_per_s: float = Field(default=10.0, gt=0)
    order_burst: int = Field(default=20, ge=1)
    # Origins a browser may call the api from (CORS); none by default (the dashboard is same-origin).
    cors_origins: list[str] = Field(default_factory=list)


class SupervisorSettings(BaseModel):
    # How long `trader up` waits for a service to be ready before it names it degraded (a problem that
    # cannot go away on its own, a configuration to fix, is named at once).
    ready_timeout_s: float = Field(default=60.0, gt=0)
    stop_timeout_s: float = 15.0
    restart_backoff_initial_s: float = 0.5
    restart_backoff_max_s: float = 30.0
    # A process that stayed up this long is considered healthy again: its backoff restarts.
    restart_backoff_reset_s: float = 60.0
    # Each component's log file (<data>/logs/<name>.log) is copied aside to <name>.log.1 (the one before
    # to .2, ...) and emptied once it passes log_max_bytes; log_keep copies are kept.
    log_max_bytes: int = Field(default=64 * 1024 * 1024, gt=0)
    log_keep: int = Field(default=2, ge=1)


ENV_PREFIX = "TRADER_"
# TRADER_* variables the project reads itself, outside the settings model. A venue's credentials
# (TRADER_<VENUE>_API_KEY, _API_SECRET, _API_PASSPHRASE) and variables a setting names (``*_env``) are
# allowed too (trader.settings_keys); any other TRADER_* variable is refused as an unknown setting.
NOT_SETTINGS_VARIABLES = ("TRADER_CONFIG",)


def config_file_path() -> Path | None:
    """The YAML file ``TRADER_CONFIG`` names (None: unset); ``FileNotFoundError`` if it is no file."""
    config_file = os.environ.get("TRADER_CONFIG")
    if not config_file:
        return None
    if not Path(config_file).is_file():
        raise FileNotFoundError(f"TRADER_CONFIG names {config_file}, which is not a file")
    return Path(config_file)


def _default_data_dir() -> Path:
    base = os.environ.get("XDG_DATA_HOME") or str(Path.home() / ".local" / "share")
    return Path(base) / "trader"


def _default_cache_dir() -> Path:
    base = os.environ.get("XDG_CACHE_HOME") or str(Path.home() / ".cache")
    return Path(base) / "trader"


class Settings(BaseSettings):
    model_config = SettingsConfigDict(
        env_prefix=ENV_PREFIX,
        env_nested_delimiter="__",
        extra="ignore",
    )

    data_dir: Path = Field(default_factory=_default_data_dir)
    cache_dir: Path = Field(default_factory=_default_cache_dir)
    log_level: str = "INFO"
    log_format: str = Field(default="json", pattern="^(json|console)$")

    ports: PortMap = Field(default_factory=PortMap)
    bind_host: str = "127.0.0.1"

    # Where the infrastructure is. Unset means: on this machine at the port map's ports, started by
    # `trader up` if nothing answers there.
    nats_url: str | None = None
    # Threads nats-server runs Go code on (GOMAXPROCS) when `trader up` starts it. Unset: half the
    # cores, at least one, leaving the others to the services; on two cores, one. Every hop of an order
    # wakes nats-server, and with a second thread it hands work between threads at each (measured on
    # 2 cores: a sixth less CPU per order with one; docs/benchmarks.md). A GOMAXPROCS in the environment
    # wins over both.
    nats_gomaxprocs: int | None = Field(default=None, ge=1)
    s3_endpoint: str | None = None
    questdb_host: str = "127.0.0.1"

    s3_access_key: str = "trader"
    s3_secret_key: str = "trader-secret"
    s3_region: str = "us-east-1"
    s3_bucket: str = "trader2025"
    lake_root: str = "s3://trader2025/lake"

    stream_max_age_s: float = Field(default=24 * 3600, gt=0)
    stream_duplicate_window_s: float = Field(default=120, gt=0)
    # JetStream's file store (the nats.conf `trader up` writes). The market-data streams, the dead letters
    # and the PnL snapshots may each fill a share of it (trader.bus.streams) and then drop their oldest
    # messages; the rest is the trading history's, so that a busy feed never leaves an order unstored.
    jetstream_max_file_store_bytes: int = Field(default=20 * 1024**3, gt=0)

    questdb_version: str = "9.3.4"
    questdb_jar: Path | None = None
    questdb_heap: str = "1g"
    # Used only when Maven is not installed: a Maven repository base URL to download the jar from.
    maven_repository: str | None = None

    # Services `trader up` starts, by name (see trader.services.REGISTRY).
    services: list[str] = Field(
        default_factory=lambda: [
            # market data
            "gateway",
            "alt-feed",
            "normalizer",
            "ohlcv-agg",
            "sink-ticks",
            "sink-alt",
            # trading, in paper mode
            "strategy",
            "risk",
            "oms",
            "execution-router",
            "exeq",
            "ptrc",
            "pnl",
            # the operator's window
            "api",
            # analytics
            "spread-analyzer",
            "feature-eng",
            "sink-features",
        ]
    )
    shutdown_timeout_s: float = Field(default=10.0, gt=0)

    gateway: GatewaySettings = Field(default_factory=GatewaySettings)
    alt_feed: AltFeedSettings = Field(default_factory=AltFeedSettings)
    normalizer: NormalizerSettings = Field(default_factory=NormalizerSettings)
    ohlcv_agg: OhlcvAggSettings = Field(default_factory=OhlcvAggSettings)
    # Half a second: ticks reach the lake within 2 s at p99 while flowing at full speed (docs/benchmarks.md).
    sink_ticks: SinkSettings = Field(default_factory=lambda: SinkSettings(batch_seconds=0.5))
    sink_alt: SinkSettings = Field(default_factory=SinkSettings)
    strategy: StrategySettings = Field(default_factory=StrategySettings)
    risk: RiskLimits = Field(default_factory=RiskLimits)
    routing: RoutingSettings = Field(default_factory=RoutingSettings)
    oms: OmsSettings = Field(default_factory=OmsSettings)
    exeq: ExeqSettings = Field(default_factory=ExeqSettings)
    pnl: PnlSettings = Field(default_factory=PnlSettings)
    live_gateway: LiveGatewaySettings = Field(default_factory=LiveGatewaySettings)
    api: ApiSettings = Field(default_factory=ApiSettings)
    spread_analyzer: SpreadAnalyzerSettings = Field(default_factory=SpreadAnalyzerSettings)
    feature_eng: FeatureEngSettings = Field(default_factory=FeatureEngSettings)
    sink_features: SinkSettings = Field(default_factory=SinkSettings)
    supervisor: SupervisorSettings = Field(default_factory=SupervisorSettings)

    @classmethod
    def settings_customise_sources(
        cls,
        settings_cls: type[BaseSettings],
        init_settings: PydanticBaseSettingsSource,
        env_settings: PydanticBaseSettingsSource,
        dotenv_settings: PydanticBaseSettingsSource,
        file_secret_settings: PydanticBaseSettingsSource,
    ) -> tuple[PydanticBaseSettingsSource, ...]:
        sources: list[PydanticBaseSettingsSource] = [init_settings, env_settings]
        check = KeyCheck(settings_cls)
        check.data(getattr(init_settings, "init_kwargs", {}), "Settings() argument")
        config_file = config_file_path()
        if config_file is not None:
            yaml_source = YamlConfigSettingsSource(settings_cls, yaml_file=config_file)
            check.data(yaml_source.yaml_data, str(config_file))
            sources.append(yaml_source)
        check.environment(os.environ, ENV_PREFIX, allowed=NOT_SETTINGS_VARIABLES)
        check.raise_if_unknown()  # a typo must not leave a default in force unnoticed
        return tuple(sources)

    # Where strategies trade and whose market data they read ---------------------------------------

    @model_validator(mode="after")
    def _strategies_name_known_venues(self) -> Settings:
        # Only venues a configuration names: the defaults stand for the paper setup, which a test's
        # settings may replace (the strategy service refuses a strategy whose venues do not hold).
        for strategy in self.strategy.strategies:
            if strategy.model_fields_set & {"venue", "data_venue"}:
                problem = self.strategy_venue_problem(strategy)
                if problem is not None:
                    raise ValueError(problem)
        return self

    def market_data_venues(self) -> list[str]:
        """The venues market data comes from: the mock gateway's, then each live-gateway venue."""
        return [self.gateway.venue, *self.gateway.venues, *self.live_gateway.venues]

    def taker_fee_bps_of(self, venue: str) -> Decimal:
        """A market-data venue's taker fee (spread-analyzer): spread_analyzer.taker_fee_bps, else the exeq
        venue trading on its quotes (a live one: exeq.venues; the mock feed's: the paper venue's), else
        a mock venue's own, else the venue's base tier, else spread_analyzer.default_taker_fee_bps."""
        cfg = self.spread_analyzer
        if venue in cfg.taker_fee_bps:
            return cfg.taker_fee_bps[venue]
        exeq_venue = self.exeq.venues.get(venue)
        if exeq_venue is not None and exeq_venue.kind != "paper":
            return exeq_venue.taker_fee_bps
        if venue == self.gateway.venue:
            return self.exeq.paper.taker_fee_bps
        if venue in self.gateway.venues:
            return self.gateway.venues[venue].taker_fee_bps
        return BASE_TIER_TAKER_FEE_BPS.get(venue, cfg.default_taker_fee_bps)

    def quote_venue_of(self, venue: str) -> str:
        """The market-data venue whose quotes stand for ``venue``'s: a paper venue's
        ``exeq.paper.quote_venue`` (the mock gateway's when unset), else the venue itself."""
        config = self.exeq.venues.get(venue)
        if config is not None and config.kind == "paper":
            return self.exeq.paper.quote_venue or self.gateway.venue
        return venue

    def data_venue_of(self, strategy: StrategyConfig) -> str:
        """The venue of the ticks and bars ``strategy`` hears of."""
        return strategy.data_venue or self.quote_venue_of(strategy.venue)

    def strategy_venue_problem(self, strategy: StrategyConfig) -> str | None:
        """Why ``strategy`` cannot trade where it says, or None: its venue must be run by exeq and routed
        for its symbols, its data venue must be a market-data source, and a live venue never takes the
        mock feed's data."""
        venue = self.exeq.venues.get(strategy.venue)
        if venue is None:
            return (
                f"strategy {strategy.name}: venue {strategy.venue!r} is not an exeq venue "
                f"(exeq.venues: {', '.join(sorted(self.exeq.venues)) or 'none'})"
            )
        unrouted = [s for s in strategy.symbols if strategy.venue not in self.routing.venues_for(s)]
        if unrouted:
            return (
                f"strategy {strategy.name}: venue {strategy.venue!r} is not in routing.venues for "
                f"{', '.join(unrouted)} (routing.venues: {self.routing.venues}): its orders would be refused"
            )
        data_venue = self.data_venue_of(strategy)
        if is_replay_venue(data_venue):  # replayed history of a market-data venue: paper trading only
            return self._replay_data_problem(strategy, venue.kind, data_venue)
        if data_venue not in self.market_data_venues():
            live = ", ".join(self.live_gateway.venues) or "none"
            return (
                f"strategy {strategy.name}: data_venue {data_venue!r} is no market-data source (the mock "
                f"feed's gateway.venue {self.gateway.venue!r}; live_gateway.venues: {live})"
            )
        if venue.kind != "paper" and data_venue == self.gateway.venue:
            return (
                f"strategy {strategy.name} trades the live venue {strategy.venue!r}: it cannot take the "
                f"mock feed's data ({data_venue!r}); set data_venue to a live_gateway venue"
            )
        return None

    def _replay_data_problem(self, strategy: StrategyConfig, kind: str, data_venue: str) -> str | None:
        source = data_venue.removeprefix(REPLAY_VENUE_PREFIX)
        if kind != "paper":
            return (
                f"strategy {strategy.name} trades the live venue {strategy.venue!r}: it cannot take "
                f"replayed data ({data_venue!r})"
            )
        if source not in self.market_data_venues():
            return (
                f"strategy {strategy.name}: data_venue {data_venue!r} replays {source!r}, which is no "
                f"market-data source ({', '.join(self.market_data_venues())})"
            )
        return None

    # Derived addresses -------------------------------------------------------------------------

    @cached_property
    def effective_nats_url(self) -> str:
        return self.nats_url or f"nats://{self.bind_host}:{self.ports.nats}"

    @cached_property
    def effective_s3_endpoint(self) -> str:
        return self.s3_endpoint or f"http://{self.bind_host}:{self.ports.s3}"

    @property
    def questdb_http_url(self) -> str:
        return f"http://{self.questdb_host}:{self.ports.questdb_http}"

    def delta_storage_options(self) -> dict[str, str]:
        """Options handed to delta-rs: explicit, never via the process environment."""
        endpoint = self.effective_s3_endpoint
        return {
            "AWS_ENDPOINT_URL": endpoint,
            "AWS_ACCESS_KEY_ID": self.s3_access_key,
            "AWS_SECRET_ACCESS_KEY": self.s3_secret_key,
            "AWS_REGION": self.s3_region,
            # A plain-HTTP endpoint is refused by delta-rs unless allowed explicitly.
            "AWS_ALLOW_HTTP": "true" if endpoint.startswith("http://") else "false",
        }

    # Paths --------------------------------------------------------------------------------------

    @property
    def log_dir(self) -> Path:
        return self.data_dir / "logs"

    @property
    def run_dir(self) -> Path:
        return self.data_dir / "run"

    def log_file(self, component: str) -> Path:
        return self.log_dir / f"{component}.log"


def url_host_port(url: str, default_port: int) -> tuple[str, int]:
    parsed = urlparse(url)
    return parsed.hostname or "127.0.0.1", parsed.port or default_port


def is_loopback(host: str) -> bool:
    return host in {"localhost", "::1"} or host.startswith("127.")


def load_settings(**overrides: Any) -> Settings:
    return Settings(**overrides)
