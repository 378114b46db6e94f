"""REST calls to a venue within its rate limit: a token bucket per venue, exact decimals, 429 respected."""

from __future__ import annotations

import asyncio
import time
from collections.abc import Callable
from decimal import Decimal
from typing import Any

import httpx
import msgspec

_json = msgspec.json.Decoder(float_hook=Decimal)
RETRY_STATUSES = {418, 429, 500, 502, 503, 504}


class TokenBucket:
    """``rate`` requests a second on average, ``burst`` at once."""

    def __init__(self, rate: float, burst: int, clock: Callable[[], float] = time.monotonic) -> None:
        if rate <= 0 or burst < 1:
            raise ValueError("a token bucket needs rate > 0 and burst >= 1")
        self.rate, self.burst, self._clock = rate, burst, clock
        self._tokens = float(burst)
        self._updated = clock()

    def _refill(self) -> None:
        now = self._clock()
        self._tokens = min(self.burst, self._tokens + (now - self._updated) * self.rate)
        self._updated = now

    def wait_time(self) -> float:
        """Seconds until a token is there (0 when one is)."""
        self._refill()
        return 0.0 if self._tokens >= 1 else (1 - self._tokens) / self.rate

    def try_take(self) -> bool:
        self._refill()
        if self._tokens >= 1:
            self._tokens -= 1
            return True
        return False

    async def take(self) -> None:
        while not self.try_take():
            await asyncio.sleep(self.wait_time())


class RestError(RuntimeError):
    pass


class RestClient:
    """GETs JSON from one venue's base URL, each request paid for with a token."""

    def __init__(self, base_url: str, rate: float, burst: int, *, attempts: int = 3, timeout: float = 10.0):
        self.bucket = TokenBucket(rate, burst)
        self.attempts = attempts
        self.requests = 0
        self._client = httpx.AsyncClient(
            base_url=base_url.rstrip("/"), timeout=timeout, headers={"User-Agent": "trader-live-gateway"}
        )

    async def get_json(self, path: str, params: dict[str, str]) -> Any:
        last_error = ""
        for attempt in range(self.attempts):
            await self.bucket.take()
            self.requests += 1
            try:
                response = await self._client.get(path, params=params)
            except httpx.HTTPError as exc:
                last_error = repr(exc)
                await asyncio.sleep(0.2 * 2**attempt)
                continue
            if response.status_code in RETRY_STATUSES:
                last_error = f"HTTP {response.status_code}"
                await asyncio.sleep(_retry_after(response, 0.5 * 2**attempt))
                continue
            if response.status_code != 200:
                raise RestError(f"GET {path}: HTTP {response.status_code} {response.text[:200]}")
            try:
                return _json.decode(response.content)
            except msgspec.DecodeError as exc:
                raise RestError(f"GET {path}: malformed JSON ({exc})") from None
        raise RestError(f"GET {path}: gave up after {self.attempts} attempts ({last_error})")

    async def aclose(self) -> None:
        await self._client.aclose()


def _retry_after(response: httpx.Response, default: float) -> float:
    try:
        return min(60.0, max(0.0, float(response.headers.get("Retry-After", default))))
    except ValueError:
        return default
