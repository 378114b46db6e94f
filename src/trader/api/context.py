"""What the routes are handed (``request.app.state.ctx``): the view, the live hub, the tokens, and the
service's ways to the bus and the stores. The service fills it in at its start; until then the routes
that need the bus answer 503."""

from __future__ import annotations

import secrets
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from typing import Any

import msgspec
from fastapi import HTTPException
from fastapi.responses import Response
from nats.js import JetStreamContext

from trader.api.auth import Principal, RateLimiter, TokenRing
from trader.api.live import Hub
from trader.api.view import ApiView
from trader.config import Settings
from trader.messages import OperatorAction, OperatorOutcome

_encoder = msgspec.json.Encoder()  # decimals as strings: exact in JavaScript too


class JSON(Response):
    """JSON by msgspec: messages and Decimals as they are (decimals as strings), fast for long lists."""

    media_type = "application/json"

    def render(self, content: Any) -> bytes:
        return _encoder.encode(content)


Record = Callable[[OperatorAction], Awaitable[None]]
Subscribe = Callable[[set[str]], Awaitable[None]]


@dataclass
class ApiContext:
    settings: Settings
    tokens: TokenRing
    limiter: RateLimiter
    view: ApiView = field(default_factory=ApiView)
    hub: Hub = field(default_factory=Hub)
    token_problem: str | None = None  # why no token can be used (the token file's problem)
    js: JetStreamContext | None = None  # set once connected
    record: Record | None = None  # publishes an operator action (and waits for it to be stored)
    follow_market: Subscribe | None = None  # brings the market subscriptions in line with the hub's

    def bus(self) -> JetStreamContext:
        if self.js is None:
            raise HTTPException(503, "the api is starting: not connected to NATS yet")
        return self.js

    async def act(
        self,
        who: Principal,
        action: str,
        params: dict[str, Any],
        outcome: OperatorOutcome,
        detail: str | None = None,
    ) -> OperatorAction:
        """Record what an operator did (who by the token's name), on the OPERATOR stream."""
        from trader.control.actions import now_ms

        recorded = OperatorAction(
            action_id=f"{action}-{now_ms()}-{secrets.token_hex(4)}",
            actor=who.name,
            role=who.role,
            action=action,
            params={k: str(v) for k, v in params.items() if v is not None},
            outcome=outcome,
            detail=detail,
            timestamp=now_ms(),
        )
        if self.record is None:
            raise HTTPException(503, "the api is starting")
        await self.record(recorded)
        return recorded
