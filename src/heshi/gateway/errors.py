"""Starlette's exception handlers: errors no handler answered itself become OpenAI-style
error JSON (``heshi.gateway.replies.error_reply``), our bugs a generic 500."""

from __future__ import annotations

import logging

from starlette.exceptions import HTTPException
from starlette.requests import Request
from starlette.responses import Response

from heshi.errors import HeshiError
from heshi.gateway.replies import error_reply

log = logging.getLogger("heshi.gateway")


async def on_heshi_error(request: Request, exc: Exception) -> Response:
    """Starlette exception handler for ``HeshiError``."""
    assert isinstance(exc, HeshiError)
    if exc.status_code >= 500:
        log.warning("%s %s -> %d: %s", request.method, request.url.path, exc.status_code, exc)
    return error_reply(exc)


async def on_unexpected(request: Request, exc: Exception) -> Response:
    """Anything else is our bug: log it with a traceback, answer a generic 500."""
    log.exception("unhandled error on %s %s", request.method, request.url.path)
    return error_reply(HeshiError("内部错误 / internal server error"))


async def on_http_error(request: Request, exc: Exception) -> Response:
    """Starlette's own 404/405 as OpenAI-style JSON too."""
    assert isinstance(exc, HTTPException)
    err = HeshiError(f"{request.method} {request.url.path}: {exc.detail}")
    err.status_code = exc.status_code
    err.error_type = "invalid_request_error"
    err.code = "not_found" if exc.status_code == 404 else "method_not_allowed"
    return error_reply(err)
