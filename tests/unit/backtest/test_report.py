"""The report's figures on hand-made fills and equity curves."""

from __future__ import annotations

from decimal import Decimal, localcontext

from trader.backtest.report import chart_html, drawdown, exposure, round_trips, summarize

D = Decimal


def fill(ts: int, side: str, quantity: str, price: str, fee: str, position: str, realized: str) -> dict:
    return {
        "timestamp": ts,
        "symbol": "BTCUSDT",
        "side": side,
        "quantity": D(quantity),
        "price": D(price),
        "fee": D(fee),
        "position": D(position),
        "realized_pnl": D(realized),
    }


FILLS = [
    fill(0, "buy", "1", "100", "0.1", "1", "0"),  # opens trade 1
    fill(10, "sell", "1", "110", "0.1", "0", "10"),  # closes it: 10 - 0.2
    fill(20, "sell", "2", "110", "0.2", "-2", "10"),  # opens trade 2, short
    fill(30, "buy", "3", "115", "0.3", "1", "0"),  # closes it (-10 - 0.5) and opens trade 3, long
    fill(40, "sell", "1", "112", "0.1", "0", "-3"),  # closes trade 3: -3 - 0.1
]


def test_round_trips_run_from_flat_to_flat_and_a_turn_starts_the_next() -> None:
    assert round_trips(FILLS) == [D("9.8"), D("-10.5"), D("-3.1")]


def test_exposure_is_the_share_of_time_not_flat() -> None:
    # Exposed 0-10 and 20-40: 30 of 50 ms.
    assert exposure(FILLS, 0, 50) == D("0.6")


def test_drawdown_has_its_peak_and_trough() -> None:
    points = [(0, D(0)), (1, D(100)), (2, D(-100)), (3, D(50)), (4, D(-20))]
    worst = drawdown(points, D(1000))
    assert worst["max_drawdown"] == D(200) / D(1100)
    assert worst["max_drawdown_amount"] == D(200)
    assert (worst["drawdown_start"], worst["drawdown_end"]) == (1, 2)


def test_summary_figures() -> None:
    points = [(0, D(0)), (25, D("9.8")), (50, D("-3.8"))]
    figures = summarize(points, FILLS, capital=D(1000), start_ms=0, end_ms=50)
    assert figures["trades"] == 3
    with localcontext() as ctx:
        ctx.prec = 34  # the report's precision
        assert figures["win_rate"] == D(1) / D(3)
        assert figures["profit_factor"] == D("9.8") / D("13.6")
        assert figures["expectancy"] == D("-3.8") / D(3)
    assert figures["fees"] == D("0.8")
    assert figures["total_return"] == D("-0.0038")
    assert figures["max_drawdown_amount"] == D("13.6")
    assert figures["sharpe"] is not None
    assert figures["sharpe"] < 0


def test_the_page_shows_the_figures_in_total_and_per_symbol_and_the_warnings() -> None:
    curve = [(0, D(0)), (10, D(5))]
    btc = summarize(curve, FILLS, capital=D(1000), start_ms=0, end_ms=50)
    eth = summarize(curve, [], capital=D(1000), start_ms=0, end_ms=50)
    page = chart_html(
        "t",
        {"s": curve},
        D(1000),
        {"s": btc},
        ["no alternative data: <none>"],
        {"s": {"BTCUSDT": btc, "ETHUSDT": eth}},
    )
    assert "<th>figure</th><th>all</th><th>BTCUSDT</th><th>ETHUSDT</th>" in page
    assert f"<tr><td>trades</td><td>{btc['trades']}</td><td>{btc['trades']}</td><td>0</td></tr>" in page
    assert "warning:</strong> no alternative data: &lt;none&gt;" in page
    one = chart_html("t", {"s": curve}, D(1000), {"s": btc}, (), {"s": {"BTCUSDT": btc}})
    assert "<th>figure</th><th>value</th>" in one  # one symbol: its total is its only column


def test_a_gain_over_a_moment_has_no_annualised_return_rather_than_an_overflow() -> None:
    """1.005 compounded over a year of 50 ms ranges (630 million times) is beyond any Decimal."""
    figures = summarize([(0, D(0)), (50, D(5))], [], capital=D(1000), start_ms=0, end_ms=50)
    assert figures["annualised_return"] is None
    assert figures["calmar"] is None
    assert figures["total_return"] == D("0.005")
    over_a_day = summarize(
        [(0, D(0)), (86_400_000, D(5))], [], capital=D(1000), start_ms=0, end_ms=86_400_000
    )
    with localcontext() as ctx:
        ctx.prec = 34  # the figures' context
        assert over_a_day["annualised_return"] == D("1.005") ** 365 - 1
