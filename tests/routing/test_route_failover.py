"""Retries, fallbacks and their limits, against real loopback upstreams and real engines."""

from __future__ import annotations

import copy
import time
from typing import Any

import pytest

from heshi.engines.openai_http import OpenAIHTTPEngine
from heshi.errors import ContextLengthExceeded, UpstreamError, UpstreamRejected, UpstreamTimeout
from heshi.routing import Router
from tests.fakes.upstream import FakeUpstream
from tests.routing.conftest import MakeHTTPEngine, StartUpstream
from tests.routing.routing_fakes import ScriptedEngine, routing_config

BODY: dict[str, Any] = {
    "model": "qwen",
    "messages": [{"role": "user", "content": "你好"}],
    "temperature": 0.2,
}


def route(*backends: str, fallback: list[str] | None = None) -> dict[str, Any]:
    return {
        "targets": [{"backend": b, "model": f"{b}-model"} for b in backends],
        "fallback": fallback or [],
    }


async def pair(
    upstream: StartUpstream, http_engine: MakeHTTPEngine, *names: str
) -> tuple[list[FakeUpstream], dict[str, OpenAIHTTPEngine]]:
    servers = [upstream(n) for n in names]
    engines = {s.name: await http_engine(s.name, s.base_url, models=[]) for s in servers}
    return servers, engines


async def test_502_is_retried_on_the_next_target_and_the_header_says_so(
    upstream: StartUpstream, http_engine: MakeHTTPEngine
) -> None:
    (a, b), engines = await pair(upstream, http_engine, "vllm-a", "vllm-b")
    a.state.mode = "500"
    router = Router(routing_config(routes={"qwen": route("vllm-a", "vllm-b")}), engines)
    body = copy.deepcopy(BODY)
    routed = await router.call(router.plan("qwen", body), "chat", body)
    assert routed.value["choices"][0]["message"]["content"] == "from vllm-b"
    assert routed.route_header == "qwen->vllm-a(least-busy);vllm-a:502;retry->vllm-b"
    assert (routed.backend_header, routed.attempts) == ("vllm-b", 2)
    assert [s["model"] for s in a.state.bodies + b.state.bodies] == ["vllm-a-model", "vllm-b-model"]
    assert b.state.bodies[0]["temperature"] == 0.2
    assert body == BODY  # the caller's dict still names the public model


@pytest.mark.parametrize("mode", ["500", "garbage", "hang", "down"])
async def test_each_kind_of_upstream_failure_moves_on(
    upstream: StartUpstream, http_engine: MakeHTTPEngine, mode: str
) -> None:
    (a, _b), engines = await pair(upstream, http_engine, "vllm-a", "vllm-b")
    if mode == "down":
        a.down()  # its port refuses connections
    else:
        a.state.mode = mode
    router = Router(routing_config(routes={"qwen": route("vllm-a", "vllm-b")}), engines)
    started = time.perf_counter()
    routed = await router.call(router.plan("qwen", BODY), "chat", BODY)
    assert routed.target.backend == "vllm-b"
    status = "504" if mode == "hang" else "502"
    assert f"vllm-a:{status};retry->vllm-b" in routed.route_header
    assert time.perf_counter() - started < 10.0  # the 0.5 s timeout, not a hang (forever)


async def test_a_4xx_is_not_retried(upstream: StartUpstream, http_engine: MakeHTTPEngine) -> None:
    (a, b), engines = await pair(upstream, http_engine, "vllm-a", "vllm-b")
    a.state.mode = "400"
    router = Router(routing_config(routes={"qwen": route("vllm-a", "vllm-b")}), engines)
    with pytest.raises(UpstreamRejected, match="max_tokens is too large") as info:
        await router.call(router.plan("qwen", BODY), "chat", BODY)
    assert info.value.status_code == 400
    assert (len(a.state.bodies), len(b.state.bodies)) == (1, 0)
    assert router.status()["vllm-a"].consecutive_failures == 0  # it answered: alive


async def test_local_invalid_request_is_never_retried() -> None:
    local, other = ScriptedEngine("local"), ScriptedEngine("other")
    local.script = [ContextLengthExceeded(prompt_tokens=5000, max_tokens=None, context=4096)]
    router = Router(
        routing_config(routes={"qwen": route("local", "other")}),
        {
            "local": local,
            "other": other,
        },
    )
    with pytest.raises(ContextLengthExceeded):
        await router.call(router.plan("qwen", BODY), "chat", BODY)
    assert (len(local.calls), len(other.calls)) == (1, 0)


async def test_stream_failing_before_its_first_chunk_is_retried(
    upstream: StartUpstream, http_engine: MakeHTTPEngine
) -> None:
    (a, _b), engines = await pair(upstream, http_engine, "vllm-a", "vllm-b")
    a.state.mode = "500"
    router = Router(routing_config(routes={"qwen": route("vllm-a", "vllm-b")}), engines)
    routed = await router.open_stream(router.plan("qwen", BODY), "chat", BODY)
    try:
        texts = [c["choices"][0]["delta"]["content"] async for c in routed.value.rest]
    finally:
        await routed.value.rest.aclose()
    assert routed.value.first is not None
    assert routed.value.first["choices"][0]["delta"]["content"] == "vllm-b-1"
    assert texts == ["vllm-b-2"]
    assert routed.route_header.endswith("vllm-a:502;retry->vllm-b")
    assert {n: s.in_flight for n, s in router.status().items()} == {"vllm-a": 0, "vllm-b": 0}


async def test_stream_cut_after_the_first_chunk_is_not_retried(
    upstream: StartUpstream, http_engine: MakeHTTPEngine
) -> None:
    (a, b), engines = await pair(upstream, http_engine, "vllm-a", "vllm-b")
    a.state.mode = "cut"
    router = Router(routing_config(routes={"qwen": route("vllm-a", "vllm-b")}), engines)
    routed = await router.open_stream(router.plan("qwen", BODY), "chat", BODY)
    assert routed.value.first is not None  # the client already has this chunk
    with pytest.raises(UpstreamError, match="vllm-a"):
        async for _ in routed.value.rest:
            pass
    await routed.value.rest.aclose()
    assert (len(a.state.bodies), len(b.state.bodies)) == (1, 0)
    status = router.status()["vllm-a"]
    assert (status.in_flight, status.consecutive_failures) == (0, 1)


async def test_fallback_chain_is_tried_in_order(
    upstream: StartUpstream, http_engine: MakeHTTPEngine
) -> None:
    servers, engines = await pair(upstream, http_engine, "big", "mid", "small")
    servers[0].state.mode = servers[1].state.mode = "500"
    routes = {
        "qwen": route("big", fallback=["qwen-mid", "qwen-small"]),
        "qwen-mid": route("mid"),
        "qwen-small": route("small"),
    }
    router = Router(routing_config(routes=routes, retries=3), engines)
    routed = await router.call(router.plan("qwen", BODY), "chat", BODY)
    assert routed.target.backend == "small"
    assert routed.route_header == (
        "qwen->big(least-busy);big:502;fallback->qwen-mid->mid;mid:502;fallback->qwen-small->small"
    )
    assert [len(s.state.bodies) for s in servers] == [1, 1, 1]


async def test_when_everything_fails_the_last_error_lists_what_was_tried(
    upstream: StartUpstream, http_engine: MakeHTTPEngine
) -> None:
    servers, engines = await pair(upstream, http_engine, "vllm-a", "vllm-b")
    servers[0].state.mode, servers[1].state.mode = "500", "hang"
    router = Router(routing_config(routes={"qwen": route("vllm-a", "vllm-b")}, retries=1), engines)
    with pytest.raises(UpstreamTimeout) as info:
        await router.call(router.plan("qwen", BODY), "chat", BODY)
    assert info.value.status_code == 504
    assert "tried: vllm-a (502), vllm-b (504)" in info.value.message


async def test_a_single_target_is_retried_with_growing_backoff(
    upstream: StartUpstream, http_engine: MakeHTTPEngine
) -> None:
    (a,), engines = await pair(upstream, http_engine, "vllm-a")
    a.state.mode = "500"
    config = routing_config(routes={"qwen": route("vllm-a")}, retries=2, backoff_seconds=0.1)
    router = Router(config, engines)
    started = time.perf_counter()
    with pytest.raises(UpstreamError, match="HTTP 500"):
        await router.call(router.plan("qwen", BODY), "chat", BODY)
    assert time.perf_counter() - started >= 0.1 + 0.2
    assert len(a.state.bodies) == 3


async def test_retries_start_over_from_the_top_once_the_chain_is_exhausted() -> None:
    big, small = ScriptedEngine("big"), ScriptedEngine("small")
    big.script = [UpstreamError("down"), UpstreamError("down")]
    small.script = [UpstreamError("down")]
    routes = {"qwen": route("big", fallback=["qwen-small"]), "qwen-small": route("small")}
    router = Router(routing_config(routes=routes, retries=3), {"big": big, "small": small})
    routed = await router.call(router.plan("qwen", BODY), "chat", BODY)
    assert routed.route_header == (
        "qwen->big(least-busy);big:502;fallback->qwen-small->small;small:502;"
        "retry->qwen->big;big:502;fallback->qwen-small->small"
    )
    assert routed.attempts == 4


async def test_completions_embeddings_and_empty_streams_route_the_same_way(
    upstream: StartUpstream, http_engine: MakeHTTPEngine
) -> None:
    (a, b), engines = await pair(upstream, http_engine, "vllm-a", "vllm-b")
    a.state.mode = "500"
    router = Router(routing_config(routes={"qwen": route("vllm-a", "vllm-b")}), engines)
    plan = router.plan("qwen", BODY)
    prompt = {"model": "qwen", "prompt": "1+1="}
    assert (await router.call(plan, "completion", prompt)).target.backend == "vllm-b"
    embed = {"model": "qwen", "input": ["发票"]}
    assert (await router.call(plan, "embeddings", embed)).target.backend == "vllm-b"
    b.state.mode = "empty"
    routed = await router.open_stream(plan, "completion", prompt)
    assert routed.value.first is None
    assert [c async for c in routed.value.rest] == []
    await routed.value.rest.aclose()
    assert router.status()["vllm-b"].in_flight == 0
    assert [s["model"] for s in b.state.bodies] == ["vllm-b-model"] * 3
    assert "prompt" in b.state.bodies[0] and "input" in b.state.bodies[1]
