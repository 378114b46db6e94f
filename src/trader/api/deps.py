"""The routes' dependencies: the context, who is calling (401 without a known token, 403 for a read
token on an action), and the order rate limit (429)."""

from __future__ import annotations

from typing import Annotated

from fastapi import Depends, HTTPException, Request
from fastapi.security import HTTPAuthorizationCredentials, HTTPBearer

from trader.api.auth import Principal
from trader.api.context import ApiContext

_bearer = HTTPBearer(auto_error=False, description="A read or trade token (docs/api.md)")
_CHALLENGE = {"WWW-Authenticate": "Bearer"}


def context(request: Request) -> ApiContext:
    return request.app.state.ctx


def caller(
    request: Request, credentials: Annotated[HTTPAuthorizationCredentials | None, Depends(_bearer)]
) -> Principal:
    """Any known token (read or trade)."""
    ctx = context(request)
    if credentials is None:
        raise HTTPException(
            401, "a bearer token is needed: Authorization: Bearer <token>", headers=_CHALLENGE
        )
    who = ctx.tokens.identify(credentials.credentials)
    if who is None:
        raise HTTPException(401, "unknown token", headers=_CHALLENGE)
    return who


def trader(who: Annotated[Principal, Depends(caller)]) -> Principal:
    """A trade token: a read token cannot act."""
    if not who.can_trade:
        raise HTTPException(403, f"token {who.name!r} has role read: acting needs a trade token")
    return who


def order_rate(request: Request, who: Annotated[Principal, Depends(trader)]) -> Principal:
    """A trade token within its order rate (``api.order_rate_per_s``, ``api.order_burst``)."""
    wait = context(request).limiter.take(who.name)
    if wait > 0:
        raise HTTPException(
            429,
            f"too many order requests: retry in {wait:.2f}s",
            headers={"Retry-After": str(max(1, round(wait)))},
        )
    return who


Ctx = Annotated[ApiContext, Depends(context)]
Reader = Annotated[Principal, Depends(caller)]
Trader = Annotated[Principal, Depends(trader)]
OrderTrader = Annotated[Principal, Depends(order_rate)]
