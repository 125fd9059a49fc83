"""Client disconnects and metrics, through real HTTP."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest

from heshi.config import HeshiConfig
from heshi.engines.llamacpp import LlamaCppEngine
from heshi.gateway.app import create_app
from tests.conftest import ADMIN, TINY_NAME, RunningGateway, local_engines, tiny_engine_config
from tests.fakes.waiting import wait_until
from tests.loopback import serve_app
from tests.tinymodel import build_tiny_qwen2_gguf

LONG_CTX = 8192


@pytest.fixture
def long_gateway(tmp_path: Path) -> Iterator[RunningGateway]:
    """The tiny model with a long context, so an unstopped stream would run for seconds."""
    model = build_tiny_qwen2_gguf(tmp_path / "long.gguf", context_length=LONG_CTX)
    config = HeshiConfig(
        home=tmp_path / "home", engine=tiny_engine_config(model, ctx=LONG_CTX, parallel=1)
    )
    engines = local_engines(config)
    with serve_app(create_app(config, engines)) as url:
        engine = engines["local"]
        assert isinstance(engine, LlamaCppEngine)
        yield RunningGateway(url, engine)


def test_client_disconnect_mid_stream_frees_the_slot(long_gateway: RunningGateway) -> None:
    tiny_gateway = long_gateway
    max_tokens = LONG_CTX - 100
    body = {
        "model": TINY_NAME,
        "messages": [{"role": "user", "content": "讲个长故事"}],
        "max_tokens": max_tokens,
        "temperature": 0,
        "stream": True,
    }
    with httpx.stream("POST", tiny_gateway.url + "/v1/chat/completions", json=body) as r:
        assert r.status_code == 200
        next(r.iter_bytes())  # one frame, then hang up

    def idle() -> dict[str, float] | None:
        stats = tiny_gateway.engine.stats()
        return stats if stats["requests_processing"] == 0 else None

    stats = wait_until(
        idle, timeout=10, interval=0.01, message="slot still busy after the client left"
    )
    assert stats["tokens_predicted_total"] < max_tokens
    # the gateway recorded the abandoned stream as such
    metrics = httpx.get(tiny_gateway.url + "/metrics", headers=ADMIN).text
    labels = f'endpoint="chat",model="{TINY_NAME}",reason="client_gone",status="499"'
    assert f"heshi_requests_total{{{labels}}} 1.0" in metrics


def test_metrics_count_requests_tokens_and_latency(tiny_gateway: RunningGateway) -> None:
    url = tiny_gateway.url
    body = {"model": TINY_NAME, "messages": [{"role": "user", "content": "hi"}], "max_tokens": 5}
    assert httpx.post(url + "/v1/chat/completions", json=body).status_code == 200
    with httpx.stream("POST", url + "/v1/chat/completions", json=body | {"stream": True}) as r:
        r.read()
    assert (
        httpx.post(url + "/v1/chat/completions", json=body | {"model": "nope"}).status_code == 404
    )
    text = httpx.get(url + "/metrics", headers=ADMIN).text
    labels = f'endpoint="chat",model="{TINY_NAME}",reason="ok",status="200"'
    assert f"heshi_requests_total{{{labels}}} 2.0" in text
    # an unknown model name never becomes a label value (nor does anything a client sends)
    assert 'heshi_requests_total{endpoint="chat",model="-",reason="model_not_found",' in text
    assert f'heshi_tokens_total{{direction="out",model="{TINY_NAME}"}} 10.0' in text
    assert (
        f'heshi_request_duration_seconds_count{{endpoint="chat",model="{TINY_NAME}"}} 2.0' in text
    )
    assert f'heshi_time_to_first_token_seconds_count{{model="{TINY_NAME}"}} 1.0' in text
    assert f'heshi_requests_in_flight{{model="{TINY_NAME}"}} 0.0' in text


def test_healthz_reports_models(gateway_url: str) -> None:
    data = httpx.get(gateway_url + "/healthz", headers=ADMIN).json()
    assert data["status"] == "ok"
    assert data["models"] == [TINY_NAME]
