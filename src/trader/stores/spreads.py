"""QuestDB ``spreads``: spread-analyzer's samples (``kind`` sample: an instrument's NBBO and best pair
every sample interval of event time) and its opportunity events (``kind`` open or close: one row per
crossing of the threshold). A WAL table with DEDUP UPSERT KEYS on the row's identity (the tick that made
it, the pair), so a row written again after a restart replaces itself instead of doubling."""

from __future__ import annotations

from decimal import Decimal
from typing import Any

from questdb import TimestampNanos

from trader.messages import SpreadOpportunity, SpreadSnapshot
from trader.stores.questdb import PRICE, QuestDBClient, _stored

SPREADS_TABLE = "spreads"
_DECIMALS = ("best_bid", "best_ask", "buy_price", "sell_price", "gross_bps", "net_bps", "net_per_unit")


def spreads_table_ddl() -> str:
    decimals = ", ".join(f"{c} {PRICE}" for c in _DECIMALS)
    return (
        f"CREATE TABLE IF NOT EXISTS {SPREADS_TABLE} (ts TIMESTAMP, symbol SYMBOL, kind SYMBOL, "
        f"buy_venue SYMBOL, sell_venue SYMBOL, best_bid_venue SYMBOL, best_ask_venue SYMBOL, {decimals}, "
        "venues INT, stale VARCHAR, reason VARCHAR, source_seq LONG) TIMESTAMP(ts) PARTITION BY DAY WAL "
        "DEDUP UPSERT KEYS(ts, symbol, kind, buy_venue, sell_venue, source_seq)"
    )


def ensure_spreads_table(qdb: QuestDBClient) -> None:
    qdb.query(spreads_table_ddl())


def _row(item: SpreadSnapshot | SpreadOpportunity) -> tuple[dict[str, str | None], dict[str, Any]]:
    symbols: dict[str, str | None]
    if isinstance(item, SpreadOpportunity):
        symbols = {"symbol": item.symbol, "kind": item.kind, "buy_venue": item.buy_venue}
        symbols["sell_venue"] = item.sell_venue
        money: dict[str, Decimal | None] = {
            "buy_price": item.buy_price,
            "sell_price": item.sell_price,
            "gross_bps": item.gross_bps,
            "net_bps": item.net_bps,
            "net_per_unit": item.net_per_unit,
        }
        extra: dict[str, Any] = {"reason": item.reason} if item.reason else {}
    else:
        symbols = {"symbol": item.symbol, "kind": "sample"}
        symbols |= {"best_bid_venue": item.best_bid_venue, "best_ask_venue": item.best_ask_venue}
        money = {"best_bid": item.best_bid, "best_ask": item.best_ask}
        if item.best is not None:
            symbols |= {"buy_venue": item.best.buy_venue, "sell_venue": item.best.sell_venue}
            money |= {
                "buy_price": item.best.buy_price,
                "sell_price": item.best.sell_price,
                "gross_bps": item.best.gross_bps,
                "net_bps": item.best.net_bps,
                "net_per_unit": item.best.net_per_unit,
            }
        extra = {"venues": len(item.quotes)}
        if item.stale:
            extra["stale"] = ",".join(q.venue for q in item.stale)
    columns = {k: _stored(v) for k, v in money.items() if v is not None}
    return symbols, {**columns, **extra, "source_seq": item.source_seq}


def write_spreads(qdb: QuestDBClient, items: list[SpreadSnapshot | SpreadOpportunity]) -> None:
    """Write and flush; on failure the connection is dropped, so the retry starts afresh."""
    if not items:
        return
    try:
        sender = qdb._connect()
        for item in items:
            symbols, columns = _row(item)
            at = TimestampNanos(item.timestamp * 1_000_000)
            sender.row(SPREADS_TABLE, symbols=symbols, columns=columns, at=at)
        sender.flush()
    except Exception:
        qdb.close()
        raise
