"""QuestDB, from the ``org.questdb:questdb`` jar on Maven Central, run on Java 17+.

The jar is fetched once into the cache directory with ``mvn dependency:copy`` where Maven is present,
otherwise downloaded from the Maven repository named by ``TRADER_MAVEN_REPOSITORY``, and its SHA-1
checked. Its ports are set in the ``server.conf`` written at each start.
"""

from __future__ import annotations

import fcntl
import hashlib
import re
import shutil
import subprocess
from pathlib import Path

import httpx

from trader.config import is_loopback
from trader.stack.base import Infra, StackError

GROUP, ARTIFACT = "org.questdb", "questdb"


class QuestDBServer(Infra):
    name = "questdb"
    start_timeout_s = 90.0

    def ports(self) -> dict[str, int]:
        p = self.settings.ports
        return {"http": p.questdb_http, "pg": p.questdb_pg, "ilp": p.questdb_ilp, "health": p.questdb_health}

    def address(self) -> tuple[str, int]:
        return self.settings.questdb_host, self.settings.ports.questdb_http

    def is_local(self) -> bool:
        return is_loopback(self.settings.questdb_host)

    async def reachable(self) -> bool:
        try:
            async with httpx.AsyncClient() as client:
                response = await client.get(
                    f"{self.settings.questdb_http_url}/exec", params={"query": "select 1"}, timeout=2
                )
        except httpx.HTTPError:
            return False
        return response.status_code == 200

    def probes(self) -> tuple[str, str]:
        host = self.settings.questdb_host
        ready = f"{self.settings.questdb_http_url}/exec?query=select%201"
        return f"http://{host}:{self.settings.ports.questdb_health}/", ready

    @property
    def root(self) -> Path:
        return self.settings.data_dir / "questdb"

    def prepare(self) -> None:
        check_java()
        self._jar = ensure_jar(
            self.settings.questdb_version,
            self.settings.cache_dir,
            self.settings.questdb_jar,
            self.settings.maven_repository,
        )
        conf = self.root / "conf"
        conf.mkdir(parents=True, exist_ok=True)
        host, p = self.settings.questdb_host, self.settings.ports
        (conf / "server.conf").write_text(
            "# Written by `trader up`; changes are overwritten.\n"
            f"http.bind.to={host}:{p.questdb_http}\n"
            f"http.min.net.bind.to={host}:{p.questdb_health}\n"
            f"pg.net.bind.to={host}:{p.questdb_pg}\n"
            f"line.tcp.net.bind.to={host}:{p.questdb_ilp}\n"
            "line.udp.enabled=false\n"
            "telemetry.enabled=false\n"
            "metrics.enabled=true\n" + WORKER_IDLING  # Prometheus metrics on the health port
        )
        (conf / "log.conf").write_text(LOG_CONF)

    def command(self) -> list[str]:
        return [
            "java",
            f"-Xmx{self.settings.questdb_heap}",
            "-XX:+UseParallelGC",
            "-p",
            str(self._jar),
            "-m",
            "io.questdb/io.questdb.ServerMain",
            "-d",
            str(self.root),
        ]


# QuestDB's worker threads spin, then yield, then nap, before they sleep when they find no work. With
# the defaults that cost 0.4 of a core for four small commits a second (each wakes the pools), on
# machines where the services need the cores. Sleeping sooner halves it for the same commits a second;
# a request after an idle second waits a few ms more for a worker (measured: docs/architecture.md).
# An environment variable QDB_<KEY> still overrides each.
WORKER_POOLS = ("shared", "wal.apply", "http", "http.min", "pg", "line.tcp.writer", "line.tcp.io")
WORKER_IDLING = "".join(
    f"{pool}.worker.yield.threshold=10\n{pool}.worker.nap.threshold=20\n{pool}.worker.sleep.threshold=50\n"
    for pool in WORKER_POOLS
)


# QuestDB logs a few INFO lines for every commit: 13.5 MB in 12 minutes of the stack's own bars and PnL
# (1.6 GB a day) on its stdout, which the supervisor appends to questdb.log for ever. Its stdout keeps
# the errors and the startup notices; the activity goes to QuestDB's own rolling files under
# <data>/questdb/log, which it keeps to 128 MB and a week.
LOG_CONF = """# Written by `trader up`; changes are overwritten.
writers=stdout,file,http.min
w.stdout.class=io.questdb.log.LogConsoleWriter
w.stdout.level=ERROR,CRITICAL,ADVISORY
w.file.class=io.questdb.log.LogRollingFileWriter
w.file.location=${log.dir}/questdb-rolling.log.${date:yyyyMMdd}
w.file.level=INFO,ERROR,CRITICAL,ADVISORY
w.file.rollEvery=day
w.file.rollSize=32m
w.file.lifeDuration=7d
w.file.sizeLimit=128m
w.http.min.class=io.questdb.log.LogConsoleWriter
w.http.min.level=ERROR
w.http.min.scope=http-min-server
"""


def check_java(minimum: int = 17) -> None:
    if shutil.which("java") is None:
        raise StackError(f"questdb: Java {minimum}+ is needed and `java` is not on the PATH")
    out = subprocess.run(["java", "-version"], capture_output=True, text=True).stderr
    match = re.search(r'version "(\d+)(?:\.(\d+))?', out)
    major = int(match.group(1)) if match else 0
    if major == 1 and match and match.group(2):  # "1.8.0" is Java 8
        major = int(match.group(2))
    if major < minimum:
        raise StackError(
            f"questdb: Java {minimum}+ is needed, found: {out.splitlines()[0] if out else 'unknown'}"
        )


def ensure_jar(version: str, cache_dir: Path, explicit: Path | None, repository: str | None) -> Path:
    if explicit is not None:
        if not explicit.is_file():
            raise StackError(f"questdb: TRADER_QUESTDB_JAR names {explicit}, which is not a file")
        return explicit
    jar = cache_dir / f"{ARTIFACT}-{version}.jar"
    if jar.is_file():
        return jar
    cache_dir.mkdir(parents=True, exist_ok=True)
    # Two stacks started at once on a fresh machine: one fetches, the other waits and finds the jar
    # whole (Maven writes it in place, so it would otherwise see it half written).
    with (cache_dir / f".{ARTIFACT}-{version}.lock").open("w") as lock:
        fcntl.flock(lock, fcntl.LOCK_EX)
        if not jar.is_file():
            _fetch(version, cache_dir, jar, repository)
    if not jar.is_file():
        raise StackError(f"questdb: fetching {GROUP}:{ARTIFACT}:{version} left no {jar}")
    return jar


def _fetch(version: str, cache_dir: Path, jar: Path, repository: str | None) -> None:
    if shutil.which("mvn"):
        _fetch_with_maven(version, cache_dir)
    elif repository:
        _download(version, jar, repository)
    else:
        raise StackError(
            "questdb: its jar is not cached and neither Maven (`mvn`) nor TRADER_MAVEN_REPOSITORY is "
            "available to fetch it: install Maven, set TRADER_MAVEN_REPOSITORY to a Maven repository "
            "URL, or set TRADER_QUESTDB_JAR to a downloaded questdb jar"
        )


def _fetch_with_maven(version: str, cache_dir: Path) -> None:
    result = subprocess.run(
        [
            "mvn",
            "-q",
            "-B",
            "dependency:copy",
            f"-Dartifact={GROUP}:{ARTIFACT}:{version}",
            f"-DoutputDirectory={cache_dir}",
        ],
        cwd=cache_dir,
        capture_output=True,
        text=True,
        timeout=600,
    )
    if result.returncode != 0:
        tail = (result.stdout + result.stderr).strip().splitlines()[-15:]
        raise StackError("questdb: `mvn dependency:copy` failed:\n" + "\n".join(tail))


def _download(version: str, jar: Path, repository: str) -> None:
    url = f"{repository.rstrip('/')}/{GROUP.replace('.', '/')}/{ARTIFACT}/{version}/{ARTIFACT}-{version}.jar"
    partial = jar.with_suffix(".part")
    with httpx.Client(follow_redirects=True, timeout=120) as client:
        expected = client.get(url + ".sha1").raise_for_status().text.split()[0]
        digest = hashlib.sha1()
        with client.stream("GET", url) as response, partial.open("wb") as out:
            response.raise_for_status()
            for chunk in response.iter_bytes():
                digest.update(chunk)
                out.write(chunk)
    if digest.hexdigest() != expected:
        partial.unlink()
        raise StackError(f"questdb: checksum mismatch for {url}")
    partial.rename(jar)
