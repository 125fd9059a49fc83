"""The web console at ``/console``: static pages shipped in the package, no build step.

The page is one HTML file, one stylesheet and two plain ES modules (``static/``); it signs
in with an admin token and then calls the admin API (``/admin/v1``) with a session cookie
(docs/console.md). A strict Content-Security-Policy allows only the console's own files:
no inline script, nothing from another origin, no framing.
"""

from __future__ import annotations

from importlib import resources
from pathlib import Path

from starlette.requests import Request
from starlette.responses import FileResponse, RedirectResponse, Response
from starlette.routing import BaseRoute, Mount, Route
from starlette.staticfiles import StaticFiles

STATIC = Path(str(resources.files("heshi.web").joinpath("static")))
SECURITY_HEADERS = {
    "content-security-policy": (
        "default-src 'self'; script-src 'self'; style-src 'self'; img-src 'self' data:; "
        "connect-src 'self'; frame-ancestors 'none'; base-uri 'none'; form-action 'self'"
    ),
    "x-content-type-options": "nosniff",
    "referrer-policy": "no-referrer",
    "cache-control": "no-cache",
}


class _Static(StaticFiles):
    """The console's files, with the same security headers as its page."""

    def file_response(self, *args: object, **kwargs: object) -> Response:
        response = super().file_response(*args, **kwargs)  # type: ignore[arg-type]
        response.headers.update(SECURITY_HEADERS)
        return response


async def page(request: Request) -> Response:
    return FileResponse(STATIC / "index.html", headers=SECURITY_HEADERS)


async def to_console(request: Request) -> Response:
    return RedirectResponse("/console", status_code=302)


def console_routes() -> list[BaseRoute]:
    """``/console`` and its files; ``/`` and ``/ui`` lead to it."""
    return [
        Route("/console", page, methods=["GET"]),
        Mount("/console/static", app=_Static(directory=STATIC), name="console-static"),
        Route("/", to_console, methods=["GET"]),
        Route("/ui", to_console, methods=["GET"]),
    ]
