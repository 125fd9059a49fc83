"""Circuit breakers and health checks: skip failing backends, find them again when back."""

from __future__ import annotations

import asyncio
from typing import Any

import pytest

from heshi.engines.base import Engine
from heshi.errors import UpstreamError, UpstreamRejected
from heshi.routing import BackendsUnavailable, Probes, Router
from tests.fakes.clock import FakeClock
from tests.fakes.waiting import wait_until_async
from tests.routing.conftest import MakeHTTPEngine, StartUpstream
from tests.routing.routing_fakes import ScriptedEngine, routing_config

BODY: dict[str, Any] = {"model": "qwen", "messages": [{"role": "user", "content": "你好"}]}
ROUTES = {
    "qwen": {
        "targets": [{"backend": "a", "model": "m"}, {"backend": "b", "model": "m"}],
        "balance": "least-busy",
    }
}


def failing(times: int) -> list[BaseException | None]:
    return [UpstreamError(f"backend a answered HTTP 500 ({i})") for i in range(times)]


def breaker_router(
    clock: FakeClock, **routing: Any
) -> tuple[Router, ScriptedEngine, ScriptedEngine]:
    a, b = ScriptedEngine("a", ["only-a"]), ScriptedEngine("b")
    settings = {"breaker_failures": 3, "breaker_cooldown_seconds": 30.0, **routing}
    config = routing_config(routes=ROUTES, **settings)
    return Router(config, {"a": a, "b": b}, clock=clock), a, b


async def tripped(clock: FakeClock, failures: int = 3) -> tuple[Router, ScriptedEngine, Any]:
    """A router whose backend ``a`` failed 3 requests in a row: its breaker is open."""
    router, a, _b = breaker_router(clock)
    a.script = failing(failures)
    plan = router.plan("qwen", BODY)
    for _ in range(3):
        await router.call(plan, "chat", BODY)
    return router, a, plan


async def test_breaker_opens_after_consecutive_failures_then_skips_the_backend() -> None:
    clock = FakeClock()
    router, a, _b = breaker_router(clock)
    a.script = failing(3)
    plan = router.plan("qwen", BODY)
    for _ in range(3):  # each request: a fails, the retry lands on b
        assert (await router.call(plan, "chat", BODY)).target.backend == "b"
    assert router.status()["a"].state == "open"

    routed = await router.call(plan, "chat", BODY)
    assert routed.route_header == "qwen->b(least-busy,open:a)"
    assert len(a.calls) == 3  # not tried again while open


async def test_half_open_probe_after_cooldown_closes_the_breaker_on_success() -> None:
    clock = FakeClock()
    router, a, plan = await tripped(clock)

    clock.advance(29.0)
    assert (await router.call(plan, "chat", BODY)).target.backend == "b"
    clock.advance(1.0)
    assert router.status()["a"].state == "half-open"

    a.gate = asyncio.Event()  # hold the probe to see that it is the only one let through
    probe = asyncio.create_task(router.call(plan, "chat", BODY))
    await asyncio.sleep(0)
    assert router.status()["a"].in_flight == 1
    assert (await router.call(plan, "chat", BODY)).target.backend == "b"
    with pytest.raises(BackendsUnavailable):  # one probe at a time, even with no other way
        async with asyncio.timeout(1.0):  # (were it let through, it would wait on the gate)
            await router.call(router.plan("only-a", BODY), "chat", BODY)
    a.gate.set()
    assert (await probe).target.backend == "a"
    assert router.status()["a"].state == "closed"


async def test_a_stream_probe_closes_the_breaker_at_its_first_chunk() -> None:
    clock = FakeClock()
    router, a, _b = breaker_router(clock)
    a.script = failing(3)
    plan = router.plan("only-a", BODY)
    for _ in range(3):
        with pytest.raises(UpstreamError):
            await router.call(plan, "chat", BODY)
    clock.advance(30.0)
    a.hold = asyncio.Event()  # a long generation: the verdict must not wait for its end
    routed = await router.open_stream(plan, "chat", BODY)
    assert router.status()["a"].state == "closed"
    await routed.value.rest.aclose()


async def test_failed_probe_opens_the_breaker_for_another_cooldown() -> None:
    clock = FakeClock()
    router, a, plan = await tripped(clock, failures=4)
    clock.advance(30.0)
    assert (await router.call(plan, "chat", BODY)).target.backend == "b"  # probe failed
    assert len(a.calls) == 4
    assert router.status()["a"].state == "open"
    clock.advance(29.0)
    assert router.status()["a"].state == "open"


async def test_4xx_answers_do_not_trip_the_breaker() -> None:
    clock = FakeClock()
    router, a, _b = breaker_router(clock)
    a.script = [UpstreamRejected(400, "bad max_tokens") for _ in range(5)]
    for _ in range(5):
        with pytest.raises(UpstreamRejected):
            await router.call(router.plan("qwen", BODY), "chat", BODY)
    assert router.status()["a"].state == "closed"


async def test_when_every_breaker_is_open_the_request_fails_fast_with_503() -> None:
    clock = FakeClock()
    router, a, b = breaker_router(clock, breaker_failures=1, retries=1)
    a.script, b.script = failing(1), failing(1)
    plan = router.plan("qwen", BODY)
    with pytest.raises(UpstreamError):
        await router.call(plan, "chat", BODY)
    clock.advance(10.0)
    with pytest.raises(BackendsUnavailable) as info:
        await router.call(plan, "chat", BODY)
    assert info.value.status_code == 503
    assert info.value.retry_after == pytest.approx(20.0)
    assert "a, b" in info.value.message
    assert (len(a.calls), len(b.calls)) == (1, 1)  # nobody waited on a dead backend


async def test_health_checks_mark_a_dead_backend_down_and_a_revived_one_up(
    upstream: StartUpstream, http_engine: MakeHTTPEngine
) -> None:
    a, b = upstream("a"), upstream("b")
    engines: dict[str, Engine] = {
        "a": await http_engine("a", a.base_url, models=["m"]),
        "b": await http_engine("b", b.base_url, models=[]),
        "local": ScriptedEngine("local", ["tiny"]),  # in-process: has no probe
    }
    router = Router(routing_config(routes=ROUTES, breaker_cooldown_seconds=60.0), engines)
    assert await router.check_health() == {"a": True, "b": True}

    a.down()
    b.state.mode = "500"
    assert await router.check_health() == {"a": False, "b": False}
    assert router.status()["a"].state == "open"
    with pytest.raises(BackendsUnavailable):
        await router.call(router.plan("qwen", BODY), "chat", BODY)

    a.up()  # same port, back in service
    assert await router.check_health() == {"a": True, "b": False}
    status = router.status()
    assert (status["a"].state, status["a"].healthy) == ("closed", True)
    assert status["local"].healthy is None
    assert (await router.call(router.plan("qwen", BODY), "chat", BODY)).target.backend == "a"


async def test_background_health_loop_runs_until_closed(
    upstream: StartUpstream, http_engine: MakeHTTPEngine
) -> None:
    a = upstream("a")
    engines: dict[str, Engine] = {"a": await http_engine("a", a.base_url, models=["m"])}
    router = Router(routing_config(health_interval_seconds=0.02), engines)
    await router.start()
    try:
        a.down()
        await wait_until_async(
            lambda: router.status()["a"].state == "open",
            timeout=3.0,
            message="condition not met within 3.0s",
        )
        a.up()
        await wait_until_async(
            lambda: router.status()["a"].state == "closed",
            timeout=3.0,
            message="condition not met within 3.0s",
        )
    finally:
        await router.close()
        await router.close()  # twice is fine


async def test_probes_are_registered_per_engine_type() -> None:
    probed: list[str] = []

    async def probe(engine: Engine) -> None:
        probed.append(engine.name)
        if engine.name == "b":
            raise ConnectionError("b is down")

    probes = Probes()
    probes.register(ScriptedEngine, probe)
    engines = {"a": ScriptedEngine("a"), "b": ScriptedEngine("b")}
    router = Router(routing_config(routes=ROUTES), engines, probes=probes)
    assert await router.check_health() == {"a": True, "b": False}
    assert sorted(probed) == ["a", "b"]
    assert (await router.call(router.plan("qwen", BODY), "chat", BODY)).target.backend == "a"


async def test_a_cancelled_probe_lets_the_next_request_probe() -> None:
    clock = FakeClock()
    router, a, plan = await tripped(clock)
    clock.advance(30.0)
    a.gate = asyncio.Event()
    probe = asyncio.create_task(router.call(plan, "chat", BODY))
    await asyncio.sleep(0)
    probe.cancel()  # the client hung up while the probe was waiting
    with pytest.raises(asyncio.CancelledError):
        await probe
    assert router.status()["a"].in_flight == 0
    a.gate.set()
    assert (await router.call(plan, "chat", BODY)).target.backend == "a"
    assert router.status()["a"].state == "closed"


async def test_a_good_health_check_ends_the_cooldown_but_a_request_must_close_it() -> None:
    async def answers_models(engine: Engine) -> None:
        return None  # /models is fine even though generation is broken

    probes = Probes()
    probes.register(ScriptedEngine, answers_models)
    clock = FakeClock()
    a, b = ScriptedEngine("a"), ScriptedEngine("b")
    config = routing_config(routes=ROUTES, breaker_failures=3, breaker_cooldown_seconds=30.0)
    router = Router(config, {"a": a, "b": b}, clock=clock, probes=probes)
    a.script = failing(4)
    plan = router.plan("qwen", BODY)
    for _ in range(3):
        await router.call(plan, "chat", BODY)
    await router.check_health()
    assert router.status()["a"].state == "half-open"  # not closed: requests failed on it
    await router.call(plan, "chat", BODY)  # the probe: fails, answered by b
    assert (len(a.calls), router.status()["a"].state) == (4, "open")
    await router.check_health()
    assert (await router.call(plan, "chat", BODY)).target.backend == "a"  # probe succeeds
    assert router.status()["a"].state == "closed"


async def test_an_open_primary_goes_straight_to_the_fallback_and_says_so() -> None:
    clock = FakeClock()
    a, b = ScriptedEngine("a"), ScriptedEngine("b")
    routes = {
        "qwen": {"targets": [{"backend": "a", "model": "m"}], "fallback": ["qwen-small"]},
        "qwen-small": {"targets": [{"backend": "b", "model": "s"}]},
    }
    config = routing_config(routes=routes, breaker_failures=1, retries=0)
    router = Router(config, {"a": a, "b": b}, clock=clock)
    a.script = failing(1)
    plan = router.plan("qwen", BODY)
    with pytest.raises(UpstreamError):  # retries: 0 — the failure is final, but counted
        await router.call(plan, "chat", BODY)
    routed = await router.call(plan, "chat", BODY)
    assert routed.route_header == "qwen(open:a);fallback->qwen-small->b"
    assert routed.value == {"backend": "b", "model": "s"}
