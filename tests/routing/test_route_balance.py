"""Balancing a route's traffic: weighted split and least-busy."""

from __future__ import annotations

import asyncio
import random
from collections import Counter
from typing import Any

from heshi.routing import Router
from tests.fakes.waiting import wait_until_async
from tests.routing.conftest import MakeHTTPEngine, StartUpstream
from tests.routing.routing_fakes import ScriptedEngine, routing_config

BODY: dict[str, Any] = {"model": "qwen", "messages": [{"role": "user", "content": "你好"}]}


def two_targets(balance: str, weights: tuple[float, float] = (1.0, 1.0)) -> dict[str, Any]:
    return {
        "qwen": {
            "balance": balance,
            "targets": [
                {"backend": "a", "model": "Qwen3-8B", "weight": weights[0]},
                {"backend": "b", "model": "Qwen3-8B-AWQ", "weight": weights[1]},
            ],
        }
    }


async def test_weighted_split_follows_the_weights() -> None:
    engines = {"a": ScriptedEngine("a"), "b": ScriptedEngine("b")}
    config = routing_config(routes=two_targets("weighted", (3.0, 1.0)))
    router = Router(config, engines, rng=random.Random(7))
    plan = router.plan("qwen", BODY)
    answered: Counter[str] = Counter()
    for _ in range(400):
        answered[(await router.call(plan, "chat", BODY)).target.backend] += 1
    assert 270 <= answered["a"] <= 330, answered  # expect 300 ± 3σ (σ ≈ 8.7)
    assert answered["a"] + answered["b"] == 400
    assert engines["b"].calls[0]["model"] == "Qwen3-8B-AWQ"  # each target's own model


async def test_least_busy_avoids_the_backend_holding_an_open_stream(
    upstream: StartUpstream, http_engine: MakeHTTPEngine
) -> None:
    a, b = upstream("a"), upstream("b")
    a.state.pause_after = b.state.pause_after = 1  # streams wait after their first chunk
    engines = {
        "a": await http_engine("a", a.base_url, models=[]),
        "b": await http_engine("b", b.base_url, models=[]),
    }
    router = Router(routing_config(routes=two_targets("least-busy")), engines)
    plan = router.plan("qwen", BODY)

    first = await router.open_stream(plan, "chat", BODY)  # tie: first target wins
    assert first.target.backend == "a"
    assert first.route_header == "qwen->a(least-busy)"
    assert router.status()["a"].in_flight == 1  # counts until the stream is closed

    second = await router.call(plan, "chat", BODY)  # a is busy streaming
    assert (second.target.backend, second.value["model"]) == ("b", "Qwen3-8B-AWQ")

    a.state.release.set()
    rest = [c["choices"][0]["delta"]["content"] async for c in first.value.rest]
    await first.value.rest.aclose()
    assert first.value.first is not None
    assert rest == ["a-2"]
    assert router.status()["a"].in_flight == 0
    assert (await router.call(plan, "chat", BODY)).target.backend == "a"  # idle again


async def test_least_busy_ties_go_to_the_heavier_target_then_the_earlier() -> None:
    engines = {"a": ScriptedEngine("a"), "b": ScriptedEngine("b")}
    heavier_b = Router(routing_config(routes=two_targets("least-busy", (1.0, 2.0))), engines)
    plan = heavier_b.plan("qwen", BODY)
    assert (await heavier_b.call(plan, "chat", BODY)).target.backend == "b"

    engines["a"].gate = asyncio.Event()  # hold a request on a, then ask again
    even = Router(routing_config(routes=two_targets("least-busy")), engines)
    plan = even.plan("qwen", BODY)
    held = asyncio.create_task(even.call(plan, "chat", BODY))
    await asyncio.sleep(0)
    assert even.status()["a"].in_flight == 1
    assert (await even.call(plan, "chat", BODY)).target.backend == "b"
    engines["a"].gate.set()
    assert (await held).target.backend == "a"
    assert even.status()["a"].in_flight == 0


async def test_closing_a_stream_early_frees_the_backend_and_the_upstream(
    upstream: StartUpstream, http_engine: MakeHTTPEngine
) -> None:
    a = upstream("a")
    a.state.pause_after = 1  # the upstream would wait forever after its first chunk
    engines = {"a": await http_engine("a", a.base_url, models=["Qwen3-8B"], timeout=30.0)}
    router = Router(routing_config(), engines)
    routed = await router.open_stream(router.plan("Qwen3-8B", BODY), "chat", BODY)
    assert router.status()["a"].in_flight == 1
    await routed.value.rest.aclose()  # the client went away
    assert router.status()["a"].in_flight == 0
    async for _ in routed.value.rest:  # closed: nothing more, no error
        raise AssertionError("a closed stream yielded a chunk")
    await wait_until_async(
        lambda: a.state.disconnects == 1,
        timeout=5.0,
        message="the upstream never saw the connection close: it would still be generating",
    )
