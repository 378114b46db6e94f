"""QuestDB: OHLCV bars (and later positions and PnL) in WAL tables with DEDUP UPSERT KEYS, so that a
bar written again (amended, or rebuilt after a restart) replaces its row instead of duplicating it.
Rows go in over ILP/HTTP (the ``questdb`` client, with ``Decimal`` sent as DECIMAL); SQL over /exec."""

from __future__ import annotations

import contextlib
from typing import Any

import httpx
from questdb import Sender, TimestampNanos

from trader.config import Settings
from trader.messages import Bar

PRICE = "DECIMAL(38, 18)"


def bar_table(timeframe: str) -> str:
    return f"ohlcv_{timeframe}"


def bar_table_ddl(timeframe: str) -> str:
    columns = ", ".join(f"{c} {PRICE}" for c in ("open", "high", "low", "close", "volume", "vwap"))
    return (
        f"CREATE TABLE IF NOT EXISTS {bar_table(timeframe)} (ts TIMESTAMP, venue SYMBOL, symbol SYMBOL, "
        f"{columns}, trades LONG, closed BOOLEAN) TIMESTAMP(ts) PARTITION BY DAY WAL "
        "DEDUP UPSERT KEYS(ts, venue, symbol)"
    )


class QuestDBError(RuntimeError):
    pass


class QuestDBClient:
    def __init__(self, settings: Settings) -> None:
        self.settings = settings
        self.url = settings.questdb_http_url
        self._sender: Sender | None = None

    # SQL ----------------------------------------------------------------------------------------

    def query(self, sql: str, timeout: float = 30) -> dict[str, Any]:
        response = httpx.get(f"{self.url}/exec", params={"query": sql}, timeout=timeout)
        body = response.json()
        if response.status_code != 200 or "error" in body:
            raise QuestDBError(f"QuestDB refused {sql!r}: {body.get('error', response.text)}")
        return body

    def ensure_bar_tables(self, timeframes: list[str]) -> None:
        for timeframe in timeframes:
            self.query(bar_table_ddl(timeframe))

    # Ingestion ----------------------------------------------------------------------------------

    def _connect(self) -> Sender:
        if self._sender is None:
            conf = (
                f"http::addr={self.settings.questdb_host}:{self.settings.ports.questdb_http};auto_flush=off;"
            )
            self._sender = Sender.from_conf(conf)
            self._sender.establish()
        return self._sender

    def write_bars(self, bars: list[Bar]) -> None:
        """Write and flush; on failure the connection is dropped, so the retry starts afresh."""
        if not bars:
            return
        try:
            sender = self._connect()
            for bar in bars:
                sender.row(
                    bar_table(bar.timeframe),
                    symbols={"venue": bar.venue, "symbol": bar.symbol},
                    columns={
                        "open": bar.open,
                        "high": bar.high,
                        "low": bar.low,
                        "close": bar.close,
                        "volume": bar.volume,
                        "vwap": bar.vwap,
                        "trades": bar.trades,
                        "closed": bar.closed,
                    },
                    at=TimestampNanos(bar.start * 1_000_000),
                )
            sender.flush()
        except Exception:
            self.close()
            raise

    def close(self) -> None:
        if self._sender is not None:
            with contextlib.suppress(Exception):
                self._sender.close()
            self._sender = None


# Positions and PnL (written by the pnl service) ---------------------------------------------------
#
# One row per position and per PnL scope at every snapshot. DEDUP UPSERT KEYS make a snapshot written
# again (a retry after a failed flush) replace its rows. Net positions have a null ``strategy``.
# (Imported here, so that what is above stays as it was.)

from decimal import ROUND_HALF_EVEN, Decimal, localcontext  # noqa: E402

from trader.messages import PnlSnapshot  # noqa: E402
from trader.portfolio.marks import PositionRow  # noqa: E402

POSITIONS_TABLE = "positions"
PNL_TABLE = "pnl"
_SCALE = Decimal("1e-18")  # DECIMAL(38, 18) keeps 18 places: more would be refused
_POSITION_MONEY = ("quantity", "average_price", "realized_pnl", "fees", "mark", "unrealized_pnl")
_PNL_MONEY = ("realized", "unrealized", "fees", "total", "gross_exposure")


def positions_table_ddl() -> str:
    money = ", ".join(f"{c} {PRICE}" for c in _POSITION_MONEY)
    return (
        f"CREATE TABLE IF NOT EXISTS {POSITIONS_TABLE} (ts TIMESTAMP, account SYMBOL, venue SYMBOL, "
        f"symbol SYMBOL, strategy SYMBOL, {money}, last_exec_id VARCHAR) TIMESTAMP(ts) PARTITION BY DAY WAL "
        "DEDUP UPSERT KEYS(ts, account, venue, symbol, strategy)"
    )


def pnl_table_ddl() -> str:
    money = ", ".join(f"{c} {PRICE}" for c in _PNL_MONEY)
    return (
        f"CREATE TABLE IF NOT EXISTS {PNL_TABLE} (ts TIMESTAMP, scope SYMBOL, {money}) "
        "TIMESTAMP(ts) PARTITION BY DAY WAL DEDUP UPSERT KEYS(ts, scope)"
    )


def ensure_trading_tables(qdb: QuestDBClient) -> None:
    qdb.query(positions_table_ddl())
    qdb.query(pnl_table_ddl())


def _stored(value: Decimal) -> Decimal:
    with localcontext() as ctx:
        ctx.prec = 60  # 20 integer digits and 18 places fit; the default 28 digits would not
        return value.quantize(_SCALE, rounding=ROUND_HALF_EVEN)


def _money(values: dict[str, Decimal | None]) -> dict[str, Any]:
    return {name: _stored(value) for name, value in values.items() if value is not None}


def write_positions(qdb: QuestDBClient, rows: list[PositionRow]) -> None:
    """Write and flush; on failure the connection is dropped, so the retry starts afresh."""
    if not rows:
        return
    try:
        sender = qdb._connect()
        for row in rows:
            p = row.position
            symbols: dict[str, str | None] = {"account": p.account, "venue": p.venue, "symbol": p.symbol}
            if p.strategy is not None:
                symbols["strategy"] = p.strategy
            money = _money(
                {
                    "quantity": p.quantity,
                    "average_price": p.average_price,
                    "realized_pnl": p.realized_pnl,
                    "fees": p.fees,
                    "mark": row.mark,
                    "unrealized_pnl": row.unrealized_pnl,
                }
            )
            columns = {**money, **({"last_exec_id": p.last_exec_id} if p.last_exec_id else {})}
            at = TimestampNanos(row.timestamp * 1_000_000)
            sender.row(POSITIONS_TABLE, symbols=symbols, columns=columns, at=at)
        sender.flush()
    except Exception:
        qdb.close()
        raise


def write_pnl(qdb: QuestDBClient, snapshots: list[PnlSnapshot]) -> None:
    """Write and flush; on failure the connection is dropped, so the retry starts afresh."""
    if not snapshots:
        return
    try:
        sender = qdb._connect()
        for s in snapshots:
            columns = _money({name: getattr(s, name) for name in _PNL_MONEY})
            sender.row(
                PNL_TABLE,
                symbols={"scope": s.scope},
                columns=columns,
                at=TimestampNanos(s.timestamp * 1_000_000),
            )
        sender.flush()
    except Exception:
        qdb.close()
        raise
