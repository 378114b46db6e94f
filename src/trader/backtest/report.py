"""The figures of a backtest, per strategy and per strategy and symbol, as Freqtrade users know them.

Definitions (docs/backtest.md says the same):

- equity: PnL marked to market (realized + unrealized - fees, as the pnl service computes it), on top of
  ``capital``; sampled every ``equity_interval_ms`` of event time and at the end;
- a trade is a round trip: from a flat position to flat again (a fill that goes through zero ends one
  trade and opens the next); its PnL is the PnL its fills realized minus their fees (the whole fee of
  the fill that turns the position goes to the trade it closes). A trade still open at the end is not
  counted (its PnL is in the equity, unrealized);
- win rate: trades with a PnL above zero, over all trades; profit factor: the sum of winning trades'
  PnL over the loss of the losing ones (None without a loss); expectancy: the mean PnL per trade;
- total return: the last equity over ``capital``; annualised: compounded over 365 days;
- Sharpe and Sortino: the mean return per equity sample over its standard deviation (Sortino: over
  the downside deviation, returns below zero), annualised by the square root of samples per year, with a
  risk-free rate of zero; Calmar: the annualised return over the maximum drawdown;
- max drawdown: the largest fall of capital + equity from a peak, as a fraction of the peak, with the
  time of the peak (start) and of the trough (end);
- exposure: the share of the run's time during which the position was not flat (for a strategy, any of
  its symbols).

Money is Decimal throughout; the ratios are Decimals too, rounded to 6 places when shown.
"""

from __future__ import annotations

import html
import itertools
from collections.abc import Iterable, Sequence
from decimal import Decimal, Overflow, localcontext
from typing import Any

ZERO = Decimal(0)
ONE = Decimal(1)
YEAR_MS = 365 * 86_400_000


def round_trips(fills: Sequence[dict[str, Any]]) -> list[Decimal]:
    """The PnL of each closed round trip in ``fills`` of one strategy and symbol, in time order."""
    trades: list[Decimal] = []
    position, realized_before = ZERO, ZERO
    open_pnl: Decimal | None = None
    for fill in fills:
        realized = fill["realized_pnl"] - realized_before
        realized_before = fill["realized_pnl"]
        after = fill["position"]
        if open_pnl is None:
            open_pnl = ZERO
        open_pnl += realized - fill["fee"]
        closed = position != 0 and (after == 0 or (after > 0) != (position > 0))
        if closed:
            trades.append(open_pnl)
            open_pnl = None if after == 0 else ZERO
        position = after
    return trades


def exposure(fills: Sequence[dict[str, Any]], start_ms: int, end_ms: int) -> Decimal:
    """The share of ``[start_ms, end_ms]`` with a position not flat in some symbol of ``fills``."""
    if end_ms <= start_ms:
        return ZERO
    held: dict[str, Decimal] = {}
    exposed_ms, since = 0, None
    for fill in fills:
        was_exposed = any(q != 0 for q in held.values())
        held[fill["symbol"]] = fill["position"]
        is_exposed = any(q != 0 for q in held.values())
        if not was_exposed and is_exposed:
            since = fill["timestamp"]
        elif was_exposed and not is_exposed and since is not None:
            exposed_ms += fill["timestamp"] - since
            since = None
    if since is not None:
        exposed_ms += end_ms - since
    return Decimal(exposed_ms) / Decimal(end_ms - start_ms)


def drawdown(points: Sequence[tuple[int, Decimal]], capital: Decimal) -> dict[str, Any]:
    """The largest fall from a peak of ``capital + equity``: its fraction, amount, start and end."""
    worst = {"max_drawdown": ZERO, "max_drawdown_amount": ZERO, "drawdown_start": None, "drawdown_end": None}
    peak_value, peak_ts = None, None
    for ts, equity in points:
        value = capital + equity
        if peak_value is None or value > peak_value:
            peak_value, peak_ts = value, ts
            continue
        fall = peak_value - value
        fraction = fall / peak_value if peak_value > 0 else ZERO
        if fraction > worst["max_drawdown"]:
            worst = {
                "max_drawdown": fraction,
                "max_drawdown_amount": fall,
                "drawdown_start": peak_ts,
                "drawdown_end": ts,
            }
    return worst


def drawdown_series(points: Sequence[tuple[int, Decimal]], capital: Decimal) -> list[Decimal]:
    """The drawdown (a fraction of the peak, 0 at a peak) at each point, for the chart."""
    out, peak = [], None
    for _, equity in points:
        value = capital + equity
        peak = value if peak is None or value > peak else peak
        out.append((peak - value) / peak if peak > 0 else ZERO)
    return out


def summarize(
    points: Sequence[tuple[int, Decimal]],
    fills: Sequence[dict[str, Any]],
    *,
    capital: Decimal,
    start_ms: int,
    end_ms: int,
) -> dict[str, Any]:
    """Every figure of one strategy (or one strategy and symbol) from its equity samples and fills."""
    with localcontext() as ctx:
        ctx.prec = 34
        by_symbol: dict[str, list[dict[str, Any]]] = {}
        for fill in fills:
            by_symbol.setdefault(fill["symbol"], []).append(fill)
        trades = [pnl for symbol_fills in by_symbol.values() for pnl in round_trips(symbol_fills)]
        wins = [t for t in trades if t > 0]
        losses = [t for t in trades if t < 0]
        final = points[-1][1] if points else ZERO
        total_return = final / capital
        duration = max(end_ms - start_ms, 1)
        growth = ONE + total_return
        annualised = _annualised(growth, duration)
        returns = _returns(points, capital)
        per_year = (Decimal(YEAR_MS) / (Decimal(duration) / len(returns))) if returns else ZERO
        worst = drawdown(points, capital)
        return {
            "trades": len(trades),
            "wins": len(wins),
            "losses": len(losses),
            "win_rate": Decimal(len(wins)) / len(trades) if trades else None,
            "total_pnl": final,
            "total_return": total_return,
            "annualised_return": annualised,
            "sharpe": _ratio(returns, _std(returns), per_year),
            "sortino": _ratio(returns, _downside(returns), per_year),
            "calmar": (
                annualised / worst["max_drawdown"]
                if annualised is not None and worst["max_drawdown"] > 0
                else None
            ),
            **worst,
            "profit_factor": sum(wins, ZERO) / -sum(losses, ZERO) if losses else None,
            "expectancy": sum(trades, ZERO) / len(trades) if trades else None,
            "exposure": exposure(fills, start_ms, end_ms),
            "fees": sum((f["fee"] for f in fills), ZERO),
            "fills": len(fills),
            "volume": sum((f["quantity"] * f["price"] for f in fills), ZERO),
        }


def _annualised(growth: Decimal, duration_ms: int) -> Decimal | None:
    """The growth compounded over a year; None when that is beyond what a Decimal holds (a gain over
    a range of seconds, compounded some millions of times)."""
    if growth <= 0:
        return -ONE
    try:
        return growth ** (Decimal(YEAR_MS) / Decimal(duration_ms)) - ONE
    except Overflow:
        return None


def _returns(points: Sequence[tuple[int, Decimal]], capital: Decimal) -> list[Decimal]:
    out = []
    for (_, before), (_, after) in itertools.pairwise(points):
        base = capital + before
        out.append((after - before) / base if base > 0 else ZERO)
    return out


def _std(values: Sequence[Decimal]) -> Decimal:
    if len(values) < 2:
        return ZERO
    mean = sum(values, ZERO) / len(values)
    return (sum(((v - mean) ** 2 for v in values), ZERO) / (len(values) - 1)).sqrt()


def _downside(values: Sequence[Decimal]) -> Decimal:
    if not values:
        return ZERO
    return (sum((min(v, ZERO) ** 2 for v in values), ZERO) / len(values)).sqrt()


def _ratio(returns: Sequence[Decimal], spread: Decimal, per_year: Decimal) -> Decimal | None:
    if not returns or spread == 0:
        return None
    mean = sum(returns, ZERO) / len(returns)
    return mean / spread * per_year.sqrt()


# The chart: one self-contained HTML page, an SVG per strategy, no script and nothing fetched ----------

WIDTH, HEIGHT, PAD = 900, 220, 40


def chart_html(
    title: str,
    curves: dict[str, list[tuple[int, Decimal]]],
    capital: Decimal,
    summaries: dict[str, dict[str, Any]],
    warnings: Sequence[str] = (),
    by_symbol: dict[str, dict[str, dict[str, Any]]] | None = None,
) -> str:
    """One self-contained page: per strategy, its equity and drawdown and a table of its figures, in
    total and (``by_symbol``) per symbol; ``warnings`` at the top."""
    parts = [
        "<!doctype html><html><head><meta charset='utf-8'>",
        f"<title>{html.escape(title)}</title>",
        "<style>body{font-family:sans-serif;margin:24px}table{border-collapse:collapse}"
        "td,th{border:1px solid #ccc;padding:2px 8px;text-align:right}"
        "th:first-child,td:first-child{text-align:left}</style></head><body>",
        f"<h1>{html.escape(title)}</h1>",
        *(f"<p class='warning'><strong>warning:</strong> {html.escape(w)}</p>" for w in warnings),
    ]
    for name, points in curves.items():
        parts.append(f"<h2>{html.escape(name)}</h2>")
        parts.append(_svg(points, [p for p in points], "equity (quote currency)", "#1f77b4"))
        dd = drawdown_series(points, capital)
        parts.append(
            _svg(
                points,
                list(zip([t for t, _ in points], [-d for d in dd], strict=True)),
                "drawdown (fraction of the peak)",
                "#d62728",
            )
        )
        parts.append(_table(summaries.get(name, {}), (by_symbol or {}).get(name, {})))
    parts.append("</body></html>")
    return "\n".join(parts)


def _svg(
    points: Sequence[tuple[int, Decimal]], values: Sequence[tuple[int, Decimal]], label: str, color: str
) -> str:
    if not values:
        return "<p>no samples</p>"
    t0, t1 = values[0][0], max(values[-1][0], values[0][0] + 1)
    low = min(v for _, v in values)
    high = max(v for _, v in values)
    span = (high - low) or ONE

    def xy(ts: int, v: Decimal) -> str:
        x = PAD + (WIDTH - 2 * PAD) * (ts - t0) / (t1 - t0)
        y = HEIGHT - PAD - float((HEIGHT - 2 * PAD) * (v - low) / span)
        return f"{x:.1f},{y:.1f}"

    line = " ".join(xy(ts, v) for ts, v in values)
    return (
        f"<svg xmlns='http://www.w3.org/2000/svg' width='{WIDTH}' height='{HEIGHT}'>"
        f"<rect x='0' y='0' width='{WIDTH}' height='{HEIGHT}' fill='white' stroke='#ddd'/>"
        f"<text x='{PAD}' y='20' font-size='12'>{html.escape(label)}: {_fmt(low)} to {_fmt(high)}</text>"
        f"<polyline fill='none' stroke='{color}' stroke-width='1.5' points='{line}'/></svg>"
    )


def _table(summary: dict[str, Any], symbols: dict[str, dict[str, Any]] | None = None) -> str:
    """The figures in rows; a column for the total, and one per symbol when there are several."""
    columns = {"value": summary} if not symbols or len(symbols) < 2 else {"all": summary, **symbols}
    head = "".join(f"<th>{html.escape(c)}</th>" for c in columns)
    rows = "".join(
        f"<tr><td>{html.escape(k)}</td>"
        + "".join(f"<td>{html.escape(_fmt(c.get(k)))}</td>" for c in columns.values())
        + "</tr>"
        for k in summary
    )
    return f"<table><tr><th>figure</th>{head}</tr>{rows}</table>"


def _fmt(value: Any) -> str:
    if isinstance(value, Decimal):
        return f"{value.quantize(Decimal('0.000001')) if abs(value) < 10**20 else value:f}"
    return "" if value is None else str(value)


def jsonable(summary: dict[str, Any]) -> dict[str, Any]:
    """Decimals as exact strings, for summary.json."""
    return {k: (f"{v:f}" if isinstance(v, Decimal) else v) for k, v in summary.items()}


def curve(rows: Iterable[dict[str, Any]], strategy: str, symbol: str) -> list[tuple[int, Decimal]]:
    return [
        (r["timestamp"], r["equity"]) for r in rows if r["strategy"] == strategy and r["symbol"] == symbol
    ]
