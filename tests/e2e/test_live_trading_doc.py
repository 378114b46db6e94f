"""docs/live-trading.md, run as written: its ``live.yaml`` with ``trader up --live``, against a fake Binance.

The configuration is taken from the page itself (the ``yaml`` block that starts ``# live.yaml``), so the
page cannot drift from what runs here. What the test changes is what the page says it changes, through
the environment (which wins over the YAML file): the fake exchange's addresses for live-gateway and exeq,
ccxt's rate limiter off, and test keys in the variables the page names.

The fake (tests/fakes/live_binance.py) streams Binance's market data at 60,000.00 and takes orders
through Binance's REST trading API, which ccxt drives. The market maker of the page must quote there, a
fill at the exchange must show in ``trader positions`` exactly as the exchange's balances moved, a
market order by hand must fill, exeq restarted must adopt the quotes and find the balances explained,
the quotes must follow the market by cancel-replace, and ``trader kill`` must cancel the quotes at the
exchange (and ``trader resume`` bring them back), and every read-only ``trader`` command of the page
must answer. The page's other YAML (paper.yaml; live.yaml with real.yaml's parts) must load as the
settings it says.
"""

from __future__ import annotations

import json
import os
import re
import shlex
import signal
import time
from collections.abc import Callable, Iterator
from concurrent.futures import ThreadPoolExecutor
from decimal import Decimal as D
from pathlib import Path
from typing import Any, TypeVar

import pytest
import yaml

from tests.fakes.fake_binance_rest import FakeOrder
from tests.fakes.live_binance import LiveBinance
from tests.stack_helpers import Stack
from trader.config import Settings

pytestmark = pytest.mark.integration

T = TypeVar("T")
PAGE = Path(__file__).resolve().parents[2] / "docs" / "live-trading.md"
PRICE = D("60000.00")
OPEN_AT_VENUE = ("NEW", "PARTIALLY_FILLED")
WORKING = ("NEW", "ACCEPTED", "PARTIALLY_FILLED", "PENDING_CANCEL")  # ours, in the oms
START_BALANCES = {"BTC": D(1), "USDT": D(100000)}  # the fake's, at start
KEY, SECRET = "doc-test-key-5e1f", "doc-test-secret-93ab"  # in the variables the page names


def yaml_blocks() -> dict[str, str]:
    """The page's ``yaml`` blocks, by the file name their first line gives (``# live.yaml: ...``)."""
    blocks = re.findall(r"^```yaml\n(.*?)^```", PAGE.read_text(), flags=re.MULTILINE | re.DOTALL)
    named = {}
    for block in blocks:
        first = re.match(r"# ([\w.-]+\.yaml)", block)
        assert first, f"a yaml block of {PAGE.name} does not start with '# <name>.yaml':\n{block}"
        named[first.group(1)] = block
    return named


def settings_of(config: Path, env: dict[str, str] | None = None) -> Settings:
    """The settings ``trader`` reads from ``config`` (and ``env``), nothing else of this process's."""
    stack = Stack.create(config.parent, TRADER_CONFIG=str(config), **(env or {}))
    return stack.settings()


def test_every_configuration_on_the_page_is_valid_settings(tmp_path: Path) -> None:
    blocks = yaml_blocks()
    assert set(blocks) == {"paper.yaml", "live.yaml", "real.yaml"}
    for name, text in blocks.items():
        (tmp_path / name).write_text(text)
        settings_of(tmp_path / name)  # raises on anything the settings refuse
    paper = settings_of(tmp_path / "paper.yaml")
    assert (the_strategy(paper).venue, paper.data_venue_of(the_strategy(paper))) == ("paper", "mock")
    assert the_strategy(paper).params == the_strategy(settings_of(tmp_path / "live.yaml")).params
    # The real account, as the page says: live.yaml with real.yaml's parts, and a new account.
    config = {**yaml.safe_load(blocks["live.yaml"]), **yaml.safe_load(blocks["real.yaml"])}
    config["strategy"]["strategies"][0]["account"] = "binance"
    (tmp_path / "real-account.yaml").write_text(yaml.safe_dump(config))
    real = settings_of(tmp_path / "real-account.yaml")
    binance = real.exeq.venues["binance"]
    assert (binance.kind, binance.testnet, binance.base_url) == ("ccxt", False, None)
    feed = real.live_gateway.venues["binance"]
    assert (feed.ws_url, feed.rest_url) == (None, None)  # Binance's real endpoints
    assert real.data_venue_of(the_strategy(real)) == "binance"


# The page's configuration running -------------------------------------------------------------------


def eventually(check: Callable[[], T], what: str, timeout: float = 60, log: Callable[[], str] = str) -> T:
    deadline = time.monotonic() + timeout
    while True:
        result = check()
        if result:
            return result
        assert time.monotonic() < deadline, f"timed out waiting for {what}\n{log()}"
        time.sleep(0.25)


@pytest.fixture(scope="module")
def venue() -> Iterator[LiveBinance]:
    with LiveBinance(price=PRICE) as fake:
        yield fake


@pytest.fixture(scope="module")
def stack(tmp_path_factory: pytest.TempPathFactory, venue: LiveBinance) -> Iterator[Stack]:
    data = Path(tmp_path_factory.mktemp("live-doc"))
    config = data / "live.yaml"
    config.write_text(yaml_blocks()["live.yaml"])
    binance = settings_of(config).exeq.venues["binance"]
    assert binance.api_key_env, "the page names the variables of its keys"
    assert binance.api_secret_env
    stack = Stack.create(
        data,
        TRADER_CONFIG=str(config),
        TRADER_LIVE_GATEWAY__VENUES__BINANCE__WS_URL=venue.feed.ws_url,
        TRADER_LIVE_GATEWAY__VENUES__BINANCE__REST_URL=venue.feed.rest_url,
        TRADER_EXEQ__VENUES__BINANCE__BASE_URL=venue.rest_url,
        TRADER_EXEQ__VENUES__BINANCE__RATE_LIMIT="false",
        **{binance.api_key_env: KEY, binance.api_secret_env: SECRET},
    )
    stack.trader("up", "--live", "--detach", check=True, timeout=600)
    try:
        yield stack
    finally:
        stack.trader("down", timeout=180)


@pytest.fixture(scope="module")
def page(stack: Stack) -> Settings:
    return stack.settings()


def logs(stack: Stack) -> Callable[[], str]:
    return lambda: "\n".join(f"--- {n}\n{stack.log(n)}" for n in ("exeq", "strategy", "oms", "risk"))


def cli_json(stack: Stack, *args: str) -> Any:
    return json.loads(stack.trader(*args, "--json", check=True).stdout)


def open_at_venue(venue: LiveBinance) -> list[FakeOrder]:
    return venue.call(lambda: [o for o in venue.rest.orders.values() if o.status in OPEN_AT_VENUE])


def quotes(venue: LiveBinance) -> dict[str, FakeOrder] | None:
    """The market maker's bid and ask at the exchange, once both rest there."""
    by_side = {o.side: o for o in open_at_venue(venue)}
    return by_side if set(by_side) == {"BUY", "SELL"} else None


def net_position(stack: Stack, account: str) -> dict[str, Any] | None:
    rows = cli_json(stack, "positions")
    net = [
        r
        for r in rows
        if (r["account"], r["venue"], r["symbol"], r["strategy"]) == (account, "binance", "BTCUSDT", None)
    ]
    return net[0] if net else None


def the_strategy(page: Settings) -> Any:
    (strategy,) = page.strategy.strategies
    return strategy


def test_the_market_maker_quotes_at_the_exchange(stack: Stack, venue: LiveBinance, page: Settings) -> None:
    status = {c["name"]: c for c in stack.status()["components"]}
    assert "gateway" not in status, "the mock feed must not run beside the live one"
    for name in ("live-gateway", "exeq", "strategy"):
        assert (status[name]["healthy"], status[name]["ready"]) == (True, True), status[name]
    assert venue.feed.connections >= 1
    found = eventually(lambda: quotes(venue), "a bid and an ask at the exchange", log=logs(stack))
    mm = the_strategy(page)
    half = PRICE * D(mm.params["spread_bps"]) / 20000
    assert (found["BUY"].price, found["SELL"].price) == (PRICE - half, PRICE + half)
    assert {o.type for o in found.values()} == {"LIMIT_MAKER"}  # post-only, as Binance takes it
    assert {o.quantity for o in found.values()} == {D(mm.params["quantity"])}
    accepted = [(mm.name, "buy", "limit"), (mm.name, "sell", "limit")]
    eventually(
        lambda: accepted_in_oms(stack) == accepted, "both quotes ACCEPTED in trader orders", log=logs(stack)
    )


def accepted_in_oms(stack: Stack) -> list[tuple[str, str, str]]:
    """Strategy, side and type of each order ``trader orders`` shows ACCEPTED."""
    orders = cli_json(stack, "orders")
    return sorted((o["strategy"], o["side"], o["type"]) for o in orders if o["status"] == "ACCEPTED")


def test_a_fill_at_the_exchange_is_the_position(stack: Stack, venue: LiveBinance, page: Settings) -> None:
    mm = the_strategy(page)
    bid = eventually(lambda: quotes(venue), "the quotes", log=logs(stack))["BUY"]
    venue.call(venue.rest.fill, bid.client_id, str(bid.quantity), str(bid.price), "0.05994")
    position = eventually(
        lambda: (p := net_position(stack, mm.account)) and D(str(p["quantity"])) == bid.quantity and p,
        "the fill in trader positions",
        log=logs(stack),
    )
    assert D(str(position["average_price"])) == bid.price
    assert_reconciled(stack, venue, mm.account)


def test_a_market_order_by_hand_fills(stack: Stack, venue: LiveBinance, page: Settings) -> None:
    account = the_strategy(page).account
    (order,) = cli_json(stack, "order", "buy", "BTCUSDT", "0.001", "--account", account, "--wait")
    assert order["status"] == "FILLED", order
    at_venue = venue.call(venue.rest.order_by_client_id, order["client_order_id"])
    assert (at_venue.type, at_venue.status, at_venue.executed) == ("MARKET", "FILLED", D("0.001"))
    eventually(
        lambda: (p := net_position(stack, account)) and D(str(p["quantity"])) == D("0.002"),
        "the market order in trader positions",
        log=logs(stack),
    )
    assert_reconciled(stack, venue, account)


def assert_reconciled(stack: Stack, venue: LiveBinance, account: str) -> None:
    """The net position is what the exchange's balances and trades say: quantity, cost and fees."""
    position = net_position(stack, account)
    assert position is not None
    balances, trades = venue.call(lambda: (dict(venue.rest.balances), list(venue.rest.trades)))
    assert D(str(position["quantity"])) == balances["BTC"] - START_BALANCES["BTC"]
    assert D(str(position["fees"])) == sum((t.commission for t in trades), D(0))
    cost = sum((t.qty * t.price for t in trades), D(0))  # every trade a buy here
    assert D(str(position["quantity"])) * D(str(position["average_price"])) == cost
    assert balances["USDT"] == START_BALANCES["USDT"] - cost - D(str(position["fees"]))


def test_exeq_restarted_adopts_the_quotes_and_finds_the_balances_explained(
    stack: Stack, venue: LiveBinance
) -> None:
    """exeq dies (SIGKILL) and the supervisor starts it again: the quotes open at the exchange are adopted,
    not sent again, and the exchange's balances are what the fills since the first start explain."""
    working = eventually(lambda: quotes(venue), "the quotes before the restart", log=logs(stack))
    placed = venue.call(lambda: len(venue.rest.new_orders()))
    (before,) = [c for c in stack.status()["components"] if c["name"] == "exeq"]
    os.kill(before["pid"], signal.SIGKILL)
    eventually(lambda: exeq_restarted(stack, before["pid"]), "exeq started again", log=logs(stack))
    log = (stack.data_dir / "logs" / "exeq.log").read_text()
    since = log[log.rindex("exeq.replayed") :]  # the new start's lines
    assert '"exeq.balances_reconciled"' in since, since
    assert "mismatch" not in since, since
    assert {o.order_id for o in open_at_venue(venue)} == {o.order_id for o in working.values()}
    assert venue.call(lambda: len(venue.rest.new_orders())) == placed


def exeq_restarted(stack: Stack, old_pid: int) -> bool:
    (exeq,) = [c for c in stack.status()["components"] if c["name"] == "exeq"]
    return exeq["pid"] not in (None, old_pid) and exeq["ready"] and exeq["healthy"]


def test_the_quotes_follow_the_market_by_cancel_replace_at_the_exchange(
    stack: Stack, venue: LiveBinance, page: Settings
) -> None:
    before = eventually(lambda: quotes(venue), "the quotes before the move", log=logs(stack))
    moved = PRICE + 100  # more than half the spread: both quotes must move
    venue.call(venue.move, moved)
    half = moved * D(the_strategy(page).params["spread_bps"]) / 20000
    wanted = (moved - half, moved + half)
    after = eventually(
        lambda: (q := quotes(venue)) and (q["BUY"].price, q["SELL"].price) == wanted and q,
        "the quotes at the new prices",
        log=logs(stack),
    )
    # Binance has no replace: the old orders were canceled, the new ones keep their client ids.
    statuses = venue.call(lambda: {o.order_id: o.status for o in venue.rest.orders.values()})
    assert {statuses[o.order_id] for o in before.values()} == {"CANCELED"}
    assert {o.client_id for o in after.values()} == {o.client_id for o in before.values()}


def test_the_kill_switch_cancels_at_the_exchange(stack: Stack, venue: LiveBinance) -> None:
    working = eventually(lambda: quotes(venue), "the quotes before the kill", log=logs(stack))
    stack.trader("kill", "--reason", "doc test", check=True)
    eventually(lambda: not open_at_venue(venue), "no open order at the exchange", log=logs(stack))
    statuses = venue.call(lambda: {o.client_id: o.status for o in venue.rest.orders.values()})
    assert {statuses[o.client_id] for o in working.values()} == {"CANCELED"}
    eventually(
        lambda: not [o for o in cli_json(stack, "orders") if o["status"] in WORKING],
        "no order of ours working",
        log=logs(stack),
    )
    time.sleep(2)  # the feed ticks on: a halted strategy's new quotes are denied, none reach the venue
    assert not open_at_venue(venue)

    stack.trader("resume", check=True)
    eventually(lambda: quotes(venue), "the quotes again after resume", log=logs(stack))


READ_ONLY = {"status", "logs", "query", "orders", "positions", "pnl", "config"}


def page_checks() -> list[list[str]]:
    """The page's read-only ``trader`` commands, as its ``sh`` blocks give them (before any pipe)."""
    blocks = re.findall(r"^```sh\n(.*?)^```", PAGE.read_text(), flags=re.MULTILINE | re.DOTALL)
    lines = [line.split(" #")[0].split(" | ")[0].strip() for block in blocks for line in block.splitlines()]
    commands = [shlex.split(line)[1:] for line in lines if line.startswith("trader ")]
    return [args for args in commands if args[0] in READ_ONLY]


def test_the_pages_checks_answer(stack: Stack) -> None:
    checks = page_checks()
    assert {args[0] for args in checks} == READ_ONLY - {"config"}, checks  # config: in the prose
    # Each command once (the page repeats some), a few at a time: each is a process of its own.
    distinct = {" ".join(args): args for args in [*checks, ["config"]]}
    with ThreadPoolExecutor(max_workers=4) as pool:
        answers = pool.map(lambda args: stack.trader(*args, check=True).stdout, distinct.values())
        said = dict(zip(distinct, answers, strict=True))
    assert "venue.connected" in said["logs live-gateway -n 20"]
    started = said["logs exeq -n 1000"]
    assert "venue.started" in started, started
    assert "balances" in started
    (query,) = [out for command, out in said.items() if command.startswith("query ")]
    assert "binance" in query, query
    assert SECRET not in said["config"]


def test_the_keys_are_in_no_log(stack: Stack) -> None:
    logs = sorted((stack.data_dir / "logs").glob("*.log*"))
    assert {"exeq.log", "live-gateway.log", "supervisor.log"} <= {p.name for p in logs}
    for path in logs:
        text = path.read_text(errors="replace")
        assert KEY not in text, path
        assert SECRET not in text, path
