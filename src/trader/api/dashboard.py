"""The web dashboard: static files (``trader/api/static/``, shipped in the package) served by the api
at ``/dashboard/``; ``/`` sends a browser there. The files hold no data and need no token: the page
asks the api for everything with the token the operator types in (kept in the tab's sessionStorage).

Every answer carries a Content-Security-Policy that lets the page load scripts, styles and images from
the api only and talk to the api only (REST and the WebSocket), and no other site frame it (a halt
button must not be clickable through someone else's page).
"""

from __future__ import annotations

from pathlib import Path

from fastapi import FastAPI
from starlette.responses import RedirectResponse, Response
from starlette.staticfiles import StaticFiles
from starlette.types import Scope

STATIC_DIR = Path(__file__).parent / "static"
PATH = "/dashboard"

# Styles may be inline: lightweight-charts sets style attributes on the elements it creates.
CONTENT_SECURITY_POLICY = "; ".join(
    [
        "default-src 'none'",
        "script-src 'self'",
        "style-src 'self' 'unsafe-inline'",
        "img-src 'self' data:",
        "connect-src 'self'",
        "base-uri 'none'",
        "form-action 'none'",
        "frame-ancestors 'none'",
    ]
)
SECURITY_HEADERS = {
    "Content-Security-Policy": CONTENT_SECURITY_POLICY,
    "X-Content-Type-Options": "nosniff",
    "Referrer-Policy": "no-referrer",
    "X-Frame-Options": "DENY",
    "Cache-Control": "no-cache",  # revalidated (ETag) at each load: an upgrade is seen at once
}
JAVASCRIPT = (".js", ".mjs")


class DashboardFiles(StaticFiles):
    """The static files, with the security headers and JavaScript's type for ``.mjs`` on every
    platform (module scripts are refused under any other type)."""

    async def get_response(self, path: str, scope: Scope) -> Response:
        response = await super().get_response(path, scope)
        if path.endswith(JAVASCRIPT):
            response.headers["Content-Type"] = "text/javascript; charset=utf-8"
        response.headers.update(SECURITY_HEADERS)
        return response


def mount_dashboard(app: FastAPI) -> None:
    """``/dashboard/`` (index.html and its modules) and ``/`` redirecting there; neither in OpenAPI."""

    @app.get("/", include_in_schema=False)
    def _root() -> RedirectResponse:
        return RedirectResponse(f"{PATH}/", status_code=307)

    app.mount(PATH, DashboardFiles(directory=STATIC_DIR, html=True), name="dashboard")
