"""A bound on admin request bodies, applied before the admin API parses them."""

from __future__ import annotations

import re

from starlette.types import ASGIApp, Message, Receive, Scope, Send

from heshi.errors import InvalidRequest
from heshi.gateway.edge import MAX_JSON_DEPTH, BodyTooLarge
from heshi.gateway.replies import error_reply

MAX_BODY_BYTES = 64 * 1024  # the largest admin request is a key with a list of models


class BoundedBody:
    """Admin requests are small JSON: a body is read whole before the app sees it and
    refused past ``limit`` bytes (and past 64 levels of nesting), so no admin request
    can make the gateway hold a large or deep body in memory. POSTs to a path matching
    ``streamed`` (uploads) reach the app unread: their route bounds them as they arrive."""

    def __init__(
        self, app: ASGIApp, limit: int = MAX_BODY_BYTES, streamed: re.Pattern[str] | None = None
    ) -> None:
        self.app = app
        self.limit = limit
        self.streamed = streamed

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http" or (
            self.streamed is not None
            and scope["method"] == "POST"
            and self.streamed.search(scope["path"])
        ):
            await self.app(scope, receive, send)
            return
        chunks: list[bytes] = []
        size, more = 0, True
        while more:
            message = await receive()
            if message["type"] == "http.disconnect":
                return
            chunk = message.get("body", b"")
            size += len(chunk)
            if size > self.limit:
                too_big = BodyTooLarge(
                    f"请求体超过 {self.limit} 字节 / request body exceeds {self.limit} bytes"
                )
                await error_reply(too_big)(scope, receive, send)
                return
            chunks.append(chunk)
            more = bool(message.get("more_body", False))
        body = b"".join(chunks)
        if _depth(body) > MAX_JSON_DEPTH:
            deep = InvalidRequest(
                f"JSON 嵌套超过 {MAX_JSON_DEPTH} 层 / JSON nested deeper than {MAX_JSON_DEPTH}"
            )
            await error_reply(deep)(scope, receive, send)
            return
        replayed = False

        async def replay() -> Message:
            nonlocal replayed
            if not replayed:
                replayed = True
                return {"type": "http.request", "body": body, "more_body": False}
            return await receive()

        await self.app(scope, replay, send)


def _depth(body: bytes) -> int:
    """How deep brackets nest in ``body`` (strings ignored): a bound checked in one pass."""
    depth = deepest = 0
    in_string = escaped = False
    for byte in body:
        if in_string:
            if escaped:
                escaped = False
            elif byte == 0x5C:  # backslash
                escaped = True
            elif byte == 0x22:  # quote
                in_string = False
        elif byte == 0x22:
            in_string = True
        elif byte in (0x5B, 0x7B):  # [ {
            depth += 1
            deepest = max(deepest, depth)
        elif byte in (0x5D, 0x7D):
            depth -= 1
    return deepest
