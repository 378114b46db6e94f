"""Tokens, roles and the order rate limit of the operator api."""

from __future__ import annotations

import json
import stat
from pathlib import Path

import pytest

from trader.api.auth import (
    Principal,
    RateLimiter,
    TokenError,
    TokenRing,
    ensure_token_file,
    load_tokens,
    token_file_path,
)
from trader.config import ApiToken, Settings

TRADE = "t" * 32
READ = "r" * 32


def _settings(tmp_path: Path, **api: object) -> Settings:
    return Settings(data_dir=tmp_path, api=api)


def test_a_token_is_known_by_its_value_only() -> None:
    ring = TokenRing(
        [ApiToken(name="op", role="trade", token=TRADE), ApiToken(name="v", role="read", token=READ)]
    )
    assert ring.identify(TRADE) == Principal("op", "trade")
    assert ring.identify(READ) == Principal("v", "read")
    assert not ring.identify(READ).can_trade
    for wrong in (None, "", READ[:-1], READ + "r", TRADE.upper()):
        assert ring.identify(wrong) is None


def test_a_token_is_never_in_the_settings_repr() -> None:
    token = ApiToken(name="op", role="trade", token=TRADE)
    assert TRADE not in repr(token)


def test_a_short_token_or_an_unknown_role_is_refused() -> None:
    with pytest.raises(ValueError, match="token"):
        ApiToken(name="op", role="trade", token="short")
    with pytest.raises(ValueError, match="role"):
        ApiToken(name="op", role="admin", token=TRADE)


def test_the_token_file_is_made_once_private_with_a_read_and_a_trade_token(tmp_path: Path) -> None:
    settings = _settings(tmp_path)
    path = ensure_token_file(settings)
    assert path == token_file_path(settings) == tmp_path / "secrets" / "api-tokens.json"
    assert stat.S_IMODE(path.stat().st_mode) == 0o600
    tokens = load_tokens(settings)
    assert {(t.name, t.role) for t in tokens} == {("operator", "trade"), ("viewer", "read")}
    assert len({t.token for t in tokens}) == 2
    before = path.read_bytes()
    assert ensure_token_file(settings) is None  # there already: left alone
    assert path.read_bytes() == before


def test_tokens_in_the_settings_win_and_no_file_is_made(tmp_path: Path) -> None:
    settings = _settings(tmp_path, tokens=[{"name": "ci", "role": "read", "token": READ}])
    assert ensure_token_file(settings) is None
    assert not token_file_path(settings).exists()
    assert [t.name for t in load_tokens(settings)] == ["ci"]


def test_a_token_file_others_can_read_is_refused_without_showing_a_token(tmp_path: Path) -> None:
    settings = _settings(tmp_path)
    path = ensure_token_file(settings)
    assert path is not None
    path.chmod(0o644)
    with pytest.raises(TokenError, match="chmod 600") as refused:
        load_tokens(settings)
    assert all(t["token"] not in str(refused.value) for t in json.loads(path.read_text())["tokens"])


def test_a_malformed_token_file_is_refused(tmp_path: Path) -> None:
    path = tmp_path / "tokens.json"
    path.write_text('{"tokens": [{"name": "x"}]}')
    path.chmod(0o600)
    with pytest.raises(TokenError, match="cannot be read"):
        load_tokens(_settings(tmp_path, token_file=str(path)))


def test_no_token_file_means_no_token(tmp_path: Path) -> None:
    assert load_tokens(_settings(tmp_path)) == []


def test_the_rate_limit_lets_a_burst_through_then_the_rate() -> None:
    now = [0.0]
    limiter = RateLimiter(rate=2.0, burst=3, clock=lambda: now[0])
    assert [limiter.take("op") for _ in range(3)] == [0.0, 0.0, 0.0]
    assert limiter.take("op") == pytest.approx(0.5)
    assert limiter.take("other") == 0.0  # each caller has its own bucket
    now[0] = 0.5
    assert limiter.take("op") == 0.0
    assert limiter.take("op") > 0
    now[0] = 100.0
    assert [limiter.take("op") for _ in range(4)].count(0.0) == 3  # never more than the burst
