"""Routing fixtures: start fake upstreams and real HTTP engines; all stopped after a test."""

from __future__ import annotations

import contextlib
from collections.abc import AsyncIterator, Awaitable, Callable, Iterator
from typing import Any

import pytest

from heshi.config import BackendConfig
from heshi.engines.openai_http import OpenAIHTTPEngine
from tests.fakes.upstream import FakeUpstream, UpstreamState

StartUpstream = Callable[[str], FakeUpstream]
MakeHTTPEngine = Callable[..., Awaitable[OpenAIHTTPEngine]]


@pytest.fixture
def upstream() -> Iterator[StartUpstream]:
    """Start a fake upstream named ``name`` that says who answered: ``from <name>``, and
    streams of two chunks ``<name>-1``, ``<name>-2``. All are stopped after the test."""
    with contextlib.ExitStack() as stack:

        def start(name: str) -> FakeUpstream:
            state = UpstreamState(reply=f"from {name}", deltas=[f"{name}-1", f"{name}-2"])
            return stack.enter_context(FakeUpstream(state, name=name))

        yield start


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
