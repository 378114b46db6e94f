"""`trader replay` on a real stack: the mock feed's ticks land in the lake, are replayed as fast as the
bus takes them under the venue replay-mock (each once, in time order, as stored), the normalizer makes
their 1s and 1m bars in QuestDB, and Ctrl-C stops a paced replay cleanly, saying how far it got."""

from __future__ import annotations

import asyncio
import re
import signal
import subprocess
import sys
import time
from collections.abc import Callable, Iterator
from decimal import Decimal
from pathlib import Path
from typing import Any

import httpx
import msgspec
import nats
import pytest
from nats.js.api import AckPolicy, ConsumerConfig, DeliverPolicy

from tests.stack_helpers import Stack
from trader.backtest.data import BacktestDataError, DataRange, LakeTicks
from trader.messages import MarketTick

pytestmark = pytest.mark.integration

SERVICES = ["gateway", "sink-ticks", "normalizer"]
RANGE_MS = 6_000


@pytest.fixture(scope="module")
def stack(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Stack]:
    s = Stack.create(
        Path(tmp_path_factory.mktemp("replay")),
        TRADER_GATEWAY__RATE="100",
        TRADER_GATEWAY__VENUES="{}",  # the mock venue alone
        TRADER_SINK_TICKS__BATCH_SECONDS="0.5",
        TRADER_SINK_TICKS__SMALL_BATCH_ROWS="0",  # committed as they come, not every 30 s
    )
    s.trader("up", "--detach", "--services", ",".join(SERVICES), check=True)
    try:
        yield s
    finally:
        s.trader("down", timeout=120)


def _wait_for(predicate: Callable[[], Any], timeout: float, what: str) -> Any:
    deadline = time.monotonic() + timeout
    while not (result := predicate()):
        assert time.monotonic() < deadline, what
        time.sleep(0.25)
    return result


@pytest.fixture(scope="module")
def stored(stack: Stack) -> dict[str, Any]:
    """A range of the mock feed's ticks, whole in the lake: the ticks as the replay will read them."""
    now = int(time.time() * 1000)
    first = _wait_for(lambda: _ticks(stack, now - 60_000, now + 3_600_000), 60, "no tick in the lake")
    start = first[0].timestamp - first[0].timestamp % 1_000 + 1_000  # a whole second: whole 1s bars
    # Ticks a second past the range in the lake: sink-ticks writes in stream order, so all of it is.
    later = (start + RANGE_MS + 1_000, start + 3_600_000)
    _wait_for(lambda: _ticks(stack, *later), 30, "the lake lags")
    ticks = _ticks(stack, start, start + RANGE_MS)
    assert len(ticks) > 100
    return {"start": start, "end": start + RANGE_MS, "ticks": ticks}


def _ticks(stack: Stack, start_ms: int, end_ms: int) -> list[MarketTick]:
    """The lake's ticks of the range as the replay reads them (the latest version of the table)."""
    try:
        source = LakeTicks(stack.settings())
    except BacktestDataError:  # no table yet
        return []
    return [t for batch, _ in source.batches_with_seq(DataRange(start_ms, end_ms, ())) for t in batch]


async def _replayed(stack: Stack, expect: int, timeout: float = 20) -> list[tuple[MarketTick, str]]:
    """Every tick on market.tick.replay-mock.> in stream order, with its message id."""
    nc = await nats.connect(stack.nats_url)
    try:
        js = nc.jetstream()
        sub = await js.pull_subscribe(
            "market.tick.replay-mock.>",
            config=ConsumerConfig(deliver_policy=DeliverPolicy.ALL, ack_policy=AckPolicy.NONE),
        )
        out: list[tuple[MarketTick, str]] = []
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            # nats-py raises its own TimeoutError, or asyncio's when its no-wait probe outlives the timeout.
            try:
                messages = await sub.fetch(1_000, timeout=1)
            except TimeoutError:
                if len(out) >= expect:
                    break
                continue
            out += [(_tick(m.data), (m.headers or {}).get("Nats-Msg-Id", "")) for m in messages]
        await sub.unsubscribe()
        return out
    finally:
        await nc.close()


def test_a_replay_as_fast_as_possible_puts_each_stored_tick_once_in_order_under_replay_mock(
    stack: Stack, stored: dict[str, Any]
) -> None:
    ticks: list[MarketTick] = stored["ticks"]
    result = stack.trader(
        "replay", "--from", str(stored["start"]), "--to", str(stored["end"]), "--speed", "max", timeout=120
    )
    assert result.returncode == 0, result.stderr
    # Every tick; the share of the range is how far the last tick's event time reaches into it (the
    # stored range may end a moment after its last tick, so not always 100.0%).
    said = re.search(
        rf"replayed {len(ticks):,} of {len(ticks):,} ticks, (\d+\.\d)% of the range", result.stdout
    )
    assert said is not None, result.stdout
    assert float(said.group(1)) >= 50.0
    assert f"({len(ticks):,} stored, 0 duplicates) as replay-mock; run " in result.stdout
    assert "replaying" in result.stderr  # the start, and progress, on stderr

    on_bus = asyncio.run(_replayed(stack, len(ticks)))
    assert [t for t, _ in on_bus] == [
        MarketTick(**{**_fields(t), "venue": "replay-mock"}) for t in ticks
    ]  # each once, in time order, the stored values and event times
    run = re.search(r"run (\S+)", result.stdout).group(1)  # type: ignore[union-attr]
    assert [i for _, i in on_bus] == [f"replay:{run}:mock:{t.symbol}:{t.trade_id}" for t in ticks]
    stored["run"] = run


_tick = msgspec.json.Decoder(MarketTick).decode


def _fields(tick: MarketTick) -> dict[str, Any]:
    return {f: getattr(tick, f) for f in tick.__struct_fields__}


def _questdb(stack: Stack, sql: str) -> list[dict[str, Any]]:
    response = httpx.get(f"http://127.0.0.1:{stack.ports['questdb_http']}/exec", params={"query": sql})
    body = response.json()
    if "dataset" not in body:
        return []
    names = [c["name"] for c in body["columns"]]
    return [dict(zip(names, row, strict=True)) for row in body["dataset"]]


def _expected_bars(ticks: list[MarketTick], size_ms: int) -> dict[tuple[str, int], tuple]:
    """OHLCV and count per (symbol, bucket), computed here without the normalizer's code."""
    bars: dict[tuple[str, int], list[MarketTick]] = {}
    for t in ticks:
        bars.setdefault((t.symbol, t.timestamp - t.timestamp % size_ms), []).append(t)
    return {
        key: (
            of[0].price,
            max(t.price for t in of),
            min(t.price for t in of),
            of[-1].price,
            sum((t.size for t in of), Decimal(0)),
            len(of),
        )
        for key, of in bars.items()
    }


@pytest.mark.parametrize(("timeframe", "size_ms"), [("1s", 1_000), ("1m", 60_000)])
def test_the_normalizer_makes_the_bars_of_the_replay_venue_in_questdb(
    stack: Stack, stored: dict[str, Any], timeframe: str, size_ms: int
) -> None:
    assert "run" in stored, "the replay above did not run"
    expected = _expected_bars(stored["ticks"], size_ms)

    def actual() -> dict[tuple[str, int], tuple]:
        rows = _questdb(
            stack,
            f"select symbol, cast(ts as long) / 1000 ms, open, high, low, close, volume, trades "
            f"from ohlcv_{timeframe} where venue = 'replay-mock'",
        )
        prices = ("open", "high", "low", "close", "volume")
        return {(r["symbol"], r["ms"]): (*(Decimal(str(r[k])) for k in prices), r["trades"]) for r in rows}

    deadline = time.monotonic() + 30
    while (found := actual()) != expected and time.monotonic() < deadline:
        time.sleep(0.5)
    assert found == expected
    # The live feed's bars go on beside them, under their own venue.
    assert _questdb(stack, f"select count() n from ohlcv_{timeframe} where venue = 'mock'")[0]["n"] > 0


def test_ctrl_c_stops_a_paced_replay_after_its_acknowledgements_and_says_how_far(
    stack: Stack, stored: dict[str, Any]
) -> None:
    total = len(stored["ticks"])
    command = [sys.executable, "-m", "trader", "replay", "--from", str(stored["start"])]
    command += ["--to", str(stored["end"]), "--speed", "1"]
    process = subprocess.Popen(
        command, env=stack.env, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True
    )
    try:
        first_line = process.stderr.readline()  # type: ignore[union-attr]
        assert first_line.startswith(f"replaying {total:,} ticks"), first_line
        run = first_line.rsplit("run ", 1)[1].strip()
        # Some ticks of this run on the bus: it is under way (at real time, the range takes 6 s).
        _wait_for(lambda: _count_of_run(stack, run, stored["run"]) > 0, 10, "nothing replayed")
        process.send_signal(signal.SIGINT)
        stdout, stderr = process.communicate(timeout=30)
    finally:
        if process.poll() is None:
            process.kill()
    assert process.returncode == 130, stderr
    stopped = re.search(
        r"stopped \(interrupted\): ([\d,]+) of ([\d,]+) ticks, ([\d.]+)% of the range", stderr
    )
    assert stopped, stderr
    done = int(stopped.group(1).replace(",", ""))
    assert int(stopped.group(2).replace(",", "")) == total
    assert 0 < done < total
    assert 0 < float(stopped.group(3)) < 100
    assert "every tick published was acknowledged" in stderr
    assert "Traceback" not in stderr
    assert stdout == ""
    # What it says it published is what the bus holds of the run: every publish acknowledged.
    assert _count_of_run(stack, run, stored["run"]) == done


def _count_of_run(stack: Stack, run: str, earlier_run: str) -> int:
    on_bus = asyncio.run(_replayed(stack, 0, timeout=3))
    runs = {i.split(":")[1] for _, i in on_bus}
    assert runs <= {run, earlier_run}
    return sum(1 for _, i in on_bus if i.split(":")[1] == run)
