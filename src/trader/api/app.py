"""The api's FastAPI app: the runtime's probes (``/health`` and ``/ready`` open, ``/metrics`` with a
token), the reads, the actions, the WebSocket, OpenAPI at ``/docs`` and the dashboard at
``/dashboard/``."""

from __future__ import annotations

from fastapi import FastAPI
from fastapi.middleware.cors import CORSMiddleware
from fastapi.routing import APIRoute
from starlette.responses import Response

from trader.api.context import ApiContext
from trader.api.dashboard import mount_dashboard
from trader.api.deps import Reader
from trader.api.routes import actions, live, reads

OPEN_PROBES = ("/health", "/ready")  # the supervisor and the compose health check ask without a token

DESCRIPTION = """The operator api of `trader`: every path but `/health` and `/ready` needs
`Authorization: Bearer <token>`; a read token reads, a trade token also acts. Decimals are strings,
times epoch milliseconds. See docs/api.md for the WebSocket protocol at `/api/ws`."""


def build_app(ctx: ApiContext, probes: FastAPI) -> FastAPI:
    app = FastAPI(title="trader api", version="1", description=DESCRIPTION, docs_url="/docs", redoc_url=None)
    app.state.ctx = ctx
    if ctx.settings.api.cors_origins:  # named origins only: never "*"
        app.add_middleware(
            CORSMiddleware,
            allow_origins=list(ctx.settings.api.cors_origins),
            allow_methods=["GET", "POST", "DELETE"],
            allow_headers=["Authorization", "Content-Type"],
        )
    for route in probes.routes:
        if isinstance(route, APIRoute) and route.path in OPEN_PROBES:
            app.router.routes.append(route)
    metrics = next(r for r in probes.routes if isinstance(r, APIRoute) and r.path == "/metrics")

    @app.get("/metrics", tags=["probes"], summary="Prometheus metrics (a read token)")
    def _metrics(_: Reader) -> Response:
        return metrics.endpoint()

    app.include_router(reads.router)
    app.include_router(actions.router)
    app.include_router(live.router)
    mount_dashboard(app)  # last: the api's own paths first
    return app
