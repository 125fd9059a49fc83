"""Remote backends behind the gateway: a real loopback HTTP server plays vLLM."""

from __future__ import annotations

import json
from collections.abc import Iterator

import httpx
import openai
import pytest

from heshi.config import AliasConfig, BackendConfig, HeshiConfig
from heshi.engines.base import Engine
from heshi.engines.openai_http import OpenAIHTTPEngine
from heshi.gateway.app import create_app
from tests.conftest import TINY_NAME, local_engines
from tests.fakes.upstream import UPSTREAM_MODEL, FakeUpstream, UpstreamState
from tests.loopback import free_port, serve_app


@pytest.fixture
def fake_vllm() -> Iterator[FakeUpstream]:
    """The upstream plays a vLLM server: its own answer, and usage counting the tokens it
    generated (not the request's max_tokens)."""
    state = UpstreamState(
        reply="您好，有什么可以帮您？",
        prompt_tokens=9,
        completion_tokens=7,
        usage_from_max_tokens=False,
    )
    with FakeUpstream(state, name="vllm") as fake:
        yield fake


def gateway_config(tiny_config: HeshiConfig, base_url: str) -> HeshiConfig:
    return tiny_config.model_copy(
        update={
            "backends": {
                "vllm": BackendConfig(base_url=base_url, models=[UPSTREAM_MODEL], timeout=5)
            },
            "aliases": {"qwen-large": AliasConfig(backend="vllm", model=UPSTREAM_MODEL)},
        }
    )


@pytest.fixture
def mixed_gateway(tiny_config: HeshiConfig, fake_vllm: FakeUpstream) -> Iterator[str]:
    config = gateway_config(tiny_config, fake_vllm.base_url)
    engines: dict[str, Engine] = dict(local_engines(config))
    engines["vllm"] = OpenAIHTTPEngine("vllm", config.backends["vllm"])
    with serve_app(create_app(config, engines)) as url:
        yield url


def test_models_lists_local_remote_and_alias(mixed_gateway: str) -> None:
    ids = {m["id"] for m in httpx.get(mixed_gateway + "/v1/models").json()["data"]}
    assert ids == {TINY_NAME, UPSTREAM_MODEL, "qwen-large"}


def test_alias_maps_to_upstream_model(mixed_gateway: str, fake_vllm: FakeUpstream) -> None:
    body = {"model": "qwen-large", "messages": [{"role": "user", "content": "你好"}]}
    r = httpx.post(mixed_gateway + "/v1/chat/completions", json=body)
    assert r.status_code == 200
    assert r.headers["x-heshi-backend"] == "vllm"
    assert r.json()["model"] == "qwen-large"
    assert r.json()["choices"][0]["message"]["content"] == "您好，有什么可以帮您？"
    assert fake_vllm.state.bodies[-1]["model"] == UPSTREAM_MODEL


def test_stream_passes_through_chunk_by_chunk(mixed_gateway: str, fake_vllm: FakeUpstream) -> None:
    state = fake_vllm.state
    # two chunks, and the second only once the test has seen the first (no buffering)
    state.deltas, state.pause_after = ["您好", "，请问"], 1
    state.completion_tokens = 2  # what it generated
    client = openai.OpenAI(base_url=mixed_gateway + "/v1", api_key="x", max_retries=0)
    stream = client.chat.completions.create(
        model="qwen-large",
        messages=[{"role": "user", "content": "你好"}],
        stream=True,
        stream_options={"include_usage": True},
    )
    first = next(iter(stream))
    # the first chunk arrived while the upstream is still holding the rest back
    assert not state.release.is_set()
    assert first.choices[0].delta.content == "您好"
    state.release.set()
    rest = list(stream)
    assert "".join(c.choices[0].delta.content or "" for c in rest if c.choices) == "，请问"
    assert rest[-1].usage is not None and rest[-1].usage.completion_tokens == 2
    assert state.bodies[-1]["stream_options"] == {"include_usage": True}


def test_upstream_down_is_a_prompt_502(tiny_config: HeshiConfig) -> None:
    dead = f"http://127.0.0.1:{free_port()}/v1"
    config = gateway_config(tiny_config, dead)
    engines: dict[str, Engine] = {"vllm": OpenAIHTTPEngine("vllm", config.backends["vllm"])}
    config = config.model_copy(
        update={"engine": config.engine.model_copy(update={"enabled": False})}
    )
    with serve_app(create_app(config, engines)) as url:
        body = {"model": "qwen-large", "messages": [{"role": "user", "content": "你好"}]}
        for stream in (False, True):
            r = httpx.post(url + "/v1/chat/completions", json=body | {"stream": stream}, timeout=10)
            # 502 from the failed call, or 503 once the startup health check has opened
            # the backend's circuit breaker (then with a Retry-After)
            assert r.status_code in (502, 503)
            assert "vllm" in r.json()["error"]["message"]
            if r.status_code == 503:
                assert int(r.headers["retry-after"]) >= 1


def test_upstream_garbage_is_a_502(mixed_gateway: str, fake_vllm: FakeUpstream) -> None:
    fake_vllm.state.mode = "garbage"
    body = {"model": "qwen-large", "messages": [{"role": "user", "content": "你好"}]}
    r = httpx.post(mixed_gateway + "/v1/chat/completions", json=body)
    assert r.status_code == 502
    assert r.json()["error"]["type"] == "upstream_error"


def test_upstream_reset_mid_stream_ends_with_an_error_frame(
    mixed_gateway: str, fake_vllm: FakeUpstream
) -> None:
    fake_vllm.state.deltas = ["您好", "，请问"]
    fake_vllm.state.mode = "cut"  # the upstream crashes right after its first chunk
    body = {
        "model": "qwen-large",
        "messages": [{"role": "user", "content": "你好"}],
        "stream": True,
    }
    with httpx.stream("POST", mixed_gateway + "/v1/chat/completions", json=body) as r:
        assert r.status_code == 200
        frames = [f for f in r.read().split(b"\n\n") if f]
    assert json.loads(frames[0][6:])["choices"][0]["delta"]["content"] == "您好"
    error = json.loads(frames[-2][6:])["error"]
    assert error["type"] == "upstream_error"
    assert frames[-1] == b"data: [DONE]"
