"""QuestDB: OHLCV bars (and later positions and PnL) in WAL tables with DEDUP UPSERT KEYS, so that a
bar written again (amended, or rebuilt after a restart) replaces its row instead of duplicating it.
Rows go in over ILP/HTTP (the ``questdb`` client, with ``Decimal`` sent as DECIMAL); SQL over /exec."""

from __future__ import annotations

import contextlib
from typing import Any

import httpx
from questdb.ingress import Sender, TimestampNanos

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


class QuestDB:
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
