"""The HTTP edge: a request body read within its limits, parsed, and checked for shape.

Nothing here trusts the client: the body is counted while it arrives (a chunked upload
declares no length) and refused the moment it passes ``server.max_body_bytes``; JSON
nested deeper than :data:`MAX_JSON_DEPTH` is refused with the field named before
anything tries to walk or re-serialise it (orjson stops at 254 levels); a client that
disconnects mid-body is one INFO line, not a traceback.
"""

from __future__ import annotations

import logging
from collections.abc import AsyncIterator
from typing import Any

import orjson
from starlette.requests import ClientDisconnect, Request

from heshi.errors import ClientGone, HeshiError, InvalidRequest
from heshi.gateway.logs import Throttle

log = logging.getLogger("heshi.gateway")

MAX_JSON_DEPTH = 64  # a JSON schema or tool definition nests far less; orjson fails at 254


class BodyTooLarge(InvalidRequest):
    """The request body is larger than ``server.max_body_bytes`` (HTTP 400)."""

    reason = "body_too_large"


async def read_body(request: Request, limit: int) -> bytes:
    """The whole body, read chunk by chunk and refused as soon as it passes ``limit``.

    Raises ``BodyTooLarge`` (the connection is then closed, so the rest is never read)
    and ``ClientGone`` when the client disconnects before the body ends.
    """
    too_big = BodyTooLarge(f"请求体超过 {limit} 字节 / request body exceeds {limit} bytes")
    return b"".join([piece async for piece in limited_stream(request, limit, too_big)])


def limited_stream(request: Request, limit: int, too_big: BodyTooLarge) -> AsyncIterator[bytes]:
    """The body's pieces as they arrive, counted (a chunked upload declares no length):
    ``too_big`` is raised at once when the declared length passes ``limit``, else as soon
    as the pieces do; ``ClientGone`` when the client disconnects before the body ends."""
    declared = request.headers.get("content-length")
    if declared is not None and declared.isdigit() and int(declared) > limit:
        raise too_big
    return _counted(request, limit, too_big)


async def _counted(request: Request, limit: int, too_big: BodyTooLarge) -> AsyncIterator[bytes]:
    size = 0
    try:
        async for piece in request.stream():
            size += len(piece)
            if size > limit:
                raise too_big
            yield piece
    except ClientDisconnect:
        raise ClientGone("客户端在请求体读完前断开 / client disconnected mid-body") from None


def parse_json(raw: bytes, what: tuple[str, str] = ("请求体", "body")) -> Any:
    """``raw`` as JSON, no deeper than :data:`MAX_JSON_DEPTH`; ``InvalidRequest`` otherwise.
    ``what`` names ``raw`` in the error, in Chinese and English."""
    try:
        data = orjson.loads(raw)
    except orjson.JSONDecodeError as exc:
        raise InvalidRequest(f"{what[0]}不是合法 JSON / malformed JSON {what[1]}: {exc}") from None
    # Nesting cannot be deeper than the number of brackets: most bodies are checked by
    # two C-level counts instead of a walk.
    openers = raw.count(b"{") + raw.count(b"[")
    too_deep = _too_deep(data) if openers > MAX_JSON_DEPTH else None
    if too_deep is not None:
        raise InvalidRequest(
            f"字段 '{too_deep}' 的 JSON 嵌套超过 {MAX_JSON_DEPTH} 层 / "
            f"'{too_deep}' is nested deeper than {MAX_JSON_DEPTH} levels",
            param=too_deep,
        )
    return data


def _too_deep(data: Any) -> str | None:
    """The top-level field under which ``data`` nests deeper than the limit, if any.

    Iterative (a recursive walk would itself overflow on the input it must refuse)."""
    stack: list[tuple[Any, int, str]] = [(data, 1, "")]
    while stack:
        value, depth, field = stack.pop()
        if isinstance(value, dict):
            children: Any = value.items()
        elif isinstance(value, list):
            children = enumerate(value)
        else:
            continue
        if depth > MAX_JSON_DEPTH:
            return field or "body"
        for name, child in children:
            if isinstance(child, dict | list):
                stack.append((child, depth + 1, field or str(name)))
    return None


def client_gone_note(request: Request, request_id: str) -> None:
    """The one log line for a client that left before its request was read."""
    client = request.client.host if request.client else "-"
    log.info(
        "客户端在请求读完前断开 / client %s disconnected before its request was read (%s %s, %s)",
        client,
        request.method,
        request.url.path,
        request_id,
        extra={"request_id": request_id},
    )


def note_failure(request: Request, x_request_id: str, exc: HeshiError, throttle: Throttle) -> None:
    """The log line of a request that failed: one INFO line for a client that left; a
    throttled WARNING for a server-side failure (5xx), personal information in its message
    masked (a backend's message may quote what it was sent). The key store's outage is
    logged once by the authenticator itself."""
    if isinstance(exc, ClientGone):
        client_gone_note(request, x_request_id)
        return
    if exc.status_code < 500 or exc.reason == "auth.unavailable":
        return
    allowed, held = throttle.allow(exc.reason)
    if allowed:
        from heshi.guard.pii import masked

        message = masked(str(exc))
        more = f" (+{held} more like it)" if held else ""
        log.warning(
            "%s %s -> %d: %s%s",
            request.method,
            request.url.path,
            exc.status_code,
            message,
            more,
            extra={"request_id": x_request_id},
        )
