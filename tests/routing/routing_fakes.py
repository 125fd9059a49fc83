"""Routing test doubles: real loopback upstreams that can be told to fail, and helpers.

``FakeUpstream`` is an aiohttp.web server on 127.0.0.1 playing a vLLM server. Its
``mode`` decides how it answers: ``ok``, ``500``, ``400``, ``hang`` (never answers),
``garbage`` (200 with HTML), ``cut`` (a stream that dies after its first chunk),
``empty`` (a stream with no chunks). ``down()``
closes its port (connections are refused) and ``up()`` opens the same port again.
``ScriptedEngine`` is a small in-test implementation of the Engine protocol for
breaker, balancer and ``auto`` tests where an HTTP upstream is not the point.
"""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from dataclasses import dataclass, field
from typing import Any

import orjson
from aiohttp import web

from heshi.config import HeshiConfig
from heshi.engines.base import JSON, ServedModel


def chunk(text: str) -> JSON:
    return {
        "object": "chat.completion.chunk",
        "choices": [{"index": 0, "delta": {"content": text}, "finish_reason": None}],
    }


def sse(obj: JSON) -> bytes:
    return b"data: " + orjson.dumps(obj) + b"\n\n"


@dataclass
class FakeUpstream:
    """One fake vLLM server; ``seen`` holds the bodies it received, in order."""

    name: str
    mode: str = "ok"
    seen: list[JSON] = field(default_factory=list)
    hold: asyncio.Event | None = None  # when set: ok-streams pause after chunk 1 until set
    port: int = 0
    runner: web.AppRunner | None = None
    site: web.TCPSite | None = None

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}/v1"

    async def start(self) -> None:
        app = web.Application()
        app.router.add_route("POST", "/v1/{tail:.*}", self._generate)
        app.router.add_route("GET", "/v1/models", self._models)
        # handler_cancellation: a hanging handler ends when the client gives up.
        self.runner = web.AppRunner(app, handler_cancellation=True, shutdown_timeout=0.2)
        await self.runner.setup()
        await self.up()

    async def up(self) -> None:
        assert self.runner is not None
        self.site = web.TCPSite(self.runner, "127.0.0.1", self.port, reuse_address=True)
        await self.site.start()
        self.port = self.runner.addresses[-1][1]

    async def down(self) -> None:
        """Stop listening: new connections are refused."""
        assert self.site is not None
        await self.site.stop()
        self.site = None

    async def close(self) -> None:
        if self.runner is not None:
            await self.runner.cleanup()

    async def _models(self, request: web.Request) -> web.StreamResponse:
        if self.mode == "500":
            return web.Response(status=500, text="boom")
        if self.mode == "hang":
            await asyncio.Event().wait()
        return web.json_response({"object": "list", "data": [{"id": "m"}]})

    async def _generate(self, request: web.Request) -> web.StreamResponse:
        body = await request.json()
        self.seen.append(body)
        if self.mode == "500":
            return web.Response(status=500, text="Internal Server Error")
        if self.mode == "400":
            err = {"message": "max_tokens is too large", "type": "BadRequestError"}
            return web.json_response({"error": err}, status=400)
        if self.mode == "hang":
            await asyncio.Event().wait()
        if self.mode == "garbage":
            return web.Response(text="<html>nginx</html>", content_type="text/html")
        if body.get("stream"):
            return await self._stream(request)
        answer = {"role": "assistant", "content": f"from {self.name}"}
        return web.json_response(
            {
                "object": "chat.completion",
                "model": body.get("model"),
                "choices": [{"index": 0, "message": answer, "finish_reason": "stop"}],
            }
        )

    async def _stream(self, request: web.Request) -> web.StreamResponse:
        resp = web.StreamResponse(headers={"Content-Type": "text/event-stream"})
        await resp.prepare(request)
        if self.mode == "empty":
            await resp.write(b"data: [DONE]\n\n")
            return resp
        await resp.write(sse(chunk(f"{self.name}-1")))
        if self.mode == "cut":
            assert request.transport is not None
            request.transport.close()  # the upstream process died mid-answer
            return resp
        if self.hold is not None:
            await self.hold.wait()
        await resp.write(sse(chunk(f"{self.name}-2")))
        await resp.write(b"data: [DONE]\n\n")
        return resp


def routing_config(
    *,
    routes: dict[str, Any] | None = None,
    aliases: dict[str, Any] | None = None,
    auto: dict[str, Any] | None = None,
    **routing: Any,
) -> HeshiConfig:
    """A config with only routing sections; engines are passed to the Router directly."""
    settings: dict[str, Any] = {"backoff_seconds": 0.0, **routing}
    settings["routes"] = routes or {}
    if auto is not None:
        settings["auto"] = auto
    return HeshiConfig.model_validate(
        {"engine": {"enabled": False}, "aliases": aliases or {}, "routing": settings}
    )


class ScriptedEngine:
    """An in-test Engine: answers from a script of outcomes, then succeeds.

    Each call pops the next outcome: an exception is raised, anything else is ignored
    and a normal answer naming this engine is returned. Streams yield two chunks and,
    if ``hold`` is given, wait on it between them.
    """

    def __init__(self, name: str, models: list[str] | None = None) -> None:
        self.name = name
        self.models = models if models is not None else []
        self.script: list[BaseException | None] = []
        self.calls: list[JSON] = []
        self.hold: asyncio.Event | None = None
        self.gate: asyncio.Event | None = None  # when set: unary calls wait on it first

    def served_models(self) -> list[ServedModel]:
        return [ServedModel(name=m, owned_by=self.name, context_length=4096) for m in self.models]

    async def start(self) -> None:
        return None

    async def close(self) -> None:
        return None

    def _next(self, body: JSON) -> None:
        self.calls.append(body)
        outcome = self.script.pop(0) if self.script else None
        if outcome is not None:
            raise outcome

    async def chat(self, body: JSON) -> JSON:
        if self.gate is not None:
            await self.gate.wait()
        self._next(body)
        return {"backend": self.name, "model": body["model"]}

    async def completion(self, body: JSON) -> JSON:
        return await self.chat(body)

    async def embeddings(self, body: JSON) -> JSON:
        return await self.chat(body)

    async def stream_chat(self, body: JSON) -> AsyncIterator[JSON]:
        self._next(body)
        yield chunk(f"{self.name}-1")
        if self.hold is not None:
            await self.hold.wait()
        yield chunk(f"{self.name}-2")

    def stream_completion(self, body: JSON) -> AsyncIterator[JSON]:
        return self.stream_chat(body)


class FakeClock:
    """A monotonic clock tests move by hand."""

    def __init__(self) -> None:
        self.now = 1000.0

    def __call__(self) -> float:
        return self.now
