"""docs/strategies.md can be followed literally: every code block of the page runs or is checked.

- python blocks run on their own (each in a fresh namespace: its imports must be there); the example's
  class passes the page's test as the shipped one does;
- yaml blocks are valid settings (unknown keys are refused), their strategies load as the service loads
  them;
- sh blocks: the test commands run, as the page says, in a directory laid out as the repository's root
  with the page's test saved as it says; every `trader` command, option, `make` target, file and port of
  the others is a real one (the run itself is tests/e2e/test_strategies_page_run.py).
"""

from __future__ import annotations

import os
import re
import shlex
import subprocess
import sys
import types
from collections.abc import Iterator
from pathlib import Path
from unittest import mock

import pytest
import yaml
from typer.testing import CliRunner

from trader.config import PortMap, Settings
from trader.strategies import build_runner
from trader.strategies.base import Strategy

REPO = Path(__file__).resolve().parents[3]
PAGE = REPO / "docs" / "strategies.md"
FENCE = re.compile(r"^```(\w*)\n(.*?)^```", re.S | re.M)
SHIPPED_KIND = "examples.my_strategies:Breakout"


def blocks(language: str) -> list[str]:
    return [code for lang, code in FENCE.findall(PAGE.read_text()) if lang == language]


def section(title: str) -> str:
    return PAGE.read_text().split(f"## {title}\n", 1)[1].split("\n## ", 1)[0]


def page_test_block() -> str:
    [code] = [c for c in blocks("python") if "def test_" in c]
    return code


def run_tests_of(code: str, namespace_name: str) -> int:
    namespace: dict[str, object] = {"__name__": namespace_name}
    exec(compile(code, "docs/strategies.md", "exec"), namespace)
    tests = [f for name, f in namespace.items() if name.startswith("test_") and callable(f)]
    for test in tests:
        test()
    return len(tests)


def test_every_block_is_one_the_test_knows() -> None:
    languages = [lang for lang, _ in FENCE.findall(PAGE.read_text())]
    assert set(languages) <= {"python", "yaml", "sh"}, languages
    assert languages.count("python") == 3
    assert languages.count("yaml") >= 1
    assert languages.count("sh") >= 2


def test_the_test_shown_runs_with_its_own_imports() -> None:
    assert run_tests_of(page_test_block(), "page_test") == 1


@pytest.fixture
def page_example() -> Iterator[str]:
    """The page's example block as a module of its own, named as a configuration would name it."""
    [code] = [c for c in blocks("python") if "class Breakout" in c]
    module = types.ModuleType("strategies_page_example")
    exec(compile(code, "docs/strategies.md", "exec"), module.__dict__)  # its own imports only
    sys.modules[module.__name__] = module
    try:
        yield f"{module.__name__}:Breakout"
    finally:
        del sys.modules[module.__name__]


def test_the_example_shown_runs_on_its_own_and_passes_the_page_test(page_example: str) -> None:
    module = sys.modules[page_example.split(":")[0]]
    assert issubclass(module.Breakout, Strategy)
    code = page_test_block()
    assert SHIPPED_KIND in code
    assert run_tests_of(code.replace(SHIPPED_KIND, page_example), "page_test_on_page_example") == 1


def test_the_features_example_runs_as_a_module_of_its_own() -> None:
    """The block of "Features" names its strategy ``f"{__name__}:RsiDip"``, as a test module would:
    run as a module, its asserts hold."""
    [code] = [c for c in blocks("python") if "class RsiDip" in c]
    module = types.ModuleType("strategies_page_features")
    sys.modules[module.__name__] = module
    try:
        exec(compile(code, "docs/strategies.md", "exec"), module.__dict__)
    finally:
        del sys.modules[module.__name__]
    assert issubclass(module.RsiDip, Strategy)
    assert len(module.orders) == 1


def test_every_yaml_block_is_valid_settings_and_its_strategies_load(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.chdir(REPO)  # the page runs from the repository's root: examples.* is importable there
    for code in blocks("yaml"):
        data = yaml.safe_load(code)
        for key in [k for k in os.environ if k.startswith("TRADER_")]:
            monkeypatch.delenv(key)
        settings = Settings(**data)
        for config in settings.strategy.strategies:
            runner = build_runner(config)  # an unknown or malformed parameter raises here
            assert runner.warmup_wanted(), f"{config.name}: the page says it warms up"


def test_the_page_yaml_is_the_example_file_s_first_strategy() -> None:
    [page] = [yaml.safe_load(c) for c in blocks("yaml") if "breakout" in c]
    example = yaml.safe_load((REPO / "examples" / "breakout.yaml").read_text())
    assert page["strategy"]["strategies"][0] == example["strategy"]["strategies"][0]


def commands(code: str) -> list[str]:
    """The commands of an sh block: comments dropped, `a; b` and `a | b` split."""
    found = []
    for line in code.splitlines():
        line = line.split(" #", 1)[0].strip()
        if line and not line.startswith("#"):
            found.extend(part.strip() for part in re.split(r";|\|", line) if part.strip())
    return found


def test_the_test_commands_run_as_the_page_says(tmp_path: Path) -> None:
    """In a directory laid out as the repository's root (its .venv, examples and tests), with the page's
    test saved as the page says."""
    text = section("Test it")
    saved_as = re.search(r"Save the test above as `([\w.]+)` in the repository's root", text)
    assert saved_as is not None
    (tmp_path / saved_as.group(1)).write_text(page_test_block())
    for name in (".venv", "examples", "tests"):
        (tmp_path / name).symlink_to(REPO / name)
    [code] = [c for c in blocks("sh") if "pytest" in c]
    ran = 0
    for command in commands(code):
        argv = shlex.split(command)
        assert argv[:4] == [".venv/bin/python", "-m", "pytest", argv[3]], command
        env = {k: v for k, v in os.environ.items() if not k.startswith(("TRADER_", "PYTEST_"))}
        result = subprocess.run(argv, cwd=tmp_path, env=env, capture_output=True, text=True, timeout=300)
        assert result.returncode == 0, f"{command}\n{result.stdout[-3000:]}\n{result.stderr[-2000:]}"
        assert re.search(r"\d+ passed", result.stdout), result.stdout[-500:]
        ran += 1
    assert ran == 2


def trader_help(*words: str) -> str:
    """``trader WORDS --help``, run in this process by the command line's own app (``trader`` is
    ``trader.cli.main.app``): a process per command would import it anew each time, seconds each. The
    app's callback configures the process's logging (to the runner's stream, closed after): not here,
    where other tests' logs go on."""
    from trader.cli.main import app

    with mock.patch("trader.cli.main.configure_logging"):
        result = CliRunner().invoke(app, [*words, "--help"], prog_name="trader")
    assert result.exit_code == 0, f"trader {' '.join(words)}: {result.output}"
    return result.output


def check_trader_command(argv: list[str]) -> None:
    """A real subcommand, and every option it is given is one of its own."""
    words = [a for a in argv[1:] if not a.startswith("-")]
    subcommand = words[:1] if words else []
    helptext = trader_help(*subcommand)
    for option in (a for a in argv[1:] if a.startswith("-")):
        assert re.search(rf"(?<![\w-]){re.escape(option)}(?![\w-])", helptext), f"{' '.join(argv)}: {option}"


def test_the_run_commands_name_real_commands_files_and_ports() -> None:
    [code] = [c for c in blocks("sh") if "make up" in c]
    checked = set()
    for command in commands(code):
        argv = shlex.split(command)
        env = {}
        while argv and re.match(r"^[A-Z_]+=", argv[0]):
            key, value = argv.pop(0).split("=", 1)
            env[key] = value
        if "TRADER_CONFIG" in env:
            assert (REPO / env["TRADER_CONFIG"]).is_file(), env["TRADER_CONFIG"]
        program = argv[0]
        if program == "trader":
            check_trader_command(argv)
        elif program == "make":
            plan = subprocess.run(
                ["make", "-n", "-o", ".venv/.installed", *argv[1:]],
                cwd=REPO,
                capture_output=True,
                text=True,
                timeout=60,
                check=True,
            ).stdout
            args = next(a.split("=", 1)[1] for a in argv if a.startswith("ARGS="))
            assert f".venv/bin/trader up {args}" in plan
        elif program == "curl":
            url = argv[-1]
            port = int(re.search(r":(\d+)/", url).group(1))  # type: ignore[union-attr]
            assert port == PortMap().strategy, "the strategy service's port"
            assert url.endswith("/health")
        elif program == "grep":
            assert "breakout" in (REPO / "examples" / "my_strategies.py").read_text()
        else:
            raise AssertionError(f"a command the test does not know: {command}")
        checked.add(program)
    assert checked == {"trader", "make", "curl", "grep"}
