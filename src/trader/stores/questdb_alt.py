"""The venues' alternative data in QuestDB, for the dashboard, strategies, features and ``trader funding``
/ ``trader oi``: tables ``funding``, ``open_interest``, ``liquidations`` and ``mark_index``.

WAL tables with DEDUP UPSERT KEYS, so a datum written again (a batch handed over again after a crash)
replaces its row: the writer is idempotent, and the latest of each instrument is one query
(``LATEST ON ts PARTITION BY venue, symbol``), whatever order the rows came in. Liquidations have no id at
the venues: their key is the event time and a hash of side, price and quantity (``liquidation_key``).
"""

from __future__ import annotations

import hashlib
import re
from dataclasses import dataclass
from decimal import ROUND_HALF_EVEN, Decimal, localcontext
from typing import Any

from questdb import TimestampNanos

from trader.marketdata.feeds.symbols import PERP_SUFFIX
from trader.messages import AltDatum
from trader.stores.questdb import PRICE, QuestDBClient

FUNDING, OPEN_INTEREST, LIQUIDATIONS, MARK_INDEX = "funding", "open_interest", "liquidations", "mark_index"
TABLE_OF_KIND = {
    "funding": FUNDING,
    "open_interest": OPEN_INTEREST,
    "liquidation": LIQUIDATIONS,
    "mark_price": MARK_INDEX,
    "index_price": MARK_INDEX,
}


def _ddl(table: str, columns: str, keys: str) -> str:
    return (
        f"CREATE TABLE IF NOT EXISTS {table} (ts TIMESTAMP, venue SYMBOL, symbol SYMBOL, {columns}) "
        f"TIMESTAMP(ts) PARTITION BY DAY WAL DEDUP UPSERT KEYS(ts, venue, symbol{keys})"
    )


DDL = {
    FUNDING: _ddl(FUNDING, f"rate {PRICE}, predicted {PRICE}, next_funding TIMESTAMP", ""),
    OPEN_INTEREST: _ddl(OPEN_INTEREST, f"open_interest {PRICE}, unit SYMBOL", ""),
    LIQUIDATIONS: _ddl(
        LIQUIDATIONS, f"side SYMBOL, price {PRICE}, quantity {PRICE}, unit SYMBOL, key LONG", ", key"
    ),
    MARK_INDEX: _ddl(MARK_INDEX, f"kind SYMBOL, price {PRICE}", ", kind"),
}
_SCALE = Decimal("1e-18")
_UNIFIED = re.compile(r"^[A-Z0-9]{2,30}(-PERP)?$")


@dataclass(frozen=True, slots=True)
class Row:
    table: str
    symbols: dict[str, str | None]
    columns: dict[str, Any]
    ts_ms: int


def liquidation_key(datum: AltDatum) -> int:
    """A stable 63-bit key of one liquidation's side, price and quantity."""
    text = f"{datum.side}:{datum.price}:{datum.value}".encode()
    return int.from_bytes(hashlib.blake2b(text, digest_size=8).digest(), "big") >> 1


def row_of(datum: AltDatum) -> Row | None:
    """The row of a datum of a kind with a table, about an instrument; None for others (sentiment)."""
    table = TABLE_OF_KIND.get(datum.kind)
    if table is None or datum.symbol is None:
        return None
    symbols: dict[str, str | None] = {"venue": datum.source, "symbol": datum.symbol}
    columns: dict[str, Any]
    if table == FUNDING:
        columns = {"rate": _stored(datum.value)}
        if datum.predicted is not None:
            columns["predicted"] = _stored(datum.predicted)
        if datum.next_time is not None:
            columns["next_funding"] = TimestampNanos(datum.next_time * 1_000_000)
    elif table == OPEN_INTEREST:
        columns = {"open_interest": _stored(datum.value)}
        if datum.unit:
            symbols["unit"] = datum.unit
    elif table == LIQUIDATIONS:
        columns = {"quantity": _stored(datum.value), "key": liquidation_key(datum)}
        if datum.price is not None:
            columns["price"] = _stored(datum.price)
        if datum.side is not None:
            symbols["side"] = datum.side
        if datum.unit:
            symbols["unit"] = datum.unit
    else:
        symbols["kind"] = "mark" if datum.kind == "mark_price" else "index"
        columns = {"price": _stored(datum.value)}
    return Row(table, symbols, columns, datum.timestamp)


def ensure_alt_tables(qdb: QuestDBClient) -> None:
    for ddl in DDL.values():
        qdb.query(ddl)


def write_alt(qdb: QuestDBClient, rows: list[Row]) -> None:
    """Write and flush; on failure the connection is dropped, so the retry starts afresh."""
    if not rows:
        return
    try:
        sender = qdb._connect()
        for row in rows:
            sender.row(
                row.table, symbols=row.symbols, columns=row.columns, at=TimestampNanos(row.ts_ms * 1_000_000)
            )
        sender.flush()
    except Exception:
        qdb.close()
        raise


def latest_sql(table: str, symbol: str | None = None, by: tuple[str, ...] = ("venue", "symbol")) -> str:
    """The latest row of each venue and instrument. ``symbol``: one unified instrument; the spot
    spelling (``BTCUSDT``) names its perpetual too. Raises ``ValueError`` for what is not a symbol."""
    where = ""
    if symbol is not None:
        wanted = symbol.strip().upper()
        if not _UNIFIED.match(wanted):
            raise ValueError(f"{symbol!r} is not a unified symbol (BTCUSDT, BTCUSDT-PERP)")
        names = [wanted] if wanted.endswith(PERP_SUFFIX) else [wanted, f"{wanted}{PERP_SUFFIX}"]
        where = " WHERE symbol IN ({})".format(", ".join(f"'{n}'" for n in names))
    return f"SELECT * FROM {table}{where} LATEST ON ts PARTITION BY {', '.join(by)}"


def _stored(value: Decimal) -> Decimal:
    with localcontext() as ctx:
        ctx.prec = 60
        return value.quantize(_SCALE, rounding=ROUND_HALF_EVEN)
