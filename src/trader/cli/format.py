"""How the CLI shows what it read: numbers as a person writes them, tables that fit the terminal, and
``--json`` exact.

In a table a number has no exponent and no trailing zeros (``0E-8`` is ``0``, ``3000.500000`` is
``3000.5``), and is rounded half to even past ``DECIMALS`` places (``MONEY_DECIMALS`` for PnL, fees
and exposure): an average entry price that is not a finite decimal (fills at 10.1, 10.2 and 10.4
average 10.2333...) is carried at Decimal's 28 digits, and a QuestDB double may come as
59999.55000000001. ``--json`` prints every value exact, as on the wire.
"""

from __future__ import annotations

import json
import sys
from collections.abc import Sequence
from datetime import UTC, datetime
from decimal import Context, Decimal
from typing import Annotated, Any

import msgspec
import typer
from rich import box
from rich.console import Console, Group
from rich.markup import escape
from rich.measure import Measurement
from rich.rule import Rule
from rich.table import Table

# Piped output (scripts, logs) is not cut to 80 columns: names and ports must stay whole.
console = Console() if sys.stdout.isatty() else Console(width=200)
err = Console(stderr=True)
JsonOpt = Annotated[bool, typer.Option("--json", help="Print JSON: every value exact.")]

DECIMALS = 10
MONEY_DECIMALS = 4
# Columns in the quote currency: what a person reads as money.
MONEY_COLUMNS = frozenset(
    {"realized", "unrealized", "fees", "total", "gross_exposure", "realized_pnl", "notional"}
)


def number(value: Decimal | float | int, places: int = DECIMALS) -> str:
    """``value`` as a person writes it: no exponent, no trailing zeros, at most ``places`` decimals."""
    exact = Decimal(repr(value)) if isinstance(value, float) else Decimal(value)
    if not exact.is_finite():
        return str(exact)
    exponent = exact.as_tuple().exponent
    assert isinstance(exponent, int)
    if exponent < -places:
        # Enough digits for the integer part too: a big value keeps every one of them.
        exact = exact.quantize(
            Decimal(1).scaleb(-places), context=Context(prec=max(exact.adjusted(), 0) + places + 1)
        )
    if not exact:
        return "0"  # also -0 and 0E-8
    return format(exact.normalize(Context(prec=len(exact.as_tuple().digits))), "f")


def cell(value: Any, places: int = DECIMALS) -> str:
    """A value as a table shows it."""
    if value is None:
        return ""
    if isinstance(value, bool):
        return "yes" if value else "no"
    if isinstance(value, Decimal | float | int):
        return number(value, places)
    if isinstance(value, datetime):
        if value.utcoffset() is None:
            return value.strftime("%Y-%m-%d %H:%M:%S.%f")[:-3]
        return value.astimezone(UTC).strftime("%Y-%m-%d %H:%M:%S.%f")[:-3] + "Z"
    return str(value)


# A text column wraps between words but is not narrowed below its longest word up to this (an order
# id stays whole); a number column is never narrowed below its longest number.
TEXT_MIN_WIDTH = 24


def table(
    columns: Sequence[str], rows: Sequence[Sequence[Any]], money: frozenset[str] = MONEY_COLUMNS
) -> Table:
    """Rows as a table: numbers right-aligned and never cut, text wrapped where it must be."""
    cells = [[_cell_of(name, v, money) for name, v in zip(columns, row, strict=True)] for row in rows]
    shown = Table(box=box.SIMPLE_HEAD, pad_edge=False, show_edge=False)
    for index, name in enumerate(columns):
        header = name.replace("_", " ")  # a header wraps between its words
        if _is_numeric_column(rows, index):
            longest = max((len(row[index]) for row in cells), default=0)
            shown.add_column(header, justify="right", min_width=longest)
        else:
            words = (len(word) for row in cells for word in row[index].split())
            shown.add_column(header, overflow="fold", min_width=min(max(words, default=0), TEXT_MIN_WIDTH))
    for row in cells:
        shown.add_row(*row)
    return shown


def records(
    columns: Sequence[str], rows: Sequence[Sequence[Any]], money: frozenset[str] = MONEY_COLUMNS
) -> Group:
    """Rows one below the other, a line per column (as psql's expanded display): what a terminal too
    narrow for the table shows."""
    blocks: list[Any] = []
    for number_, row in enumerate(rows, 1):
        grid = Table.grid(padding=(0, 2))
        grid.add_column(style="bold", no_wrap=True)
        grid.add_column(overflow="fold")
        for name, value in zip(columns, row, strict=True):
            grid.add_row(name, _cell_of(name, value, money))
        blocks += [Rule(f"{number_}", align="left", style="dim"), grid]
    return Group(*blocks)


def fitted(
    columns: Sequence[str],
    rows: Sequence[Sequence[Any]],
    width: int,
    money: frozenset[str] = MONEY_COLUMNS,
) -> Table | Group:
    """The table if it fits ``width`` columns with every number whole, else the rows as records."""
    shown = table(columns, rows, money)
    unbounded = console.options.update_width(1_000_000)  # a measurement is capped at the width given
    needed = Measurement.get(console, unbounded, shown).minimum
    return shown if needed <= width or not rows else records(columns, rows, money)


def _cell_of(name: str, value: Any, money: frozenset[str]) -> str:
    return cell(value, MONEY_DECIMALS if name in money else DECIMALS)


def _is_numeric_column(rows: Sequence[Sequence[Any]], index: int) -> bool:
    values = [row[index] for row in rows if row[index] is not None]
    return bool(values) and all(
        isinstance(v, Decimal | float | int) and not isinstance(v, bool) for v in values
    )


def print_rows(
    columns: Sequence[str],
    rows: Sequence[Sequence[Any]],
    as_json: bool,
    money: frozenset[str] = MONEY_COLUMNS,
) -> None:
    """Rows as a table, or with ``as_json`` as a JSON list of objects, every value exact."""
    if as_json:
        records = [dict(zip(columns, row, strict=True)) for row in rows]
        sys.stdout.write(to_json(records) + "\n")
        return
    console.print(fitted(columns, rows, console.width, money))


def to_json(value: Any) -> str:
    return msgspec.json.encode(value, enc_hook=_json_default).decode()


def _json_default(value: Any) -> Any:
    if isinstance(value, Decimal):
        return str(value)  # exact: never through a float
    if isinstance(value, datetime):
        return value.isoformat()
    raise TypeError(f"cannot encode {type(value).__name__}")


def fail(message: str, code: int = 1) -> typer.Exit:
    """Print ``message`` as the command's one error line; raise what this returns."""
    err.print(f"[red]error:[/] {escape(message)}", highlight=False, soft_wrap=True)  # one line
    return typer.Exit(code)


# Logs ---------------------------------------------------------------------------------------------

# What every JSON log line carries and a readable line shows in front: time, level, event.
_LOG_HEAD = ("timestamp", "level", "event")


def log_line(line: str, component: str | None = None) -> str:
    """A JSON log line as a person reads it: time, level, event, then key=value; the ``service`` or
    ``component`` key naming the log's own component is left out, an exception follows on its own
    lines. A line that is not a JSON log (nats-server's, QuestDB's) is returned as it is."""
    try:
        entry = json.loads(line)
    except ValueError:
        return line
    if not isinstance(entry, dict) or "event" not in entry:
        return line
    exception = entry.pop("exception", None)
    head = [
        _log_time(str(entry.get("timestamp", ""))),
        f"{str(entry.get('level', '')).lower():<7}",
        str(entry["event"]),
    ]
    rest = [
        f"{key}={_log_value(value)}"
        for key, value in entry.items()
        if key not in _LOG_HEAD and not (key in ("service", "component") and value == component)
    ]
    text = " ".join(head + rest)
    if exception:
        text += "\n" + "\n".join("    " + part for part in str(exception).rstrip("\n").splitlines())
    return text + "\n"


def _log_time(stamp: str) -> str:
    # 2026-12-02T16:52:04.973459Z -> 2026-12-02 16:52:04.973 (UTC, as logged)
    if len(stamp) >= 23 and stamp[10] == "T":
        return f"{stamp[:10]} {stamp[11:23]}"
    return stamp


def _log_value(value: Any) -> str:
    if isinstance(value, str):
        return value if value and not any(c.isspace() or c in "\"'=" for c in value) else json.dumps(value)
    return json.dumps(value, separators=(",", ":"), default=str)
