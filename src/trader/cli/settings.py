"""`trader config`: the settings in force, each with where its value came from, secrets masked.

A value comes from an environment variable (named), the YAML file ``TRADER_CONFIG`` names, or the
default (``trader.config``). Anything secret-looking (keys, secrets, passphrases, passwords, tokens, a
URL's password) is shown as ``********``; the files a venue reads its credentials from are only named.
"""

from __future__ import annotations

import json
import os
import re
import sys
from typing import Annotated, Any
from urllib.parse import urlsplit, urlunsplit

import typer
import yaml
from rich.console import Console
from rich.table import Table

from trader.config import ENV_PREFIX, Settings, config_file_path
from trader.settings_keys import Path_, Source, dotted, leaves, value_sources

MASK = "********"
_SECRET_NAME = re.compile(
    r"secret|passw|passphrase|token|api_?key|access_?key|private|credential|auth", re.IGNORECASE
)
# A field that says where a secret is (``api_key_env``, ``secret_file``) is not one.
_WHERE_A_SECRET_IS = ("_env", "_file")


def config(
    section: Annotated[
        str | None, typer.Argument(help="Only the settings under this one, e.g. risk or exeq.venues.")
    ] = None,
    as_json: Annotated[
        bool, typer.Option("--json", help="One JSON object: setting -> value, source.")
    ] = False,
) -> None:
    """Show the settings in force and where each value came from (default, environment, file)."""
    rows = [row for row in settings_report(Settings()) if section is None or _under(row[0], section)]
    if not rows:
        print(f"error: no setting is named {section} or lies under it", file=sys.stderr)
        raise typer.Exit(2)
    if as_json:
        print(json.dumps({name: _json_row(value, source) for name, value, source in rows}, indent=2))
        return
    config_file = config_file_path()
    console = Console() if sys.stdout.isatty() else Console(width=200)
    console.print(f"TRADER_CONFIG: {config_file or 'unset (no file)'}", markup=False)
    table = Table()
    table.add_column("setting", no_wrap=True)
    table.add_column("value", overflow="fold")  # the long values wrap: names and sources stay whole
    table.add_column("source", no_wrap=True)
    for name, value, source in rows:
        table.add_row(name, _shown(value), str(source))
    console.print(table, markup=False)


def _under(name: str, section: str) -> bool:
    return name == section or name.startswith((f"{section}.", f"{section}["))


def settings_report(settings: Settings) -> list[tuple[str, Any, Source]]:
    """(dotted setting, value, its source) for every value in force, secrets masked."""
    dumped = settings.model_dump(mode="json")
    config_file = config_file_path()
    sources = value_sources(
        Settings,
        dumped,
        environ=os.environ,
        prefix=ENV_PREFIX,
        file_data=_read_yaml(config_file) if config_file else None,
        file_name=str(config_file) if config_file else None,
    )
    return [(dotted(path), masked(path, value), sources[path]) for path, value in leaves(dumped)]


def masked(path: Path_, value: Any) -> Any:
    """``value`` as it may be shown: a secret-looking setting's hidden, a URL's password hidden."""
    names = [part for part in path if isinstance(part, str)]
    if value not in (None, "") and names and _secret_looking(names[-1]):
        return MASK
    if isinstance(value, str) and "@" in value and "://" in value:
        return _without_url_password(value)
    return value


def _secret_looking(name: str) -> bool:
    return bool(_SECRET_NAME.search(name)) and not name.lower().endswith(_WHERE_A_SECRET_IS)


def _without_url_password(url: str) -> str:
    try:
        parts = urlsplit(url)
        if parts.password is None:
            return url
    except ValueError:
        return url
    host = parts.netloc.rpartition("@")[2]
    return urlunsplit(parts._replace(netloc=f"{parts.username or ''}:{MASK}@{host}"))


def _read_yaml(path: os.PathLike[str]) -> Any:
    with open(path, encoding="utf-8") as handle:
        return yaml.safe_load(handle) or {}


def _json_row(value: Any, source: Source) -> dict[str, Any]:
    row: dict[str, Any] = {"value": value, "source": source.kind}
    if source.origin is not None:
        row["from"] = source.origin
    return row


def _shown(value: Any) -> str:
    return value if isinstance(value, str) else json.dumps(value)
