"""The router: which backend answers a request, and what happens when it fails.

Use::

    router = Router(config, engines)          # ConfigError on a bad name table
    await router.start()                      # health checks (engines are started by the caller)
    plan = router.plan(body["model"], body)   # ModelNotFound; pure CPU
    routed = await router.call(plan, "chat", body)        # or open_stream(...)
    routed.value, routed.backend_header, routed.route_header
    await router.close()

**Fault tolerance.** A request is tried at most ``1 + routing.retries`` times. An
``UpstreamError`` before any output — connection refused, DNS, HTTP 5xx, garbage,
``UpstreamTimeout`` — moves it to the next target (see :mod:`heshi.routing.walk` for the
order: the route's other targets, then its fallbacks). It is never retried after a
stream's first chunk (the client already has output), nor on a 4xx from upstream
(``UpstreamRejected``: the request itself is wrong, another backend would say the same),
nor on a local ``InvalidRequest`` / ``ContextLengthExceeded``. Before trying a backend
already tried for this request the router waits ``backoff_seconds``, doubled per retry,
capped at ``max(backoff_seconds, 2 s)``; moving to a fresh backend does not wait. When
everything fails, the last error is raised with the list of what was tried appended.
The route taken is written to the caller's :class:`RouteFacts` as it goes (each pick,
each failure), so a failed request explains itself as well as a successful one.

**Timeouts** are per backend and live in each engine's own configuration
(``backends.<name>.connect_timeout`` and ``timeout``, the longest silence between bytes):
a slow backend fails with ``UpstreamTimeout`` and counts as any other failure here.

**Circuit breakers** (:mod:`heshi.routing.breaker`) skip backends that keep failing.
When every target and fallback of a request has an open breaker, the router does not
try one anyway: it fails at once with :class:`BackendsUnavailable` (HTTP 503, with
``retry_after``). Trying anyway would make every client wait out a dead backend's
timeout, which is what the breaker exists to prevent; recovery is still found within
``breaker_cooldown_seconds`` (a half-open probe) or ``health_interval_seconds`` (a
health check), whichever comes first.
"""

from __future__ import annotations

import asyncio
import random
import time
from collections.abc import AsyncIterator, Awaitable, Callable, Mapping
from dataclasses import dataclass
from typing import Generic, Literal, TypeVar

from heshi.config import HeshiConfig
from heshi.engines.base import JSON, Engine
from heshi.errors import CapabilityMissing, UpstreamError
from heshi.routing.balance import Balancer
from heshi.routing.breaker import BackendsUnavailable, Breaker, State
from heshi.routing.complexity import ComplexityRule, Decision
from heshi.routing.health import HealthChecker, Probes, default_probes
from heshi.routing.names import AUTO, NameEntry, NameTable, PublicModel, Target, header_label
from heshi.routing.stream import Lease, RoutedStream, StreamStart, close_source, verdict
from heshi.routing.walk import RouteLog, TargetWalk
from heshi.tracing import Tracing

T = TypeVar("T")
Op = Literal["chat", "completion", "embeddings", "rerank"]
StreamOp = Literal["chat", "completion"]
Attempt = Callable[[Engine, JSON, Lease], Awaitable[T]]
_BACKOFF_CAP = 2.0  # seconds; a client waiting longer than this would rather have the error


@dataclass(frozen=True, slots=True)
class RoutePlan:
    """Where a request may go: the name it resolved to and that name's fallback chain."""

    model: str  # the name the client asked for ("auto", an alias, a route, a model)
    resolved: str  # the public name serving it (the tier's name when model is "auto")
    chain: tuple[NameEntry, ...]  # resolved's entry, then its fallbacks in order
    decision: Decision | None = None  # what "auto" decided, and why


@dataclass(slots=True)
class RouteFacts:
    """Where one request went, kept up to date by the router while it routes."""

    backend: str = ""  # the engine that answered, or failed last ("" while none was tried)
    backend_header: str = "none"  # ``x-heshi-backend``: header-safe, "none" when none tried
    route: str = ""  # ``x-heshi-route``: the decision and every attempt
    attempts: int = 0


@dataclass(frozen=True, slots=True)
class Routed(Generic[T]):
    """A result and who produced it, with the two response headers that say so."""

    value: T
    target: Target  # the backend and upstream model that answered
    route_header: str  # for ``x-heshi-route``: ASCII, e.g. "qwen->vllm-a(least-busy)"
    backend_header: str  # for ``x-heshi-backend``: the backend's name, header-safe
    attempts: int  # 1 unless retries happened


@dataclass(frozen=True, slots=True)
class BackendStatus:
    """One backend as the router sees it, for ``/healthz`` and the console."""

    state: State
    in_flight: int
    consecutive_failures: int
    healthy: bool | None  # latest health check; None when not probed (yet)


class Router:
    """Public names → backends, with balancing, retries, fallbacks and breakers.

    ``engines`` maps backend names (``local`` and the keys of ``backends:``) to engines
    the caller starts and closes; the router only routes to them. ``clock`` and ``rng``
    are injectable so tests can move time and fix random choices; ``probes`` chooses
    the health check per engine type (default: :func:`default_probes`).
    """

    def __init__(
        self,
        config: HeshiConfig,
        engines: Mapping[str, Engine],
        *,
        clock: Callable[[], float] = time.monotonic,
        rng: random.Random | None = None,
        probes: Probes | None = None,
    ) -> None:
        routing = config.routing
        self._config = config
        self._engines = dict(engines)
        self.tracing = Tracing.disabled()  # the gateway sets its own
        self._names = NameTable(config, self._engines)
        self._rule = ComplexityRule(routing.auto) if routing.auto is not None else None
        self._attempts = 1 + routing.retries
        self._backoff = routing.backoff_seconds
        self._labels = {name: header_label(name) for name in self._engines}
        self._balancer = Balancer(self._engines, rng or random.Random())
        self._breakers = {
            name: Breaker(
                name,
                failures=routing.breaker_failures,
                cooldown=routing.breaker_cooldown_seconds,
                clock=clock,
            )
            for name in self._engines
        }
        self._health = HealthChecker(
            self._engines,
            default_probes() if probes is None else probes,
            self._breakers,
            routing.health_interval_seconds,
        )
        self._plans = self._fixed_plans()

    def _fixed_plans(self) -> dict[str, RoutePlan]:
        # Plans for fixed names are immutable, so one instance per name serves every request.
        return {
            name: RoutePlan(name, name, self._names.chain(name))
            for name in self._names.names()
            if name != AUTO or self._rule is None
        }

    def reload_names(self) -> None:
        """Read the engines' models again (a local model was loaded or unloaded). The new
        names are checked first (``ConfigError``, e.g. an alias whose model is gone);
        on error nothing changes."""
        names = NameTable(self._config, self._engines)
        old = self._names
        self._names = names
        try:
            plans = self._fixed_plans()
        except Exception:
            self._names = old
            raise
        self._plans = plans

    # ------------------------------------------------------------------ lifecycle

    async def start(self) -> None:
        """Start background health checks of every engine that has a probe."""
        self._health.start()

    async def close(self) -> None:
        """Stop health checks. Engines are left to their owner. Safe to call twice."""
        await self._health.close()

    async def check_health(self) -> dict[str, bool]:
        """Run one round of health checks now; backend → up."""
        return await self._health.check()

    # ------------------------------------------------------------------ names

    def public_models(self) -> list[PublicModel]:
        """Every model, alias, route and ``auto`` (when configured), sorted by name."""
        return self._names.public_models()

    def status(self) -> dict[str, BackendStatus]:
        """Breaker state, load and latest health of every backend."""
        return {
            name: BackendStatus(
                breaker.state,
                self._balancer.in_flight(name),
                breaker.consecutive_failures,
                self._health.last.get(name),
            )
            for name, breaker in self._breakers.items()
        }

    def plan(self, model: str, body: JSON) -> RoutePlan:
        """Resolve ``model`` (``ModelNotFound`` lists the names); ``auto`` scores ``body``."""
        plan = self._plans.get(model)
        if plan is not None:
            return plan
        if model == AUTO and self._rule is not None:
            decision = self._rule.decide(body)
            return RoutePlan(model, decision.name, self._names.chain(decision.name), decision)
        return RoutePlan(model, model, self._names.chain(model))  # raises ModelNotFound

    # ------------------------------------------------------------------ requests

    async def call(
        self, plan: RoutePlan, op: Op, body: JSON, facts: RouteFacts | None = None
    ) -> Routed[JSON]:
        """Answer a non-streaming request; ``body["model"]`` is replaced per target.

        The caller's ``body`` is not modified; ``facts`` (when given) records the route.
        """

        async def attempt(engine: Engine, upstream: JSON, lease: Lease) -> JSON:
            result = await _unary(engine, op)(upstream)
            lease.finish(True)
            return result

        return await self._route(plan, body, attempt, facts or RouteFacts())

    async def open_stream(
        self, plan: RoutePlan, op: StreamOp, body: JSON, facts: RouteFacts | None = None
    ) -> Routed[StreamStart]:
        """Open a stream and wait for its first chunk, retrying failures before it.

        The caller must ``aclose()`` ``value.rest`` however the stream ends: that closes
        the upstream connection and stops counting the backend as busy.
        """

        async def attempt(engine: Engine, upstream: JSON, lease: Lease) -> StreamStart:
            source = _streaming(engine, op)(upstream)
            try:
                first = await anext(source)
            except StopAsyncIteration:
                lease.report(True)
                return StreamStart(None, RoutedStream(source, lease, ended=True))
            except BaseException:
                await close_source(source)
                raise
            lease.report(True)  # output has started: the backend is alive
            return StreamStart(first, RoutedStream(source, lease))

        return await self._route(plan, body, attempt, facts or RouteFacts())

    async def _route(
        self, plan: RoutePlan, body: JSON, attempt: Attempt[T], facts: RouteFacts
    ) -> Routed[T]:
        walk = TargetWalk(plan.chain, self._balancer, self._breakers)
        prefix = plan.decision.header() if plan.decision is not None else ""
        log = RouteLog(prefix, plan.chain[0].label, self._labels)
        last: UpstreamError | None = None
        for number in range(self._attempts):
            pick = walk.next()
            if pick is None:
                break
            log.picked(pick)
            backend = pick.target.backend
            facts.backend, facts.backend_header = backend, self._labels[backend]
            facts.route, facts.attempts = log.header(), number + 1
            if pick.again:
                await asyncio.sleep(self._delay(number))
            lease = Lease(backend, self._balancer, self._breakers[backend])
            with self.tracing.attempt(backend, number + 1) as span:
                try:
                    value = await attempt(
                        self._engines[backend], {**body, "model": pick.target.model}, lease
                    )
                except UpstreamError as exc:
                    lease.finish(False)
                    log.failed(backend, exc.status_code)
                    facts.route = log.header()
                    last = exc
                    self.tracing.failed(span, exc)
                    continue
                except BaseException as exc:
                    lease.finish(verdict(exc))
                    raise
            return Routed(value, pick.target, log.header(), self._labels[backend], number + 1)
        error = self._exhausted(plan, last, log)
        facts.route = log.header()
        raise error

    def _delay(self, number: int) -> float:
        return min(self._backoff * 2.0 ** max(number - 1, 0), max(self._backoff, _BACKOFF_CAP))

    def _exhausted(
        self, plan: RoutePlan, last: UpstreamError | None, log: RouteLog
    ) -> UpstreamError:
        if last is None:
            backends = [t.backend for e in plan.chain for t in e.targets]
            log.all_open(dict.fromkeys(backends))
            wait = min(self._breakers[b].retry_after() for b in backends)
            names = ", ".join(dict.fromkeys(backends))
            return BackendsUnavailable(
                f"模型 '{plan.resolved}' 的所有后端均已熔断（{names}），约 {wait:.0f} 秒后重试 / "
                f"every backend for model '{plan.resolved}' is failing and temporarily "
                f"skipped ({names}); retry in about {wait:.0f}s",
                retry_after=wait,
            )
        if len(log.tried) > 1:
            tried = ", ".join(log.tried)
            last.message = f"{last.message}（已尝试 / tried: {tried}）"
            last.args = (last.message,)
        return last


def _unary(engine: Engine, op: Op) -> Callable[[JSON], Awaitable[JSON]]:
    match op:
        case "chat":
            return engine.chat
        case "completion":
            return engine.completion
        case "embeddings":
            return engine.embeddings
        case "rerank":
            return _reranking(engine)


def _reranking(engine: Engine) -> Callable[[JSON], Awaitable[JSON]]:
    rerank = getattr(engine, "rerank", None)
    if rerank is None:
        name = engine.name

        async def missing(body: JSON) -> JSON:
            raise CapabilityMissing(
                f"后端 {name} 不提供重排序 / backend {name} cannot rerank", param="model"
            )

        return missing
    return rerank  # type: ignore[no-any-return]


def _streaming(engine: Engine, op: StreamOp) -> Callable[[JSON], AsyncIterator[JSON]]:
    match op:
        case "chat":
            return engine.stream_chat
        case "completion":
            return engine.stream_completion
