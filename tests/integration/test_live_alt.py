"""The venues' alternative data end to end on the real servers: live-gateway streams funding, mark and index
prices, open interest and liquidations from local stand-ins of Binance USD-M, Bybit and OKX
(tests/fakes/fake_alt_exchanges.py: their wire formats, a repeated frame, an out-of-order one, malformed
frames, a drop mid-stream, REST), sink-alt stores them in the lake and QuestDB, and is killed with SIGKILL
while they flow. Afterwards:
- the lake's alt_data holds every observation exactly once, exact, with venue, unified and venue symbol;
- the malformed frames are in the dead letters of live-gateway, whole, with their reason;
- QuestDB has the latest of each venue: ``trader funding --json`` and ``trader oi --json`` show it.
"""

from __future__ import annotations

import json
import os
import signal
import time
from collections import Counter
from collections.abc import Iterator
from decimal import Decimal
from pathlib import Path
from typing import Any, cast

import polars as pl
import pytest

from tests.fakes.fake_alt_exchanges import BROKEN, FakeAltExchange, Step, mark
from tests.fakes.fake_exchanges import ExchangesThread
from tests.stack_helpers import Stack

pytestmark = pytest.mark.integration

VENUES = ("binance", "bybit", "okx")
LONG = 400  # marks in the long stream of connection 2, during which sink-alt is killed


def _script() -> dict[int, list[Step]]:
    return {
        1: [
            mark(0), Step("oi", 1_764_000_000_010, Decimal("68744.761")),
            Step("liq", 1_764_000_000_020, Decimal("0.03"), Decimal("59990.1"), "sell"),
            mark(1), Step("again"), mark(3), mark(2), Step("raw"), Step("bad"), mark(4), Step("drop"),
        ],
        2: [mark(4), Step("marks", 5, Decimal(LONG)), Step("keepalive")],
    }  # fmt: skip


def _env(exchanges: dict[str, FakeAltExchange]) -> dict[str, str]:
    env = {
        "TRADER_LIVE_GATEWAY__RECONNECT_INITIAL_S": "0.2",
        "TRADER_LIVE_GATEWAY__RECONNECT_MAX_S": "2",
        "TRADER_SINK_ALT__BATCH_SECONDS": "0.5",
        "TRADER_SINK_ALT__SMALL_BATCH_ROWS": "0",
        "TRADER_SUPERVISOR__RESTART_BACKOFF_INITIAL_S": "0.2",
    }
    for name, exchange in exchanges.items():
        prefix = f"TRADER_LIVE_GATEWAY__ALT__{name.upper()}__"
        env[prefix + "SYMBOLS"] = json.dumps(["BTCUSDT-PERP"])
        env[prefix + "WS_URL"] = exchange.ws_url
        env[prefix + "REST_URL"] = exchange.rest_url
        env[prefix + "POLL_INTERVAL_S"] = "1"
    return env


def _wait(predicate: Any, timeout: float, what: str) -> None:
    deadline = time.monotonic() + timeout
    while not predicate():
        assert time.monotonic() < deadline, what
        time.sleep(0.3)


def _sink_up(stack: Stack) -> bool:
    sink = next(c for c in stack.status()["components"] if c["name"] == "sink-alt")
    return bool(sink["healthy"] and sink["ready"])


def _lake(stack: Stack) -> pl.DataFrame:
    settings = stack.settings()
    try:
        return pl.read_delta(
            f"{settings.lake_root}/alt_data", storage_options=settings.delta_storage_options()
        )
    except Exception:  # not written yet
        return pl.DataFrame()


def _identity(row: dict[str, Any]) -> str:
    base = f"{row['source']}:{row['kind']}:{row['venue_symbol']}:{int(row['ts'].timestamp() * 1000)}"
    if row["kind"] == "liquidation":
        return f"{base}:{row['side']}:{row['price'].normalize()}:{row['value'].normalize()}"
    return base


def _expected(exchanges: dict[str, FakeAltExchange]) -> dict[str, Decimal]:
    """Each venue's expectations, liquidation identities with their numbers as the lake gives them back."""
    wanted: dict[str, Decimal] = {}
    for exchange in exchanges.values():
        for msg_id, value in dict(exchange.expected).items():  # its thread adds polls meanwhile
            parts = msg_id.split(":")
            if parts[1] == "liquidation":
                parts[5], parts[6] = str(Decimal(parts[5]).normalize()), str(Decimal(parts[6]).normalize())
            wanted[":".join(parts)] = value
    return wanted


@pytest.fixture(scope="module")
def run(tmp_path_factory: pytest.TempPathFactory) -> Iterator[dict[str, Any]]:
    exchanges = {name: FakeAltExchange(name, scripts=_script(), pace_s=0.01) for name in VENUES}
    with ExchangesThread(cast(Any, exchanges)):
        stack = Stack.create(Path(tmp_path_factory.mktemp("alt")), **_env(exchanges))
        stack.trader("up", "--detach", "--services", "live-gateway,sink-alt", check=True)
        try:
            status = {c["name"]: c for c in stack.status()["components"]}
            first_pid = status["sink-alt"]["pid"]
            _wait(lambda: _lake(stack).height > 50, 60, "sink-alt stored nothing:\n" + stack.log("sink-alt"))
            os.kill(first_pid, signal.SIGKILL)  # mid-stream: marks keep coming for seconds
            before = _expected(exchanges)  # Binance's open interest polls add more meanwhile
            _wait(
                lambda: {_identity(r) for r in _lake(stack).iter_rows(named=True)} >= set(before),
                90,
                "not every observation reached the lake:\n" + stack.log("sink-alt")[-2000:],
            )
            time.sleep(2.0)  # anything extra (a duplicate) would arrive meanwhile
            _wait(
                lambda: _sink_up(stack), 30, "sink-alt did not come back:\n" + stack.log("sink-alt")[-2000:]
            )
            yield {
                "stack": stack,
                "exchanges": exchanges,
                "lake": _lake(stack),
                "before": before,
                "expected": _expected(exchanges),
                "first_pid": first_pid,
                "status": {c["name"]: c for c in stack.status()["components"]},
                "funding": json.loads(stack.trader("funding", "--json", check=True).stdout),
                "oi": json.loads(stack.trader("oi", "BTCUSDT", "--json", check=True).stdout),
                "dlq": json.loads(stack.trader("dlq", "list", "--service", "live-gateway", "--json").stdout),
                "sink_log": stack.log("sink-alt"),
            }
        finally:
            stack.trader("down", timeout=120)


def test_sink_alt_was_killed_and_came_back(run: dict[str, Any]) -> None:
    sink = run["status"]["sink-alt"]
    assert sink["pid"] != run["first_pid"]
    assert sink["healthy"], (sink, run["sink_log"][-3000:])


def test_the_lake_holds_every_observation_exactly_once_and_exact(run: dict[str, Any]) -> None:
    rows = list(run["lake"].iter_rows(named=True))
    identities = Counter(_identity(r) for r in rows)
    assert [i for i, n in identities.items() if n > 1] == []
    assert set(identities) >= set(run["before"])  # nothing lost
    assert set(identities) <= set(run["expected"])  # nothing made up
    for row in rows:
        assert row["value"] == run["expected"][_identity(row)]
        assert row["symbol"] == "BTCUSDT-PERP"
    sources = Counter(r["source"] for r in rows if r["kind"] == "mark_price")
    assert min(sources.values()) >= LONG  # the long stream of each venue is whole


def test_malformed_frames_are_dead_letters_with_their_reason(run: dict[str, Any]) -> None:
    letters = [d for d in run["dlq"] if d.get("subject", "").startswith("alt.live.")]
    for name, exchange in run["exchanges"].items():
        mine = [d for d in letters if d["subject"] == f"alt.live.{name}"]
        assert len(mine) == len(exchange.dead_sent), mine
        assert any("malformed JSON" in d["reason"] for d in mine)
    assert any(d["payload"] == BROKEN for d in letters)


def test_questdb_has_the_latest_funding_and_open_interest_of_each_venue(run: dict[str, Any]) -> None:
    by_venue = {r["venue"]: r for r in run["funding"]}
    assert set(by_venue) == set(VENUES)
    for name in VENUES:
        funding = {
            int(k.split(":")[3]): v for k, v in run["expected"].items() if k.startswith(f"{name}:funding:")
        }
        latest_ts = max(funding)
        assert Decimal(by_venue[name]["rate"]) == funding[latest_ts]
        assert by_venue[name]["symbol"] == "BTCUSDT-PERP"
        assert by_venue[name]["mark"] is not None
    oi_venues = {r["venue"] for r in run["oi"]}
    assert oi_venues == set(VENUES)
    assert all(r["unit"] == "BTC" for r in run["oi"])
