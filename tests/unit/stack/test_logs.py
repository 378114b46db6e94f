"""Log files capped by the supervisor (copy-truncate): a process's stdout cannot be reopened from
outside, and a stack left running for weeks must not fill the disk with its logs."""

from __future__ import annotations

import os
from pathlib import Path
from types import SimpleNamespace

from trader.config import Settings
from trader.stack.supervisor import Supervisor, cap_log


def test_a_log_under_the_limit_is_left_alone(tmp_path: Path) -> None:
    log = tmp_path / "x.log"
    log.write_bytes(b"a" * 100)
    assert cap_log(log, max_bytes=100, keep=2) is False
    assert log.read_bytes() == b"a" * 100
    assert not (tmp_path / "x.log.1").exists()
    assert cap_log(tmp_path / "missing.log", max_bytes=1, keep=2) is False


def test_a_writer_appending_goes_on_at_the_start_of_the_emptied_file(tmp_path: Path) -> None:
    log = tmp_path / "x.log"
    with log.open("ab") as writer:  # as the supervisor opens a child's stdout
        writer.write(b"old line\n" * 20)
        writer.flush()
        assert cap_log(log, max_bytes=100, keep=2) is True
        writer.write(b"new line\n")
        writer.flush()
    assert log.read_bytes() == b"new line\n"  # no hole of zeros where the old lines were
    assert (tmp_path / "x.log.1").read_bytes() == b"old line\n" * 20


def test_older_copies_move_down_and_the_oldest_goes(tmp_path: Path) -> None:
    log = tmp_path / "x.log"
    for text in (b"first", b"second", b"third"):
        log.write_bytes(text * 50)
        assert cap_log(log, max_bytes=10, keep=2)
    assert (tmp_path / "x.log.1").read_bytes() == b"third" * 50
    assert (tmp_path / "x.log.2").read_bytes() == b"second" * 50
    assert not (tmp_path / "x.log.3").exists()


def test_the_supervisor_caps_its_own_log_and_every_components(tmp_path: Path) -> None:
    settings = Settings(data_dir=tmp_path, supervisor={"log_max_bytes": 1000, "log_keep": 1})
    settings.log_dir.mkdir(parents=True)
    own, gateway, quiet = (settings.log_file(n) for n in ("supervisor", "gateway", "oms"))
    own.write_bytes(b"s" * 2000)
    gateway.write_bytes(b"g" * 2000)
    quiet.write_bytes(b"q" * 10)
    supervisor = Supervisor(settings, [])
    supervisor.runs = [SimpleNamespace(component=SimpleNamespace(log_file=p)) for p in (gateway, quiet)]  # type: ignore[list-item]
    supervisor._cap_logs()
    assert [os.path.getsize(p) for p in (own, gateway, quiet)] == [0, 0, 10]
    assert settings.log_dir.joinpath("gateway.log.1").read_bytes() == b"g" * 2000
