"""The one place errors become HTTP responses (OpenAI-style error JSON)."""

from __future__ import annotations

import logging
import math

import orjson
from starlette.exceptions import HTTPException
from starlette.requests import Request
from starlette.responses import Response

from heshi.errors import HeshiError

log = logging.getLogger("heshi.gateway")


def error_body(exc: HeshiError) -> bytes:
    """``{"error": {"message", "type", "param", "code"}}`` as bytes."""
    return orjson.dumps(
        {
            "error": {
                "message": exc.message,
                "type": exc.error_type,
                "param": exc.param,
                "code": exc.code,
            }
        }
    )


def error_response(exc: HeshiError) -> Response:
    """The HTTP response for a typed error, with its headers (``Retry-After`` when one
    is known, the route a failed request took)."""
    headers = dict(exc.headers or {})
    retry_after = getattr(exc, "retry_after", None)
    if isinstance(retry_after, int | float):
        headers["retry-after"] = str(max(1, math.ceil(retry_after)))
    return Response(
        error_body(exc), status_code=exc.status_code, headers=headers, media_type="application/json"
    )


async def on_heshi_error(request: Request, exc: Exception) -> Response:
    """Starlette exception handler for ``HeshiError``."""
    assert isinstance(exc, HeshiError)
    if exc.status_code >= 500:
        log.warning("%s %s -> %d: %s", request.method, request.url.path, exc.status_code, exc)
    return error_response(exc)


async def on_unexpected(request: Request, exc: Exception) -> Response:
    """Anything else is our bug: log it with a traceback, answer a generic 500."""
    log.exception("unhandled error on %s %s", request.method, request.url.path)
    return error_response(HeshiError("内部错误 / internal server error"))


async def on_http_error(request: Request, exc: Exception) -> Response:
    """Starlette's own 404/405 as OpenAI-style JSON too."""
    assert isinstance(exc, HTTPException)
    err = HeshiError(f"{request.method} {request.url.path}: {exc.detail}")
    err.status_code = exc.status_code
    err.error_type = "invalid_request_error"
    err.code = "not_found" if exc.status_code == 404 else "method_not_allowed"
    return error_response(err)
