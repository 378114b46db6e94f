"""The layers point one way, read from the imports of every module (at the top, inside functions, and
under ``TYPE_CHECKING`` alike), so that no import against the direction can come back unnoticed.

- ``trader.bus`` is the bottom: it imports no other package of trader (the shared contracts
  ``trader.messages``, ``trader.config`` and ``trader.settings_keys`` aside);
- ``trader.runtime`` imports the bus only (and the shared contracts), never a service nor the registry;
- the domain packages import neither the runtime nor the services;
- ``trader.control`` (the operator's actions, for the CLI and the api) imports neither either.
"""

from __future__ import annotations

import ast
from collections.abc import Iterator
from pathlib import Path

import pytest

import trader

SRC = Path(trader.__file__).parent
SHARED = {"trader.messages", "trader.config", "trader.settings_keys"}
DOMAIN = ["orders", "risk", "execution", "portfolio", "marketdata", "strategies"]
BELOW_THE_RUNTIME = [*DOMAIN, "control"]

# Imports against the direction that another change is removing, each with where it goes. An entry
# here is allowed, not required: once the import is gone the entry only waits to be deleted.
BEING_REMOVED: set[tuple[str, str]] = set()  # none left: the old readers are gone (issue 13)


def module_name(path: Path) -> str:
    parts = path.relative_to(SRC.parent).with_suffix("").parts
    return ".".join(parts[:-1] if parts[-1] == "__init__" else parts)


def imports_of(path: Path) -> Iterator[str]:
    """Every trader module ``path`` imports, wherever the import statement stands."""
    for node in ast.walk(ast.parse(path.read_text(), filename=str(path))):
        if isinstance(node, ast.Import):
            yield from (alias.name for alias in node.names)
        elif isinstance(node, ast.ImportFrom) and node.module and node.level == 0:
            yield node.module


def trader_imports(package: str) -> list[tuple[str, str]]:
    found = []
    for path in sorted((SRC / package).rglob("*.py")):
        importer = module_name(path)
        found += [(importer, m) for m in imports_of(path) if m == "trader" or m.startswith("trader.")]
    return found


def in_package(module: str, package: str) -> bool:
    return module == f"trader.{package}" or module.startswith(f"trader.{package}.")


def against(found: list[tuple[str, str]], allowed: set[str]) -> list[tuple[str, str]]:
    return [
        (importer, imported)
        for importer, imported in found
        if imported not in SHARED
        and not any(in_package(imported, package) for package in allowed)
        and (importer, imported) not in BEING_REMOVED
    ]


def test_the_bus_imports_nothing_above_it() -> None:
    assert against(trader_imports("bus"), {"bus"}) == []


def test_the_runtime_imports_the_bus_only() -> None:
    assert against(trader_imports("runtime"), {"runtime", "bus"}) == []


@pytest.mark.parametrize("package", BELOW_THE_RUNTIME)
def test_a_domain_package_imports_neither_the_runtime_nor_the_services(package: str) -> None:
    found = trader_imports(package)
    assert found, f"trader.{package} was read"  # the walk found the package's modules
    upward = [
        (importer, imported)
        for importer, imported in found
        if in_package(imported, "runtime") or in_package(imported, "services")
    ]
    assert upward == []


def test_an_import_against_the_direction_is_found(tmp_path: Path) -> None:
    # The reader itself: an import inside a function, as the registry's once was, counts.
    module = tmp_path / "m.py"
    module.write_text("def f():\n    from trader.services import REGISTRY\n    import trader.runtime.service")
    assert sorted(imports_of(module)) == ["trader.runtime.service", "trader.services"]
