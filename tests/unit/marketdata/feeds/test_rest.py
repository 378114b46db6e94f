"""REST within the venue's limits: the token bucket, and retries that respect Retry-After."""

from __future__ import annotations

import time

import httpx
import pytest

from trader.marketdata.feeds.rest import RestClient, RestError, TokenBucket


class Clock:
    def __init__(self) -> None:
        self.now = 100.0

    def __call__(self) -> float:
        return self.now


def test_the_bucket_allows_a_burst_then_the_rate() -> None:
    clock = Clock()
    bucket = TokenBucket(rate=2.0, burst=3, clock=clock)
    assert [bucket.try_take() for _ in range(4)] == [True, True, True, False]
    assert bucket.wait_time() == pytest.approx(0.5)
    clock.now += 0.5
    assert bucket.try_take()
    assert not bucket.try_take()
    clock.now += 100  # a long pause refills up to the burst, no more
    assert sum(bucket.try_take() for _ in range(10)) == 3


def test_a_bucket_needs_a_rate_and_a_burst() -> None:
    with pytest.raises(ValueError, match="rate"):
        TokenBucket(rate=0, burst=1)


def _client(handler: httpx.MockTransport, rate: float = 100.0, burst: int = 10) -> RestClient:
    client = RestClient("http://venue.test", rate, burst)
    client._client = httpx.AsyncClient(base_url="http://venue.test", transport=handler)
    return client


async def test_numbers_are_exact_and_429_is_retried_after_its_delay() -> None:
    calls: list[float] = []

    def respond(request: httpx.Request) -> httpx.Response:
        calls.append(time.monotonic())
        if len(calls) == 1:
            return httpx.Response(429, headers={"Retry-After": "0.2"})
        assert request.url.params["symbol"] == "BTCUSDT"
        return httpx.Response(200, content=b'[{"price": 0.1, "qty": "2"}]')

    client = _client(httpx.MockTransport(respond))
    body = await client.get_json("/trades", {"symbol": "BTCUSDT"})
    await client.aclose()
    assert str(body[0]["price"]) == "0.1"  # a Decimal, never the float 0.1000000000000000055...
    assert calls[1] - calls[0] >= 0.19
    assert client.requests == 2


async def test_requests_are_paced_by_the_bucket() -> None:
    client = _client(httpx.MockTransport(lambda r: httpx.Response(200, json=[])), rate=10.0, burst=1)
    started = time.monotonic()
    for _ in range(4):
        await client.get_json("/x", {})
    await client.aclose()
    assert time.monotonic() - started >= 0.28  # 3 waits of 0.1 s after the first token


async def test_a_refusal_is_an_error_and_retries_end() -> None:
    client = _client(httpx.MockTransport(lambda r: httpx.Response(400, text="bad symbol")))
    with pytest.raises(RestError, match="HTTP 400 bad symbol"):
        await client.get_json("/x", {})
    busy = _client(httpx.MockTransport(lambda r: httpx.Response(503, headers={"Retry-After": "0"})))
    with pytest.raises(RestError, match="gave up after 3"):
        await busy.get_json("/x", {})
    await client.aclose()
    await busy.aclose()
