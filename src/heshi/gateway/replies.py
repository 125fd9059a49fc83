"""What Heshi sends back: JSON answers, errors, refusals, and server-sent event streams.

Streams (:class:`SSEReply`): validation, admission, routing and the engine's first chunk
all happen before the response starts, so every error up to that point is a normal HTTP
error. After the first byte an error becomes one ``data: {"error": …}`` frame followed by
``data: [DONE]``. However a stream ends — done, broken, or its client gone before or
during it — the reply closes the backend's stream and records the request, and it does
so before the last frame is sent: a client that saw the stream end has been metered.
"""

from __future__ import annotations

import logging
import math
import time
from collections.abc import Mapping
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, Literal, TypedDict

import anyio
import anyio.lowlevel
import orjson
from starlette.responses import Response
from starlette.types import Receive, Scope, Send

from heshi.engines.base import JSON
from heshi.errors import ClientGone, HeshiError

if TYPE_CHECKING:
    from heshi.gateway.pipeline import OpenStream

log = logging.getLogger("heshi.gateway")

DONE = b"data: [DONE]\n\n"
Kind = Literal["chat", "completions"]
_SSE_HEADERS = {"cache-control": "no-cache", "x-accel-buffering": "no"}


class ErrorDetail(TypedDict):
    """``error`` of an OpenAI-style error body."""

    message: str
    type: str
    param: str | None
    code: str | None


class ErrorBody(TypedDict):
    """``{"error": {...}}`` — every error Heshi answers with."""

    error: ErrorDetail


def error_body(exc: HeshiError) -> bytes:
    """The OpenAI-style error JSON of ``exc``, as bytes."""
    body: ErrorBody = {
        "error": {
            "message": exc.message,
            "type": exc.error_type,
            "param": exc.param,
            "code": exc.code,
        }
    }
    return orjson.dumps(body)


def error_reply(exc: HeshiError, headers: Mapping[str, str] | None = None) -> Response:
    """The HTTP response for a typed error, with ``Retry-After`` when one is known."""
    out = dict(headers or {})
    retry_after = getattr(exc, "retry_after", None)
    if isinstance(retry_after, int | float):
        out["retry-after"] = str(max(1, math.ceil(retry_after)))
    return Response(
        error_body(exc), status_code=exc.status_code, headers=out, media_type="application/json"
    )


def json_reply(data: Any, status: int = 200, headers: Mapping[str, str] | None = None) -> Response:
    """A JSON response serialised with orjson."""
    return Response(orjson.dumps(data), status, headers=headers, media_type="application/json")


# -- refusals ---------------------------------------------------------------------------


@dataclass(frozen=True)
class Refusal:
    """An answer Heshi gives instead of the model (a blocked prompt): a normal completion
    whose text is ``text`` and whose ``finish_reason`` is ``content_filter``, streamed when
    the request asked for a stream, so every OpenAI client shows it like any answer."""

    text: str

    def payload(self, kind: Kind, model: str, rid: str, stream: bool) -> JSON:
        """The completion (or the one chunk of a stream) carrying the refusal."""
        out: JSON = {"id": rid, "object": "", "created": int(time.time()), "model": model}
        if kind == "completions":
            out["object"] = "text_completion"
            out["choices"] = [{"index": 0, "text": self.text, "finish_reason": "content_filter"}]
        else:
            message = {"role": "assistant", "content": self.text}
            field = "delta" if stream else "message"
            out["object"] = "chat.completion.chunk" if stream else "chat.completion"
            out["choices"] = [{"index": 0, field: message, "finish_reason": "content_filter"}]
        if not stream:
            out["usage"] = {"prompt_tokens": 0, "completion_tokens": 0, "total_tokens": 0}
        return out

    def reply(
        self, kind: Kind, model: str, rid: str, stream: bool, headers: Mapping[str, str]
    ) -> Response:
        """The refusal as an HTTP response (JSON, or a two-frame event stream)."""
        payload = orjson.dumps(self.payload(kind, model, rid, stream))
        if not stream:
            return Response(payload, 200, headers=headers, media_type="application/json")
        body = b"data: " + payload + b"\n\n" + DONE
        sse = {**_SSE_HEADERS, **headers}
        return Response(body, 200, headers=sse, media_type="text/event-stream")


# -- streams ----------------------------------------------------------------------------


class SSEReply(Response):
    """An ASGI response streaming an :class:`OpenStream` as server-sent events.

    A second task watches the connection: when the client leaves, the backend is told to
    stop at once (not at the next chunk, which may be a long prefill away). Whatever
    happens, :meth:`OpenStream.close` runs — the backend's stream is closed and the
    request recorded — even if this reply is cancelled.
    """

    media_type = "text/event-stream"

    def __init__(self, stream: OpenStream, headers: Mapping[str, str]) -> None:
        self.stream = stream
        self.status_code = 200
        self.background = None
        self.init_headers({**_SSE_HEADERS, **headers})
        self._role_sent = False
        self._gone = False
        self._ended = False  # the last frame is being sent: a disconnect now changes nothing

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        try:
            async with anyio.create_task_group() as tasks:
                tasks.start_soon(self._watch, receive)
                await self._send_all(send)
                tasks.cancel_scope.cancel()
        finally:
            await self.stream.close()

    async def _watch(self, receive: Receive) -> None:
        while (await receive())["type"] != "http.disconnect":
            pass
        self._client_gone()

    def _client_gone(self) -> None:
        if not self._gone and not self._ended:
            self._gone = True
            self.stream.x.fail(ClientGone("client closed the connection"))
            self.stream.abort()

    async def _send_all(self, send: Send) -> None:
        x = self.stream.x
        try:
            # Let the watcher look first: a client that left while the backend was still
            # preparing the first chunk is found before anything is sent.
            await anyio.lowlevel.checkpoint()
            start = {"type": "http.response.start", "status": 200, "headers": self.raw_headers}
            await send(start)
            last = DONE
            try:
                async for chunk in self.stream.chunks:
                    if self._gone:
                        break
                    shaped = self._shape(chunk)
                    if shaped is not None:
                        frame = b"data: " + orjson.dumps(shaped) + b"\n\n"
                        await send({"type": "http.response.body", "body": frame, "more_body": True})
                    # A send to a gone client returns at once: give the watcher its turn.
                    await anyio.lowlevel.checkpoint()
            except HeshiError as exc:
                x.fail(exc)
                last = b"data: " + error_body(exc) + b"\n\n" + DONE
            await self.stream.close()  # recorded before the client sees the end
            self._ended = True
            await send({"type": "http.response.body", "body": last, "more_body": False})
        except OSError:  # the client went away while we were writing to it
            self._client_gone()
        except BaseException as exc:
            x.fail(exc)
            raise

    def _shape(self, chunk: JSON) -> JSON | None:
        """A chunk as the client sees it: the public model name, the role on the first
        chat delta, the usage chunk only when asked for; None drops it."""
        x = self.stream.x
        chunk["model"] = x.model
        if not self._role_sent and chunk.get("object") == "chat.completion.chunk":
            # llama.cpp skips the role delta when the first token is half a character.
            for choice in chunk.get("choices") or ():
                delta = choice.get("delta")
                if isinstance(delta, dict):
                    delta.setdefault("role", "assistant")
                    self._role_sent = True
        if x.first_token_at is None and _has_text(chunk):
            x.first_token_at = time.perf_counter()
        if chunk.get("usage") and not x.include_usage:
            if not chunk.get("choices"):
                return None
            chunk.pop("usage", None)
        return chunk


def _has_text(chunk: JSON) -> bool:
    for choice in chunk.get("choices") or ():
        delta = choice.get("delta")
        if isinstance(delta, dict) and (delta.get("content") or delta.get("reasoning_content")):
            return True
        if choice.get("text"):
            return True
    return False
