"""Keys no setting has, and where each value in force came from.

pydantic ignores a key that names no field, so a typo (``gatway:`` in the YAML file,
``TRADER_RISK__MAX_ORDER_NOTIONL``) would leave the default in force without a word. ``KeyCheck`` walks
what each source holds against the settings model's fields and names every unknown key: where it was
(the file and dotted path, or the environment variable) and the nearest valid name. ``value_sources``
says, for each value in force, which source set it (what ``trader config`` shows).

Generic over the model: ``trader.config`` hands it ``Settings``.
"""

from __future__ import annotations

import difflib
import json
import re
import types
from collections.abc import Iterable, Iterator, Mapping
from dataclasses import dataclass, field
from typing import Annotated, Any, Literal, Union, get_args, get_origin

from pydantic import BaseModel

Path_ = tuple[str | int, ...]  # a dotted path: field names and dict keys, list indexes as ints

# The credentials of a live venue are read from the environment outside the settings model
# (trader.execution.venues.ccxt_live.load_credentials): TRADER_<VENUE>_API_KEY, _API_SECRET, ...
CREDENTIAL_SUFFIXES = ("API_KEY", "API_SECRET", "API_PASSPHRASE")
_CREDENTIAL = re.compile(r"^[A-Z0-9_]+_API_(KEY|SECRET|PASSPHRASE)$")


class UnknownSettingError(ValueError):
    """Keys no setting has: one line per key, saying where it was and the nearest valid name."""


# The shape of a field's type -------------------------------------------------------------------


@dataclass(frozen=True)
class _Shape:
    kind: Literal["model", "dict", "list", "leaf"]
    inner: Any = None  # the model class, or the type of a dict's values or of a list's items


def _shape(annotation: Any) -> _Shape:
    origin = get_origin(annotation)
    if origin is Annotated:
        return _shape(get_args(annotation)[0])
    if origin in (Union, types.UnionType):
        options = [a for a in get_args(annotation) if a is not type(None)]
        return _shape(options[0]) if len(options) == 1 else _Shape("leaf")
    if isinstance(annotation, type) and issubclass(annotation, BaseModel):
        return _Shape("model", annotation)
    if origin is dict or annotation is dict:
        args = get_args(annotation)
        return _Shape("dict", args[1] if len(args) == 2 else Any)
    if origin in (list, tuple, set, frozenset):
        args = get_args(annotation)
        return _Shape("list", args[0] if args else Any)
    return _Shape("leaf")


def _fields(model: type[BaseModel]) -> dict[str, Any]:
    """The keys a model accepts (names and aliases), each with its type."""
    keys: dict[str, Any] = {}
    for name, info in model.model_fields.items():
        keys[name] = info.annotation
        if info.alias:
            keys[info.alias] = info.annotation
    return keys


def dotted(path: Path_) -> str:
    """``a.b[0].c``: how a path is written in messages and in ``trader config``."""
    text = ""
    for part in path:
        text += f"[{part}]" if isinstance(part, int) else (f".{part}" if text else str(part))
    return text


def _nearest(word: str, candidates: Iterable[str]) -> str | None:
    close = difflib.get_close_matches(word, list(candidates), n=1, cutoff=0.6)
    return close[0] if close else None


def _sections(model: type[BaseModel], prefix: str = "") -> Iterator[str]:
    """Every path a model's fields make, ``a__b`` style, not into dicts and lists (their keys are free)."""
    for name, annotation in _fields(model).items():
        path = f"{prefix}{name}"
        yield path
        shape = _shape(annotation)
        if shape.kind == "model":
            yield from _sections(shape.inner, f"{path}__")


# The check ---------------------------------------------------------------------------------------


@dataclass
class KeyCheck:
    """Collects the unknown keys of a model's sources; ``raise_if_unknown`` names them all at once.

    A field whose name ends in ``_env`` names an environment variable the project reads itself (a
    venue's ``api_key_env``): such a variable is never an unknown setting."""

    model: type[BaseModel]
    problems: list[str] = field(default_factory=list)
    named_variables: set[str] = field(default_factory=set)

    def data(self, data: Any, where: str) -> None:
        """A mapping of settings (a YAML file's, keyword arguments), found ``where``."""
        self._walk(data, self.model, (), where)

    def environment(self, environ: Mapping[str, str], prefix: str, allowed: Iterable[str] = ()) -> None:
        """Every ``<prefix>*`` variable: a setting (nested with ``__``, case-insensitive), a variable in
        ``allowed``, a venue's credentials (``<prefix><VENUE>_API_KEY``...), or one a setting names."""
        allowed_names = {name.upper() for name in allowed}
        unknown: list[tuple[str, str]] = []
        for name, value in environ.items():
            upper = name.upper()
            if not upper.startswith(prefix) or upper in allowed_names or _CREDENTIAL.match(upper):
                continue
            problem = self._variable(name, upper[len(prefix) :].lower(), value, prefix)
            if problem is not None:
                unknown.append((upper, problem))
        named = {n.upper() for n in self.named_variables}
        self.problems += [problem for upper, problem in unknown if upper not in named]

    def raise_if_unknown(self) -> None:
        if self.problems:
            raise UnknownSettingError("\n".join(self.problems))

    # -------------------------------------------------------------------------------------------

    def _walk(self, value: Any, annotation: Any, path: Path_, where: str) -> None:
        shape = _shape(annotation)
        if shape.kind == "model" and isinstance(value, Mapping):
            fields = _fields(shape.inner)
            for key, sub in value.items():
                if key not in fields:
                    self._unknown_key(where, path, str(key), fields)
                    continue
                if str(key).endswith("_env") and isinstance(sub, str):
                    self.named_variables.add(sub)
                self._walk(sub, fields[key], (*path, key), where)
        elif shape.kind == "dict" and isinstance(value, Mapping):
            for key, sub in value.items():
                self._walk(sub, shape.inner, (*path, key), where)
        elif shape.kind == "list" and isinstance(value, list):
            for index, item in enumerate(value):
                self._walk(item, shape.inner, (*path, index), where)

    def _unknown_key(self, where: str, path: Path_, key: str, fields: Mapping[str, Any]) -> None:
        near = _nearest(key, fields)
        hint = (
            f"did you mean {dotted((*path, near))!r}?"
            if near
            else f"valid here: {', '.join(sorted(fields))}"
            if len(fields) <= 12
            else "no setting is named like it (`trader config` lists them all)"
        )
        self.problems.append(f"{where}: unknown setting {dotted((*path, key))!r}; {hint}")

    def _variable(self, name: str, rest: str, value: str, prefix: str) -> str | None:
        """The problem with one environment variable, or None; walks a JSON value it sets."""
        parts = rest.split("__")
        annotation: Any = self.model
        for depth, part in enumerate(parts):
            shape = _shape(annotation)
            if shape.kind == "model" and part in (fields := _fields(shape.inner)):
                annotation = fields[part]
            elif shape.kind == "dict" and part:
                annotation = shape.inner
            else:
                return self._unknown_variable(name, parts, depth, annotation, prefix)
        if parts[-1].endswith("_env"):
            self.named_variables.add(value)
        if _shape(annotation).kind != "leaf":
            try:
                decoded = json.loads(value)
            except ValueError:
                return None  # pydantic-settings says the value is not JSON
            self._walk(decoded, annotation, tuple(parts), f"environment variable {name}")
        return None

    def _unknown_variable(self, name: str, parts: list[str], depth: int, annotation: Any, prefix: str) -> str:
        shape = _shape(annotation)
        known = dotted(tuple(parts[:depth]))
        if shape.kind == "dict":  # only an empty key stops at a dict
            return f"environment variable {name}: a key is missing after {known!r}"
        if shape.kind != "model":
            what = "a list, set whole (as JSON), not by item" if shape.kind == "list" else "a single value"
            return f"environment variable {name}: {known!r} is {what}: it has no {parts[depth]!r}"
        head = "__".join(parts[:depth])
        near = _nearest("__".join(parts[depth:]), _sections(shape.inner))
        suggestion = f"{prefix}{head}__{near}" if head else f"{prefix}{near}"
        hint = f"did you mean {suggestion.upper()}?" if near else self._credential_hint(name)
        return f"environment variable {name}: unknown setting {dotted(tuple(parts))!r}; {hint}"

    @staticmethod
    def _credential_hint(name: str) -> str:
        venue, sep, suffix = name.upper().rpartition("_API_")
        near = _nearest(suffix, [s.removeprefix("API_") for s in CREDENTIAL_SUFFIXES]) if sep else None
        if near:
            return f"did you mean {venue}_API_{near} (a venue's credentials)?"
        return "no setting is named like it (`trader config` lists them all)"


# Where each value in force came from -------------------------------------------------------------


@dataclass(frozen=True)
class Source:
    kind: Literal["default", "env", "file", "argument"]
    origin: str | None = None  # the variable's name, or the file's path

    def __str__(self) -> str:
        if self.kind == "env":
            return f"environment variable {self.origin}"
        if self.kind == "file":
            return f"file {self.origin}"
        return self.kind


def leaves(value: Any, path: Path_ = ()) -> Iterator[tuple[Path_, Any]]:
    """The scalars of a dumped model (and its empty dicts and lists), each with its path."""
    if isinstance(value, dict) and value:
        for key, sub in value.items():
            yield from leaves(sub, (*path, key))
    elif isinstance(value, list) and value and any(isinstance(v, dict | list) for v in value):
        for index, item in enumerate(value):
            yield from leaves(item, (*path, index))
    else:
        yield path, value


def _holds(data: Any, path: Path_, *, fold_case: bool = False) -> bool:
    for part in path:
        if isinstance(part, int):
            if not isinstance(data, list) or part >= len(data):
                return False
            data = data[part]
            continue
        if not isinstance(data, Mapping):
            return False
        keys = {str(k).lower() if fold_case else k: k for k in data}
        key = keys.get(part.lower() if fold_case else part)
        if key is None:
            return False
        data = data[key]
    return True


def value_sources(
    model: type[BaseModel],
    dumped: Mapping[str, Any],
    *,
    environ: Mapping[str, str],
    prefix: str,
    file_data: Mapping[str, Any] | None = None,
    file_name: str | None = None,
    arguments: Mapping[str, Any] | None = None,
) -> dict[Path_, Source]:
    """For each leaf of ``dumped`` (``model_dump(mode="json")``), the source that set it, in
    pydantic-settings' precedence: arguments, then the environment, then the file, else the default.
    The most specific environment variable wins (``A__B`` over a JSON ``A``)."""
    variables = _setting_variables(model, environ, prefix)
    sources: dict[Path_, Source] = {}
    for path, _value in leaves(dumped):
        sources[path] = _source_of(path, variables, file_data, file_name, arguments)
    return sources


def _source_of(
    path: Path_,
    variables: list[tuple[str, tuple[str, ...], Any]],
    file_data: Mapping[str, Any] | None,
    file_name: str | None,
    arguments: Mapping[str, Any] | None,
) -> Source:
    if arguments and _holds(arguments, path):
        return Source("argument")
    lowered = tuple(p.lower() if isinstance(p, str) else p for p in path)
    for name, parts, decoded in variables:  # the most specific first
        if lowered[: len(parts)] != parts:
            continue
        if len(parts) == len(path) or _holds(decoded, path[len(parts) :], fold_case=True):
            return Source("env", name)
    if file_data is not None and _holds(file_data, path):
        return Source("file", file_name)
    return Source("default")


def _setting_variables(
    model: type[BaseModel], environ: Mapping[str, str], prefix: str
) -> list[tuple[str, tuple[str, ...], Any]]:
    """The variables that set a setting: name, lowercased path, JSON-decoded value (when it decodes);
    deepest paths first."""
    check = KeyCheck(model)
    found: list[tuple[str, tuple[str, ...], Any]] = []
    for name, value in environ.items():
        upper = name.upper()
        if not upper.startswith(prefix):
            continue
        rest = upper[len(prefix) :].lower()
        if check._variable(name, rest, value, prefix) is not None:
            continue
        try:
            decoded: Any = json.loads(value)
        except ValueError:
            decoded = value
        found.append((name, tuple(rest.split("__")), decoded))
    return sorted(found, key=lambda item: -len(item[1]))
