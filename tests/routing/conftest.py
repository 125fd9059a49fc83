"""Routing fixtures: start fake upstreams and real HTTP engines; all stopped after a test."""

from __future__ import annotations

from collections.abc import AsyncIterator, Awaitable, Callable
from typing import Any

import pytest

from heshi.config import BackendConfig
from heshi.engines.openai_http import OpenAIHTTPEngine
from tests.routing.routing_fakes import FakeUpstream

StartUpstream = Callable[[str], Awaitable[FakeUpstream]]
MakeHTTPEngine = Callable[..., Awaitable[OpenAIHTTPEngine]]


@pytest.fixture
async def upstream() -> AsyncIterator[StartUpstream]:
    """Start a named FakeUpstream; all are stopped after the test."""
    started: list[FakeUpstream] = []

    async def start(name: str) -> FakeUpstream:
        server = FakeUpstream(name)
        await server.start()
        started.append(server)
        return server

    yield start
    for server in started:
        await server.close()


@pytest.fixture
async def http_engine() -> AsyncIterator[MakeHTTPEngine]:
    """A started real OpenAIHTTPEngine for a URL (short timeouts so tests stay fast)."""
    engines: list[OpenAIHTTPEngine] = []

    async def make(name: str, url: str, *, models: list[str], **config: Any) -> OpenAIHTTPEngine:
        settings = {"timeout": 0.5, "connect_timeout": 1.0, **config}
        engine = OpenAIHTTPEngine(
            name, BackendConfig(base_url=url, models=models, **settings), environ={}
        )
        await engine.start()
        engines.append(engine)
        return engine

    yield make
    for engine in engines:
        await engine.close()
