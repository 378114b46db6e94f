"""Balance reconciliation of a live venue: what the trading history explains against what the venue holds.

At each start exeq compares, per live venue, the venue's balances with the *baseline* (the balances it
recorded at the previous start, with the EXEC sequence they include the fills up to) plus the net effect
of every fill exeq published for that venue since. An asset whose difference exceeds the tolerance is a
``BalanceMismatch``: reported, never corrected (a deposit, a withdrawal, a fee in a third asset, a trade
made by hand all show here; an operator looks). Then the venue's balances become the new baseline.

A fill moves its symbol's base asset by ``+quantity`` (buy) or ``-quantity`` (sell), its quote asset by
``-/+ quantity * price``, and its fee asset by ``-fee`` (a rebate, negative, adds). An ``ExecutionReport``
of a live venue carries the venue's own charge (``commission`` in ``commission_asset``: the base asset
of a Binance buy, BNB...), which is what moved the balance; without one, its ``fee`` (in the quote
currency) is taken from the quote asset.

Everything here is ``Decimal`` and exact: no rounding, so a tolerance of 0 demands equality.

Pure: the baselines and the fills come through a ``BalanceBook``; the one on the bus (baselines in the
``TRADER_STATE`` key-value bucket, fills from the EXEC stream) is the exeq service's.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass, field
from decimal import Decimal
from typing import Protocol

import msgspec

from trader.messages import ExecutionReport, Side

Balances = dict[str, Decimal]
# A symbol's (base, quote) assets as the venue names them in its balances; None when it cannot tell.
AssetsOf = Callable[[str], "tuple[str, str] | None"]

ZERO = Decimal(0)


class BalanceBaseline(msgspec.Struct, kw_only=True, frozen=True):
    """A venue's balances as fetched at a start, and the last EXEC sequence whose fills they include."""

    venue: str
    balances: dict[str, Decimal]
    seq: int
    timestamp: int = 0


@dataclass(frozen=True)
class BalanceMismatch:
    """``asset`` at ``venue``: the history explains ``expected``, the venue holds ``actual``;
    ``difference`` is ``actual - expected`` (positive: more at the venue, as after a deposit)."""

    venue: str
    asset: str
    expected: Decimal
    actual: Decimal
    difference: Decimal

    def as_strings(self) -> dict[str, str]:
        """Exact figures for logs and /health (a float would round them)."""
        return {
            "venue": self.venue,
            "asset": self.asset,
            "expected": str(self.expected),
            "venue_balance": str(self.actual),
            "difference": str(self.difference),
        }


@dataclass(frozen=True)
class BalanceCheck:
    """What one venue's check found: ``expected`` balances, the ``mismatches``, and the fills that could
    not be counted (unknown symbol, no price), by exec id."""

    venue: str
    expected: Balances
    mismatches: list[BalanceMismatch] = field(default_factory=list)
    uncounted: list[str] = field(default_factory=list)


# Arithmetic --------------------------------------------------------------------------------------


def fill_deltas(
    side: Side,
    quantity: Decimal,
    price: Decimal,
    *,
    base: str,
    quote: str,
    fee: Decimal = ZERO,
    fee_asset: str | None = None,
) -> Balances:
    """How one fill moves the balances; the fee is in ``fee_asset`` (default: the quote asset)."""
    sign = 1 if side == "buy" else -1
    deltas: Balances = {base: sign * quantity, quote: -sign * quantity * price}
    if fee:
        asset = fee_asset or quote
        deltas[asset] = deltas.get(asset, ZERO) - fee
    return deltas


def report_deltas(report: ExecutionReport, assets_of: AssetsOf) -> Balances | None:
    """How a published fill moved the balances; None when it cannot be told (unknown symbol, no price).
    The venue's own charge when the report has it, else its fee in the quote currency."""
    assets = assets_of(report.symbol)
    if assets is None or report.last_price is None:
        return None
    base, quote = assets
    fee, fee_asset = report.fee, None
    if report.commission is not None and report.commission_asset:
        fee, fee_asset = report.commission, report.commission_asset
    return fill_deltas(
        report.side,
        report.last_quantity,
        report.last_price,
        base=base,
        quote=quote,
        fee=fee,
        fee_asset=fee_asset,
    )


def add_up(start: Mapping[str, Decimal], deltas: Iterable[Mapping[str, Decimal]]) -> Balances:
    """``start`` moved by every one of ``deltas``."""
    total: Balances = dict(start)
    for delta in deltas:
        for asset, amount in delta.items():
            total[asset] = total.get(asset, ZERO) + amount
    return total


def compare(
    venue: str, expected: Mapping[str, Decimal], actual: Mapping[str, Decimal], tolerance: Decimal
) -> list[BalanceMismatch]:
    """Every asset whose difference exceeds ``tolerance``; an asset absent on one side counts as 0 there
    (venues leave out empty balances)."""
    mismatches = []
    for asset in sorted(expected.keys() | actual.keys()):
        want, have = expected.get(asset, ZERO), actual.get(asset, ZERO)
        if abs(have - want) > tolerance:
            mismatches.append(BalanceMismatch(venue, asset, want, have, have - want))
    return mismatches


def check_balances(
    baseline: BalanceBaseline,
    fills: Iterable[ExecutionReport],
    actual: Mapping[str, Decimal],
    assets_of: AssetsOf,
    tolerance: Decimal,
) -> BalanceCheck:
    """The venue's ``actual`` balances against ``baseline`` moved by ``fills`` (those published after it)."""
    deltas, uncounted = [], []
    for fill in fills:
        delta = report_deltas(fill, assets_of)
        if delta is None:
            uncounted.append(fill.exec_id)
        else:
            deltas.append(delta)
    expected = add_up(baseline.balances, deltas)
    mismatches = compare(baseline.venue, expected, actual, tolerance)
    return BalanceCheck(baseline.venue, expected, mismatches, uncounted)


# Where baselines and fills come from ---------------------------------------------------------------


def baseline_key(venue: str) -> str:
    """The baseline's key in the ``TRADER_STATE`` bucket (venue names are single subject tokens)."""
    return f"exeq.balances.{venue}"


class BalanceBook(Protocol):
    """The baselines and the fills exeq published: JetStream in service, a dict in unit tests."""

    async def last_seq(self) -> int:
        """The EXEC stream's last sequence now."""
        ...

    async def baseline(self, venue: str) -> BalanceBaseline | None: ...

    async def fills_after(self, venue: str, seq: int, upto: int) -> list[ExecutionReport]:
        """The fills published for ``venue`` after ``seq``, up to ``upto`` included, in stream order."""
        ...

    async def record(self, baseline: BalanceBaseline) -> None: ...
