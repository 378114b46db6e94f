"""The README's first command: `make up` installs with a line per step, then puts `trader` on PATH (a link
in LINK_DIR when that directory is on PATH) or says how. `make link` runs here for real, with a HOME of
the test's own; the install is only dry-run (`make -n`): a real one takes minutes."""

from __future__ import annotations

import os
import re
import shutil
import subprocess
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[1].parent
TRADER = REPO / ".venv" / "bin" / "trader"

pytestmark = pytest.mark.skipif(shutil.which("make") is None, reason="no make")


def make(*args: str, home: Path, path: str) -> subprocess.CompletedProcess[str]:
    # -o: the installed stamp counts as up to date, whatever its age: never a real install here.
    env = {**outside_make(), "HOME": str(home), "PATH": path}
    command = ["make", "--no-print-directory", "-o", ".venv/.installed", *args]
    return subprocess.run(command, cwd=REPO, env=env, capture_output=True, text=True, timeout=60, check=True)


def outside_make() -> dict[str, str]:
    """The environment without what a calling make (as in `make test`) hands its children: with it,
    make prints "Entering directory" lines and takes the caller's flags."""
    return {k: v for k, v in os.environ.items() if k not in {"MAKEFLAGS", "MFLAGS", "MAKELEVEL"}}


def plain_path() -> str:
    """PATH without any directory that has a trader command (this venv's bin, most likely)."""
    return os.pathsep.join(
        d for d in os.environ["PATH"].split(os.pathsep) if not (Path(d) / "trader").exists()
    )


def test_up_links_trader_into_local_bin_when_that_is_on_path(tmp_path: Path) -> None:
    local_bin = tmp_path / ".local" / "bin"
    path = f"{local_bin}{os.pathsep}{plain_path()}"
    said = make("link", home=tmp_path, path=path).stdout
    link = local_bin / "trader"
    assert link.is_symlink()
    assert link.resolve() == TRADER.resolve()
    assert f"trader is on your PATH: {link} -> {TRADER}" in said
    found = subprocess.run(
        ["trader", "--help"], env={**os.environ, "PATH": path}, capture_output=True, text=True
    )
    assert found.returncode == 0
    assert "lake" in found.stdout
    assert make("link", home=tmp_path, path=path).stdout == "", "once on PATH, nothing more to say"


def test_up_says_how_when_local_bin_is_not_on_path(tmp_path: Path) -> None:
    said = make("link", home=tmp_path, path=plain_path()).stdout
    assert "run '. .venv/bin/activate' in each shell first" in said
    assert not (tmp_path / ".local").exists()
    assert (REPO / ".venv" / "bin" / "activate").exists()


def test_another_program_called_trader_is_left_alone(tmp_path: Path) -> None:
    local_bin = tmp_path / ".local" / "bin"
    local_bin.mkdir(parents=True)
    other = local_bin / "trader"
    other.write_text("#!/bin/sh\necho another trader\n")
    said = make("link", home=tmp_path, path=f"{local_bin}{os.pathsep}{plain_path()}").stdout
    assert not other.is_symlink()
    assert other.read_text() == "#!/bin/sh\necho another trader\n"
    assert "activate" in said


def test_link_dir_empty_links_nothing(tmp_path: Path) -> None:
    local_bin = tmp_path / ".local" / "bin"
    make("link", "LINK_DIR=", home=tmp_path, path=f"{local_bin}{os.pathsep}{plain_path()}")
    assert not local_bin.exists()


def test_up_installs_then_links_then_starts_and_the_install_prints_its_steps(tmp_path: Path) -> None:
    plan = subprocess.run(
        ["make", "--no-print-directory", "-n", "-B", "up", "ARGS=--detach", "VENV=/nonexistent/venv"],
        cwd=REPO,
        env=outside_make(),
        capture_output=True,
        text=True,
        timeout=60,
        check=True,
    ).stdout
    steps = re.findall(r'echo "==> ([a-z]+)', plan)
    assert steps[:4] == ["creating", "upgrading", "installing", "installed"]
    assert "--quiet -e" not in plan, "pip's quiet install looked hung for minutes"
    assert "tee /nonexistent/venv/install.log" in plan
    order = [
        plan.index("pip install --progress-bar off"),
        plan.index("trader is on your PATH"),
        plan.index("trader up"),
    ]
    assert order == sorted(order)
    assert plan.rstrip().endswith("/nonexistent/venv/bin/trader up --detach")


def test_the_readme_names_what_the_makefile_does() -> None:
    readme = (REPO / "README.md").read_text()
    section = readme.split("## Two commands", 1)[1].split("\n## ", 1)[0]
    makefile = (REPO / "Makefile").read_text()
    for target in re.findall(r"^make (\w+)", section, re.M):
        assert re.search(rf"^{target}:", makefile, re.M), f"make {target}"
    assert "LINK_DIR ?= $(HOME)/.local/bin" in makefile
    assert "~/.local/bin" in section
    assert ". .venv/bin/activate" in section
    assert "INSTALL_LOG := $(VENV)/install.log" in makefile
    assert ".venv/install.log" in section
