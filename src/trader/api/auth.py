"""Who may call the api: bearer tokens, each with a name and a role, and the order rate limit.

Tokens come from the settings (``api.tokens``) or, when none is given there, from a secret file
(``api.token_file``, by default ``<data_dir>/secrets/api-tokens.json``) that `trader up` creates with a
random read token and trade token, mode 0600. A token is compared by the SHA-256 of what is presented
against every known one with ``hmac.compare_digest``, without stopping at a match, so the time taken
says nothing about which tokens exist. A token is never logged, printed or returned: only its name.
"""

from __future__ import annotations

import hashlib
import hmac
import json
import os
import secrets
import stat
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Literal

from trader.config import ApiToken, Settings

Role = Literal["read", "trade"]
TOKEN_FILE_MODE = 0o600


@dataclass(frozen=True, slots=True)
class Principal:
    """Who a request comes from: the token's name and role (never the token)."""

    name: str
    role: Role

    @property
    def can_trade(self) -> bool:
        return self.role == "trade"


class TokenError(ValueError):
    """The token file cannot be used (unreadable, malformed, or readable by others)."""


def _digest(token: str) -> bytes:
    return hashlib.sha256(token.encode()).digest()


class TokenRing:
    """The known tokens, by digest."""

    def __init__(self, tokens: list[ApiToken]) -> None:
        self._entries = [(_digest(t.token), Principal(t.name, t.role)) for t in tokens]  # type: ignore[arg-type]

    def __len__(self) -> int:
        return len(self._entries)

    def identify(self, presented: str | None) -> Principal | None:
        """The principal of a presented token; None for none or an unknown one."""
        if not presented:
            return None
        digest = _digest(presented)
        found = None
        for known, principal in self._entries:  # every entry compared: no early exit
            if hmac.compare_digest(known, digest):
                found = principal
        return found


def token_file_path(settings: Settings) -> Path:
    return settings.api.token_file or settings.data_dir / "secrets" / "api-tokens.json"


def load_tokens(settings: Settings) -> list[ApiToken]:
    """The settings' tokens, else the token file's (none when it does not exist); ``TokenError`` for a
    file that cannot be used. The message names the file, never a token."""
    if settings.api.tokens:
        return list(settings.api.tokens)
    path = token_file_path(settings)
    try:
        mode = path.stat().st_mode
    except FileNotFoundError:
        return []
    if mode & (stat.S_IRWXG | stat.S_IRWXO):
        raise TokenError(f"token file {path} is readable by others (mode {mode & 0o777:o}): chmod 600 it")
    try:
        body = json.loads(path.read_text())
        return [ApiToken.model_validate(t) for t in body["tokens"]]
    except (OSError, ValueError, KeyError, TypeError) as exc:
        raise TokenError(f"token file {path} cannot be read: {type(exc).__name__}") from None


def ensure_token_file(settings: Settings) -> Path | None:
    """Create the token file with a random trade token (``operator``) and read token (``viewer``), mode
    0600, unless the settings give tokens or the file exists. Returns its path when it created it."""
    if settings.api.tokens:
        return None
    path = token_file_path(settings)
    if path.exists():
        return None
    path.parent.mkdir(parents=True, exist_ok=True, mode=0o700)
    body = {
        "tokens": [
            {"name": "operator", "role": "trade", "token": secrets.token_urlsafe(32)},
            {"name": "viewer", "role": "read", "token": secrets.token_urlsafe(32)},
        ]
    }
    try:
        fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, TOKEN_FILE_MODE)
    except FileExistsError:  # made meanwhile by another process
        return None
    with os.fdopen(fd, "w") as out:
        json.dump(body, out, indent=2)
    return path


class RateLimiter:
    """A token bucket per caller: ``rate`` requests a second on average, ``burst`` at once."""

    def __init__(self, rate: float, burst: int, clock: Callable[[], float] = time.monotonic) -> None:
        self.rate, self.burst, self.clock = rate, burst, clock
        self._buckets: dict[str, tuple[float, float]] = {}  # caller -> (tokens, at)

    def take(self, caller: str) -> float:
        """0 when the request may go; else the seconds until it may."""
        now = self.clock()
        tokens, at = self._buckets.get(caller, (float(self.burst), now))
        tokens = min(float(self.burst), tokens + (now - at) * self.rate)
        if tokens >= 1:
            self._buckets[caller] = (tokens - 1, now)
            return 0.0
        self._buckets[caller] = (tokens, now)
        return (1 - tokens) / self.rate
