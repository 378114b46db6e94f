"""``trader spreads [SYMBOL] [--json]``: the latest cross-venue view of each instrument, from the
SPREADS stream (spread-analyzer's ``SpreadSnapshot``, the latest of each ``market.spread.<SYMBOL>``).

Without a symbol: one row per instrument (NBBO and its venues, how many venues are fresh, which are
stale, the best pair and its gross and net edge). With one: that instrument's venues (quote, taker fee,
fresh or stale) and every pair. ``--json`` prints the snapshots whole, every value exact."""

from __future__ import annotations

from datetime import UTC, datetime
from typing import TYPE_CHECKING, Annotated

import msgspec
import typer

from trader.cli.connect import run_on_nats
from trader.cli.format import JsonOpt, console, err, fail, print_rows, to_json
from trader.messages import SpreadSnapshot

if TYPE_CHECKING:
    from nats.aio.client import Client as NATS

STREAM = "SPREADS"
_decoder = msgspec.json.Decoder(SpreadSnapshot)


async def latest_snapshots(nc: NATS, symbol: str | None = None) -> list[SpreadSnapshot]:
    """The latest snapshot of each instrument (or of ``symbol``), by symbol."""
    from nats.js.errors import NotFoundError  # nats-py: not on every `trader` start

    from trader.bus.streams import spread_subject

    js = nc.jetstream()
    try:
        info = await js.stream_info(STREAM, subjects_filter=spread_subject(symbol or "*"))
    except NotFoundError:
        return []
    found = []
    for subject in sorted(info.state.subjects or {}):
        try:
            stored = await js.get_last_msg(STREAM, subject)
            found.append(_decoder.decode(stored.data or b""))
        except NotFoundError:
            continue  # aged out meanwhile
        except (msgspec.ValidationError, msgspec.DecodeError):
            err.print(f"[yellow]skipped an undecodable message on {subject}[/]")
    return sorted(found, key=lambda s: s.symbol)


def _time(ms: int) -> datetime:
    return datetime.fromtimestamp(ms / 1000, UTC)


def _summary(snapshots: list[SpreadSnapshot]) -> None:
    columns = ["symbol", "best_bid", "bid_venue", "best_ask", "ask_venue", "venues", "stale", "best_pair"]
    columns += ["gross_bps", "net_bps", "time"]
    rows = []
    for s in snapshots:
        best = s.best
        row = [s.symbol, s.best_bid, s.best_bid_venue, s.best_ask, s.best_ask_venue, len(s.quotes)]
        row.append(", ".join(q.venue for q in s.stale) or None)
        if best is None:
            row += [None, None, None]
        else:
            row += [f"{best.buy_venue} -> {best.sell_venue}", best.gross_bps, best.net_bps]
        rows.append([*row, _time(s.timestamp)])
    print_rows(columns, rows, False)


def _detail(snapshot: SpreadSnapshot) -> None:
    console.print(
        f"{snapshot.symbol} at {_time(snapshot.timestamp):%Y-%m-%d %H:%M:%S.%f}"[:-3]
        + f"  NBBO {snapshot.best_bid} ({snapshot.best_bid_venue}) / {snapshot.best_ask}"
        f" ({snapshot.best_ask_venue})",
        highlight=False,
    )
    venues = [
        [q.venue, q.bid, q.ask, q.taker_fee_bps, "stale" if stale else "fresh", _time(q.timestamp)]
        for stale, quotes in ((False, snapshot.quotes), (True, snapshot.stale))
        for q in quotes
    ]
    print_rows(["venue", "bid", "ask", "taker_fee_bps", "quote", "time"], venues, False)
    pairs = sorted(snapshot.pairs, key=lambda p: p.net_bps, reverse=True)
    print_rows(
        ["buy_at", "sell_at", "buy_price", "sell_price", "gross_bps", "net_bps", "net_per_unit"],
        [
            [p.buy_venue, p.sell_venue, p.buy_price, p.sell_price, p.gross_bps, p.net_bps, p.net_per_unit]
            for p in pairs
        ],
        False,
    )


def spreads(
    symbol: Annotated[str | None, typer.Argument(help="One instrument, e.g. BTCUSDT; all without.")] = None,
    as_json: JsonOpt = False,
) -> None:
    """Cross-venue spreads: NBBO, every venue pair's edge after taker fees (spread-analyzer)."""
    found = run_on_nats(lambda nc: latest_snapshots(nc, symbol))
    if symbol is not None and not found:
        raise fail(f"no spreads for {symbol}: spread-analyzer has seen it on fewer than two venues")
    if as_json:
        console.file.write(to_json([msgspec.to_builtins(s) for s in found]) + "\n")
        return
    if symbol is None:
        _summary(found)
    else:
        _detail(found[0])
