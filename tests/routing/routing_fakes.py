"""Routing test doubles and helpers.

The HTTP upstreams routing tests fail on purpose are ``tests.fakes.upstream.FakeUpstream``
(see ``tests/routing/conftest.py``). ``ScriptedEngine`` is a small in-test implementation
of the Engine protocol for breaker, balancer and ``auto`` tests where an HTTP upstream
is not the point.
"""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from typing import Any

from heshi.config import HeshiConfig
from heshi.engines.base import JSON, ServedModel


def chunk(text: str) -> JSON:
    return {
        "object": "chat.completion.chunk",
        "choices": [{"index": 0, "delta": {"content": text}, "finish_reason": None}],
    }


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

    def completion_cap(self, prompt_tokens: int, model: str | None = None) -> int | None:
        return None  # a backend that does not say its window

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
