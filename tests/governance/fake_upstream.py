"""A fake OpenAI-compatible upstream (a real HTTP server on 127.0.0.1) for governance tests.

It answers chat, completions and embeddings as JSON, streams SSE (with a usage chunk
when asked), and on request misbehaves: it holds requests for as long as a test wants
(slower than any backend timeout) or drops the connection in the middle of a stream.
Every answer reports ``usage`` as the test configured it, so the tests know exactly
what the gateway must meter.
"""

from __future__ import annotations

import asyncio
import json
import threading
from collections.abc import AsyncIterator
from dataclasses import dataclass, field
from typing import Any

from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import JSONResponse, Response, StreamingResponse
from starlette.routing import Route

UPSTREAM_MODEL = "Qwen/Qwen3-8B"


@dataclass
class UpstreamState:
    """Knobs a test turns, and what the upstream saw."""

    prompt_tokens: int = 5  # reported in every usage object
    completion_tokens: int = 3  # reported when the request sets no max_tokens
    chunks: int = 3  # content chunks per stream
    reset_after: int | None = None  # streams: drop the connection after this many chunks
    hold: bool = False  # wait for ``release`` before answering (before a stream's 1st chunk)
    delay: float = 0.0  # seconds to wait before answering (to keep requests in flight)
    release: threading.Event = field(default_factory=threading.Event)
    calls: int = 0  # generation requests received
    bodies: list[dict[str, Any]] = field(default_factory=list)
    reply: str | None = None  # answer with this text (streams: in pieces of 2 characters)
    echo: bool = False  # answer with the last message's text, as the upstream received it

    def answer(self, body: dict[str, Any]) -> str | None:
        """The text to answer with, when a test set one (else the default replies)."""
        if self.echo:
            messages = body.get("messages") or [{"content": body.get("prompt", "")}]
            return str(messages[-1].get("content", ""))
        return self.reply

    def usage(self, body: dict[str, Any]) -> dict[str, int]:
        """What this upstream says a request cost."""
        completion = body.get("max_tokens") or self.completion_tokens
        total = self.prompt_tokens + completion
        return {
            "prompt_tokens": self.prompt_tokens,
            "completion_tokens": completion,
            "total_tokens": total,
        }

    async def wait_turn(self) -> None:
        """Delay or hold the current request as configured."""
        if self.hold:
            await asyncio.to_thread(self.release.wait)
        elif self.delay:
            await asyncio.sleep(self.delay)


def _sse(payload: dict[str, Any]) -> bytes:
    return b"data: " + json.dumps(payload, ensure_ascii=False).encode() + b"\n\n"


def _chunk(index: int, text: str | None = None) -> bytes:
    content = f"字{index}" if text is None else text
    return _sse(
        {
            "id": "chatcmpl-up",
            "object": "chat.completion.chunk",
            "created": 1,
            "model": UPSTREAM_MODEL,
            "choices": [{"index": 0, "delta": {"content": content}, "finish_reason": None}],
        }
    )


class UpstreamReset(Exception):
    """Raised inside a stream to make the server drop the connection mid-response."""


def fake_upstream_app(state: UpstreamState) -> Starlette:
    """The Starlette app of the fake upstream, driven by ``state``."""

    async def stream(body: dict[str, Any]) -> AsyncIterator[bytes]:
        await state.wait_turn()
        answer = state.answer(body)
        pieces = (
            [answer[i : i + 2] for i in range(0, len(answer), 2)]
            if answer is not None
            else [None] * state.chunks
        )
        for i, piece in enumerate(pieces):
            if state.reset_after is not None and i == state.reset_after:
                raise UpstreamReset("upstream dropped the connection mid-stream")
            yield _chunk(i, piece)
        if (body.get("stream_options") or {}).get("include_usage"):
            yield _sse(
                {
                    "id": "chatcmpl-up",
                    "object": "chat.completion.chunk",
                    "created": 1,
                    "model": UPSTREAM_MODEL,
                    "choices": [],
                    "usage": state.usage(body),
                }
            )
        yield b"data: [DONE]\n\n"

    async def generate(request: Request) -> Response:
        body = await request.json()
        state.calls += 1
        state.bodies.append(body)
        if body.get("stream"):
            return StreamingResponse(stream(body), media_type="text/event-stream")
        await state.wait_turn()
        if request.url.path.endswith("/completions") and "messages" not in body:
            text = state.answer(body)
            choice: dict[str, Any] = {
                "index": 0,
                "text": "好的" if text is None else text,
                "finish_reason": "stop",
            }
            kind = "text_completion"
        else:
            text = state.answer(body)
            message = {"role": "assistant", "content": "好的" if text is None else text}
            choice = {"index": 0, "message": message, "finish_reason": "stop"}
            kind = "chat.completion"
        return JSONResponse(
            {
                "id": "cmpl-up",
                "object": kind,
                "created": 1,
                "model": UPSTREAM_MODEL,
                "choices": [choice],
                "usage": state.usage(body),
            }
        )

    async def embeddings(request: Request) -> Response:
        body = await request.json()
        state.calls += 1
        state.bodies.append(body)
        tokens = state.prompt_tokens
        return JSONResponse(
            {
                "object": "list",
                "model": UPSTREAM_MODEL,
                "data": [{"object": "embedding", "index": 0, "embedding": [0.25, -0.5]}],
                "usage": {"prompt_tokens": tokens, "total_tokens": tokens},
            }
        )

    async def models(request: Request) -> Response:
        return JSONResponse({"object": "list", "data": [{"id": UPSTREAM_MODEL, "object": "model"}]})

    return Starlette(
        routes=[
            Route("/v1/chat/completions", generate, methods=["POST"]),
            Route("/v1/completions", generate, methods=["POST"]),
            Route("/v1/embeddings", embeddings, methods=["POST"]),
            Route("/v1/models", models, methods=["GET"]),
        ]
    )
