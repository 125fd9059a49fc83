"""Background health checks of remote backends, feeding their circuit breakers.

Every ``routing.health_interval_seconds`` each engine that has a *probe* is probed, all
at once; a probe that raises, or takes longer than ``min(interval, 5 s)``, marks the
backend down (its breaker opens), one that returns marks it up (its breaker closes).

Probes are registered per engine type in a :class:`Probes` object, the same way for
built-ins and plug-ins, so the router never asks what kind of engine it holds. The
built-in one for :class:`~heshi.engines.openai_http.OpenAIHTTPEngine` is
:func:`probe_models_endpoint`. The in-process llama.cpp engine has no probe: if it is
broken, so is the process serving the probe.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Awaitable, Callable, Mapping

import aiohttp

from heshi.engines.base import Engine
from heshi.engines.openai_http import OpenAIHTTPEngine
from heshi.errors import UpstreamError
from heshi.routing.breaker import Breaker
from heshi.tasks import cancel

log = logging.getLogger("heshi.routing")
Probe = Callable[[Engine], Awaitable[None]]
_MAX_PROBE_SECONDS = 5.0  # /models is trivial for a live server; longer means stuck


class Probes:
    """Health probes by engine type. A probe returns when the backend is up, else raises."""

    def __init__(self) -> None:
        self._by_type: dict[type, Probe] = {}

    def register(self, engine_type: type, probe: Probe) -> None:
        """Use ``probe`` for engines of ``engine_type`` and its subclasses."""
        self._by_type[engine_type] = probe

    def for_engine(self, engine: Engine) -> Probe | None:
        """The probe registered for the most specific type ``engine`` is an instance of."""
        for cls in type(engine).__mro__:
            probe = self._by_type.get(cls)
            if probe is not None:
                return probe
        return None


def default_probes() -> Probes:
    """A fresh registry holding the built-in probes (callers may register more)."""
    probes = Probes()
    probes.register(OpenAIHTTPEngine, probe_models_endpoint)
    return probes


async def probe_models_endpoint(engine: Engine) -> None:
    """``GET {base_url}/models``: any answer below 500 means the server is up.

    It uses its own short-lived session rather than the engine's pool: a probe every
    few seconds costs one loopback-cheap connection, and a stuck pool (every connection
    busy with long generations) must not make a healthy backend look dead. It sends no
    API key: a 401 still proves the server is alive, and the key never leaves the engine.
    """
    if not isinstance(engine, OpenAIHTTPEngine):
        raise TypeError(f"probe_models_endpoint cannot probe {type(engine).__name__}")
    config = engine.config
    timeout = aiohttp.ClientTimeout(total=None, sock_connect=config.connect_timeout)
    async with (
        aiohttp.ClientSession(timeout=timeout) as session,
        session.get(config.base_url + "/models", allow_redirects=False) as resp,
    ):
        if resp.status >= 500:
            raise UpstreamError(
                f"后端 {engine.name} 健康检查返回 HTTP {resp.status} / "
                f"backend {engine.name} health check answered HTTP {resp.status}"
            )


class HealthChecker:
    """Probes engines periodically and opens or closes their breakers."""

    def __init__(
        self,
        engines: Mapping[str, Engine],
        probes: Probes,
        breakers: Mapping[str, Breaker],
        interval: float,
    ) -> None:
        self._probed = {
            name: (engine, probe)
            for name, engine in engines.items()
            if (probe := probes.for_engine(engine)) is not None
        }
        self._breakers = breakers
        self._interval = interval
        self._budget = min(interval, _MAX_PROBE_SECONDS)
        self._task: asyncio.Task[None] | None = None
        self.last: dict[str, bool] = {}  # backend → result of its latest probe

    async def check(self) -> dict[str, bool]:
        """Probe every probed backend once, update breakers, return backend → up."""
        names = list(self._probed)
        results = await asyncio.gather(*(self._probe(name) for name in names))
        outcome = dict(zip(names, results, strict=True))
        for name, ok in outcome.items():
            self._breakers[name].health(ok)
        self.last.update(outcome)
        return outcome

    async def _probe(self, name: str) -> bool:
        engine, probe = self._probed[name]
        try:
            async with asyncio.timeout(self._budget):
                await probe(engine)
        except Exception as exc:  # whatever broke, the backend is not usable right now
            log.debug("health check of %s failed: %s", name, exc)
            return False
        return True

    def start(self) -> None:
        """Start the background loop (first round immediately). No-op if running."""
        if self._probed and self._task is None:
            self._task = asyncio.create_task(self._loop(), name="heshi-health-checks")

    async def close(self) -> None:
        """Stop the loop and wait for it. Safe to call twice."""
        task, self._task = self._task, None
        await cancel(task)

    async def _loop(self) -> None:
        while True:
            await self.check()
            await asyncio.sleep(self._interval)
