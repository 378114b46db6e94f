"""`trader bench ...`: benchmarks that drive the running stack and print figures (docs/benchmarks.md)."""

from __future__ import annotations

import asyncio
from typing import Annotated

import typer

from trader.cli.data import JsonOpt, fail, print_rows
from trader.config import Settings

bench_app = typer.Typer(no_args_is_help=True, help="Benchmarks on the running stack.")


def _rates(rates: str) -> list[float]:
    try:
        rate_list = [float(r) for r in rates.split(",") if r.strip()]
    except ValueError:
        raise fail(f"--rates: not a list of numbers: {rates!r}") from None
    if not rate_list or any(r <= 0 for r in rate_list):
        raise fail("--rates: give at least one positive rate")
    return rate_list


@bench_app.command("ingest")
def ingest(
    ticks: Annotated[int, typer.Option(help="Ticks published at full speed in the live phase.")] = 200_000,
    backlog: Annotated[int, typer.Option(help="Ticks published before the consumers start.")] = 500_000,
    symbols: Annotated[int, typer.Option(help="Over how many symbols.")] = 10,
    batch: Annotated[int, typer.Option(help="Ticks per pipelined publish batch.")] = 5_000,
    only: Annotated[
        str | None, typer.Option(help="One consumer alone (normalizer or sink-ticks); default both at once.")
    ] = None,
    as_json: JsonOpt = False,
) -> None:
    """Drive normalizer and sink-ticks (started by the benchmark itself, on the servers of `trader up
    --detach --services ''`): their rate through a backlog, then lag and bar visibility at full speed,
    and peak RSS."""
    from trader.bench.ingest import CONSUMERS, run_ingest_bench, to_json

    try:
        report = asyncio.run(
            run_ingest_bench(
                Settings(),
                ticks=ticks,
                backlog=backlog,
                symbols=symbols,
                batch=batch,
                consumers=(only,) if only else CONSUMERS,
            )
        )
    except RuntimeError as exc:
        raise fail(str(exc)) from None
    if as_json:
        typer.echo(to_json(report).decode())
        return
    typer.echo(f"backlog of {report['backlog']} ticks, then {report['ticks']} live ticks")
    typer.echo(f"live publisher: {report['publisher_ticks_per_s']} ticks/s acknowledged")
    rows = [
        [
            name,
            report["drain"][name]["ticks_per_s"],
            live["ticks_per_s"],
            live["lag_p50_s"],
            live["lag_p99_s"],
            live["lag_max_s"],
            report["peak_rss_mib"][name],
        ]
        for name, live in report["live"].items()
    ]
    columns = [
        "consumer",
        "drain ticks/s",
        "live ticks/s",
        "lag p50 s",
        "lag p99 s",
        "lag max s",
        "peak RSS MiB",
    ]
    print_rows(columns, rows, False)
    v = report["bar_visibility"]
    typer.echo(f"closed 1s bars queryable in QuestDB after their end: p50 {v['p50_s']} s, p99 {v['p99_s']} s")
    shares, live, rss_of = report["drain_servers_cpu_share"], report["live"], report["peak_rss_mib"]
    others = [[name, rss, shares.get(name)] for name, rss in rss_of.items() if name not in live]
    print_rows(["component", "peak RSS MiB", "CPU share in the drain"], others, False)


@bench_app.command("spreads")
def spreads(
    quotes: Annotated[int, typer.Option(help="Quotes published in the live phase.")] = 200_000,
    backlog: Annotated[int, typer.Option(help="Quotes published before spread-analyzer starts.")] = 500_000,
    symbols: Annotated[int, typer.Option(help="Instruments, each on three venues.")] = 10,
    batch: Annotated[int, typer.Option(help="Quotes per pipelined publish batch.")] = 5_000,
    rate: Annotated[float | None, typer.Option(help="Live quotes/s; default as fast as it goes.")] = None,
    as_json: JsonOpt = False,
) -> None:
    """spread-analyzer (started by the benchmark, on the servers of `trader up --detach --services ''`)
    fed quotes of three venues: its rate through a backlog and CPU µs per quote, then the lag of live
    quotes (publish to its acknowledgement, after its outputs are stored), and peak RSS."""
    from trader.bench.ingest import to_json
    from trader.bench.spreads import run_spreads_bench

    try:
        report = asyncio.run(
            run_spreads_bench(
                Settings(), quotes=quotes, backlog=backlog, symbols=symbols, batch=batch, rate=rate
            )
        )
    except RuntimeError as exc:
        raise fail(str(exc)) from None
    if as_json:
        typer.echo(to_json(report).decode())
        return
    typer.echo(
        f"{report['symbols']} instruments on {report['venues']} venues: a backlog of {report['backlog']} "
        f"quotes, then {report['quotes']} live quotes (publisher {report['publisher_quotes_per_s']}/s)"
    )
    drain, live = report["drain"], report["live"]
    columns = ["drain quotes/s", "CPU µs/quote", "live quotes/s", "lag p50 s", "lag p99 s", "lag max s"]
    columns.append("peak RSS MiB")
    row = [drain["quotes_per_s"], drain["cpu_us_per_quote"], live["quotes_per_s"], live["lag_p50_s"]]
    row += [live["lag_p99_s"], live["lag_max_s"], report["peak_rss_mib"]]
    print_rows(columns, [row], False)


@bench_app.command("features")
def features(
    bars: Annotated[
        int, typer.Option(help="Closed bars: computed in process, then a backlog for the service.")
    ] = 200_000,
    series: Annotated[int, typer.Option(help="Over how many (venue, symbol) series.")] = 100,
    batch: Annotated[int, typer.Option(help="Bars per pipelined publish batch.")] = 5_000,
    engine_only: Annotated[
        bool, typer.Option("--engine-only", help="The engine in process only: no stack.")
    ] = False,
    as_json: JsonOpt = False,
) -> None:
    """feature-eng's feature set: bars/s, CPU µs per bar and peak RSS of the engine in process, then of the
    service (started by the benchmark, on the servers of `trader up --detach --services ''`) through a
    backlog of bars, every bar's features published and written to QuestDB."""
    from trader.bench.features import run_features_bench
    from trader.bench.ingest import to_json

    try:
        report = asyncio.run(run_features_bench(Settings(), bars, series, batch, engine_only))
    except RuntimeError as exc:
        raise fail(str(exc)) from None
    if as_json:
        typer.echo(to_json(report).decode())
        return
    engine = report["engine"]
    typer.echo(f"{engine['bars']} bars over {engine['series']} series, {engine['columns']} feature columns")
    columns = ["what", "bars/s", "CPU µs/bar", "peak RSS MiB"]
    rows = [
        [
            "engine (decode, update, encode)",
            engine["bars_per_s"],
            engine["cpu_us_per_bar"],
            engine["peak_rss_mib"],
        ]
    ]
    if "service" in report:
        s = report["service"]
        rows.append(
            ["feature-eng through a backlog", s["bars_per_s"], s["cpu_us_per_bar"], s["peak_rss_mib"]]
        )
    print_rows(columns, rows, False)
    if "service" in report:
        typer.echo(f"features published: {report['service']['features_published']} of {bars} bars")


@bench_app.command("trading")
def trading(
    rates: Annotated[
        str, typer.Option(help="Tick rates to run in turn (ticks/s, one order per tick), comma-separated.")
    ] = "250,500,1000,2000",
    seconds: Annotated[float, typer.Option(help="Measured seconds per rate.")] = 10.0,
    warmup: Annotated[float, typer.Option(help="Seconds per rate before the measured window.")] = 2.0,
    drain: Annotated[float, typer.Option(help="Most seconds to wait for a rate's last answers.")] = 120.0,
    hops: Annotated[
        bool, typer.Option("--hops", help="Also time each hop (loads the benchmark: run apart).")
    ] = False,
    as_json: JsonOpt = False,
) -> None:
    """Tick-to-order-acknowledgement latency and orders/s through strategy, risk, oms, execution-router
    and exeq (paper venue), started by the benchmark itself on the servers of `trader up --detach
    --services ''`; CPU per process and peak RSS."""
    from trader.bench.trading import run_trading_bench, to_json

    rate_list = _rates(rates)
    try:
        report = asyncio.run(
            run_trading_bench(
                Settings(), rates=rate_list, seconds=seconds, warmup_s=warmup, drain_s=drain, hops=hops
            )
        )
    except RuntimeError as exc:
        raise fail(str(exc)) from None
    if as_json:
        typer.echo(to_json(report).decode())
        return
    phases = report["phases"]
    typer.echo(
        f"{report['strategy']} on {report['symbol']}: one IOC order per tick; {report['warmup_s']:g} s "
        f"warm-up then {report['seconds']:g} s measured per rate; latency (ms) from the tick's publish "
        "acknowledgement to the venue's acknowledgement (exeq's first report: strategy -> risk -> oms "
        "-> exeq) and to the order's first state from the venue (one hop more: the oms)"
    )
    columns = ["ticks/s", "published/s", "orders", "acked", "rejected", "unanswered"]
    columns += ["venue ack p50", "p99", "max", "order state p50", "p99", "max", "orders/s"]
    rows = [
        [
            f"{p['rate']:g}",
            p["published_per_s"],
            p["orders"],
            p["acknowledged"],
            p["rejected"],
            p["unanswered"],
            p["latency_venue_ack"]["p50_ms"],
            p["latency_venue_ack"]["p99_ms"],
            p["latency_venue_ack"]["max_ms"],
            p["latency"]["p50_ms"],
            p["latency"]["p99_ms"],
            p["latency"]["max_ms"],
            p["orders_per_s"],
        ]
        for p in phases
    ]
    print_rows(columns, rows, False)
    processes = list(phases[0]["cpu_percent"]) if phases else []
    cpu_rows = [[f"{p['rate']:g}", *(p["cpu_percent"][name] for name in processes)] for p in phases]
    typer.echo("CPU over the measured window, % of one core:")
    print_rows(["ticks/s", *processes], cpu_rows, False)
    typer.echo("Wake-ups per order (voluntary context switches per tick of the window):")
    wake_rows = [[f"{p['rate']:g}", *(p["wakeups_per_order"].get(n) for n in processes)] for p in phases]
    print_rows(["ticks/s", *processes], wake_rows, False)
    services = list(phases[0]["gc"]) if phases else []
    if services:
        typer.echo("Garbage collections over the measured window: count / total pause ms / pauses of 10 ms+:")
        gc_rows = [[f"{p['rate']:g}", *(_gc_cell(p["gc"].get(name)) for name in services)] for p in phases]
        print_rows(["ticks/s", *services], gc_rows, False)
    print_rows(["service", "peak RSS MiB"], [list(item) for item in report["peak_rss_mib"].items()], False)
    for p in phases:
        if len(p["venue_ack_by_slice"]) > 1:
            typer.echo(f"venue ack latency at {p['rate']:g} ticks/s, by when the tick was sent:")
            slice_rows = [
                [f"{s['from_s']:g}", s["p50_ms"], s["p99_ms"], s["max_ms"], s["orders"]]
                for s in p["venue_ack_by_slice"]
            ]
            print_rows(["from s", "p50 ms", "p99 ms", "max ms", "orders"], slice_rows, False)
        for kind, entry in p["rejections"].items():
            typer.echo(
                f"rejected at {p['rate']:g} ticks/s: {entry['count']} x {kind} (e.g. {entry['example']})"
            )
        if "hops" in p:
            typer.echo(f"hops at {p['rate']:g} ticks/s, as seen on the bus:")
            hop_rows = [
                [hop, f["p50_ms"], f["p99_ms"], f["max_ms"], f["orders"]] for hop, f in p["hops"].items()
            ]
            print_rows(["hop", "p50 ms", "p99 ms", "max ms", "orders"], hop_rows, False)
    if report["unmapped_states"]:
        typer.echo(f"{report['unmapped_states']} order states answered no tick of this run")


def _gc_cell(gc: dict[str, float] | None) -> str | None:
    return None if gc is None else f"{gc['collections']:g} / {gc['pause_ms']:g} / {gc['pauses_10ms']:g}"


@bench_app.command("api")
def api(
    orders: Annotated[
        int, typer.Option(help="Orders written to the history before the api starts.")
    ] = 10_000,
    requests: Annotated[int, typer.Option(help="Requests per read, one after another.")] = 300,
    rates: Annotated[str, typer.Option(help="WebSocket phases: fills published per second.")] = "100,1000",
    seconds: Annotated[float, typer.Option(help="Seconds per WebSocket phase.")] = 10.0,
    as_json: JsonOpt = False,
) -> None:
    """The operator api (started by the benchmark, on the servers of `trader up --detach --services ''`):
    p50/p99 of the main reads with ORDERS holding that many orders, and the WebSocket's delay from a
    fill's publish to its arrival at a client at each rate."""
    from trader.bench.api import run_api_bench
    from trader.bench.trading import to_json

    rate_list = [int(r) for r in _rates(rates)]
    try:
        report = asyncio.run(
            run_api_bench(Settings(), orders=orders, requests=requests, rates=rate_list, seconds=seconds)
        )
    except RuntimeError as exc:
        raise fail(str(exc)) from None
    if as_json:
        typer.echo(to_json(report).decode())
        return
    typer.echo(
        f"{report['orders_in_api']} orders in the api's view; ready {report['api_ready_s']} s after its start"
    )
    rows = [[path, f["p50_ms"], f["p99_ms"], f["max_ms"], f["bytes"]] for path, f in report["reads"].items()]
    print_rows(["read", "p50 ms", "p99 ms", "max ms", "bytes"], rows, False)
    rows = [
        [w["rate_per_s"], w["publish_rate_achieved"], w["received"], w["p50_ms"], w["p99_ms"], w["max_ms"]]
        for w in report["websocket"]
    ]
    print_rows(["fills/s", "achieved", "received", "delay p50 ms", "p99 ms", "max ms"], rows, False)


BACKTEST_SCENARIOS = ("read", "market_maker", "ma_cross", "alt_read", "ma_cross_alt")  # trader.bench.backtest


@bench_app.command("backtest")
def backtest(
    ticks: Annotated[int, typer.Option(help="Ticks written to the benchmark's lake.")] = 10_000_000,
    run_ticks: Annotated[
        int | None, typer.Option(help="Ticks the market maker runs over (default: all); the others run all.")
    ] = None,
    only: Annotated[
        str | None, typer.Option(help="One scenario: " + ", ".join(BACKTEST_SCENARIOS) + ".")
    ] = None,
    as_json: JsonOpt = False,
) -> None:
    """A backtest's ticks/s and peak RSS over ticks written to a Delta table of the benchmark's own (no
    stack needed): the reading alone, the market maker on every tick, the MA crossover on 1m bars; with
    --only, also the alternative data read alone (alt_read: the ticks column counts data), or the MA
    crossover taking them too (ma_cross_alt)."""
    from trader.bench.backtest import SCENARIOS, run_backtest_bench
    from trader.bench.trading import to_json

    if only is not None and only not in SCENARIOS:
        raise fail(f"--only: one of {', '.join(SCENARIOS)}")
    try:
        report = run_backtest_bench(
            Settings().data_dir,
            ticks=ticks,
            run_ticks=run_ticks,
            scenarios=(only,) if only else SCENARIOS[:3],  # the alternative data's: asked for by --only
        )
    except RuntimeError as exc:
        raise fail(str(exc)) from None
    if as_json:
        typer.echo(to_json(report).decode())
        return
    write = report["write"]
    made = f"written in {write['seconds']} s" if write["written"] else "kept from an earlier run"
    typer.echo(f"{report['ticks_in_lake']} ticks in {report['lake']} ({made})")
    rows = [
        [name, r["ticks"], r["ticks_per_s"], round(r["seconds"], 1), r.get("fills", "-"), r["peak_rss_mib"]]
        for name, r in report["scenarios"].items()
    ]
    print_rows(["scenario", "ticks", "ticks/s", "seconds", "fills", "peak RSS MiB"], rows, False)


@bench_app.command("wakeup")
def wakeup(
    rates: Annotated[
        str, typer.Option(help="Messages/s to run in turn, comma-separated.")
    ] = "100,250,1000,4000",
    seconds: Annotated[float, typer.Option(help="Seconds per rate.")] = 5.0,
    as_json: JsonOpt = False,
) -> None:
    """What one wake-up of a waiting process costs here: an asyncio echo server in a process of its
    own, answering paced 64-byte messages over loopback TCP; its CPU per message at each rate. (Needs
    no stack: it measures the machine, which sets what each hop of the trading chain costs.)"""
    from trader.bench.trading import to_json
    from trader.bench.wakeup import run_wakeup_bench

    rate_list = _rates(rates)
    report = asyncio.run(run_wakeup_bench(rate_list, seconds))
    if as_json:
        typer.echo(to_json(report).decode())
        return
    columns = ["msgs/s", "achieved", "server CPU us/msg", "server wake-ups/msg", "client CPU us/msg"]
    columns += ["round trip p50 us", "p99 us"]
    rows = [
        [
            f"{p['rate']:g}",
            p["achieved_per_s"],
            p["server_cpu_us_per_message"],
            p["server_wakeups_per_message"],
            p["client_cpu_us_per_message"],
            p["round_trip_p50_us"],
            p["round_trip_p99_us"],
        ]
        for p in report["phases"]
    ]
    print_rows(columns, rows, False)


@bench_app.command("ohlcv-agg")
def ohlcv_agg(
    symbols: Annotated[int, typer.Option(help="Symbols: one 1m bar each per minute.")] = 10_000,
    minutes: Annotated[int, typer.Option(help="Minutes of 1m bars published at full speed.")] = 15,
    engine_only: Annotated[
        bool, typer.Option("--engine-only", help="The engine alone in this process: no stack needed.")
    ] = False,
    as_json: JsonOpt = False,
) -> None:
    """ohlcv-agg (started by the benchmark, on the servers of `trader up --detach --services ''`) fed
    the 1m bars of that many symbols at full speed: bars/s consumed and stored, CPU us per bar, peak
    RSS, and the headroom over a live market's symbols / 60 bars/s. With --engine-only, its engine
    alone (bars/s, CPU us per bar, snapshot size)."""
    from trader.bench.ohlcv_agg import run_engine_bench, run_ohlcv_agg_bench
    from trader.bench.trading import to_json

    if engine_only:
        timeframes = Settings().ohlcv_agg.timeframes
        report = run_engine_bench(symbols=symbols, minutes=minutes, timeframes=timeframes)
        if as_json:
            typer.echo(to_json(report).decode())
            return
        columns = ["bars", "bars/s", "CPU us/bar", "rows written", "published", "snapshot MiB"]
        columns += ["snapshot ms", "peak RSS MiB"]
        keys = ["bars", "bars_per_s", "cpu_us_per_bar", "rows_written", "bars_published", "snapshot_mib"]
        keys += ["snapshot_encode_ms", "peak_rss_mib"]
        print_rows(columns, [[report[k] for k in keys]], False)
        return
    try:
        report = asyncio.run(run_ohlcv_agg_bench(Settings(), symbols=symbols, minutes=minutes))
    except RuntimeError as exc:
        raise fail(str(exc)) from None
    if as_json:
        typer.echo(to_json(report).decode())
        return
    typer.echo(f"{report['bars']} 1m bars ({symbols} symbols x {minutes} minutes) -> {report['timeframes']}")
    columns = ["published/s", "consumed/s", "stored/s", "stored after s", "CPU us/bar", "peak RSS MiB"]
    columns += ["live need/s", "headroom"]
    row = [report[k] for k in ("publisher_bars_per_s", "consumed_bars_per_s", "stored_bars_per_s")]
    row += [report["stored_after_s"], report["cpu_us_per_bar"], report["peak_rss_mib"]]
    row += [report["live_need_bars_per_s"], report["headroom"]]
    print_rows(columns, [row], False)


def _sizes(orders: str) -> list[int]:
    try:
        sizes = [int(n.replace("_", "")) for n in orders.split(",") if n.strip()]
    except ValueError:
        raise fail(f"--orders: not a list of whole numbers: {orders!r}") from None
    if not sizes or any(n <= 0 for n in sizes):
        raise fail("--orders: give at least one positive number of orders")
    return sizes


@bench_app.command("restart")
def restart(
    orders: Annotated[
        str, typer.Option(help="History sizes to run in turn (orders), comma-separated.")
    ] = "10000,100000,1000000",
    spacing_ms: Annotated[int, typer.Option(help="Time between two orders of the history (ms).")] = 1_000,
    snapshot_wait: Annotated[
        float, typer.Option(help="Most seconds to wait for the snapshots to cover the history.")
    ] = 90.0,
    as_json: JsonOpt = False,
) -> None:
    """Time to /ready and peak RSS of oms, exeq, execution-router, ptrc, strategy and risk after a
    SIGKILL, on a history of each size written to ORDERS and EXEC (which it empties first: run it on
    the servers of `trader up --detach --services ''` on a data directory of its own)."""
    from trader.bench.restart import run_restart_bench, to_json

    sizes = _sizes(orders)
    try:
        report = asyncio.run(
            run_restart_bench(Settings(), sizes=sizes, spacing_ms=spacing_ms, snapshot_wait_s=snapshot_wait)
        )
    except RuntimeError as exc:
        raise fail(str(exc)) from None
    if as_json:
        typer.echo(to_json(report).decode())
        return
    columns = ["orders", "service", "first start s", "restart alone s", "replayed from", "peak RSS MiB"]
    columns += ["restart all s", "peak RSS MiB (all)"]
    rows = []
    for size in report["sizes"]:
        for name, s in size["services"].items():
            replayed = ",".join(str(seq) for seq in s["replayed_from"]) or "-"
            row = [size["orders"], name, s["first_start_s"], s["restart_alone_s"], replayed]
            row += [s["restart_alone_rss_mib"], s["restart_together_s"], s["restart_together_rss_mib"]]
            rows.append(row)
    print_rows(columns, rows, False)
    for size in report["sizes"]:
        typer.echo(
            f"{size['orders']} orders: written in {size['history_write_s']} s; streams end at "
            f"{size['stream_last_seq']}; snapshots cover {size['snapshot_covers']}, bytes "
            f"{size['snapshot_bytes']}; all six restarted "
            f"together ready in {size['all_ready_together_s']} s"
        )
