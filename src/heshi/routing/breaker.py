"""A circuit breaker per backend: stop sending requests to one that keeps failing.

``closed`` → ``breaker_failures`` consecutive failures → ``open`` (the backend is skipped)
→ ``breaker_cooldown_seconds`` later one request is let through as a *half-open probe*
→ success closes the breaker, failure opens it for another cooldown.

Health checks feed the same breaker. A failed check opens it at once (and keeps
restarting the cooldown while checks keep failing, so no client request is spent on a
dead server). A good check closes a breaker that a health check opened. It does *not*
close one that failing requests opened — a server can answer ``/models`` while its
generation is broken — it only ends the cooldown early, so the next request is the
half-open probe: at most one failed request per health interval, not
``breaker_failures`` of them.

What counts: an ``UpstreamError`` (connect error, 5xx, garbage, timeout, stream cut) is a
failure. Any answer the backend gave on purpose — a success, or a 4xx it rejected the
request with — proves it is alive and counts as a success. A cancelled request (the
client went away) proves nothing and counts as neither.

The breaker is per backend, not per (backend, model): when a server is down, every model
on it is down.
"""

from __future__ import annotations

import logging
from collections.abc import Callable
from typing import Literal

from heshi.errors import UpstreamError

log = logging.getLogger("heshi.routing")
State = Literal["closed", "open", "half-open"]


class BackendsUnavailable(UpstreamError):
    """Every backend that could answer has an open breaker (HTTP 503, with Retry-After)."""

    status_code = 503
    code = "backend_unavailable"

    def __init__(self, message: str, *, retry_after: float) -> None:
        super().__init__(message)
        self.retry_after = retry_after  # seconds until the first half-open probe is allowed


class Breaker:
    """The breaker of one backend. Time comes from ``clock`` so tests can move it."""

    def __init__(
        self, backend: str, *, failures: int, cooldown: float, clock: Callable[[], float]
    ) -> None:
        self.backend = backend
        self._limit = failures
        self._cooldown = cooldown
        self._clock = clock
        self._failures = 0
        self._opened_at: float | None = None
        self._opened_by_health = False
        self._probing = False

    @property
    def state(self) -> State:
        """``closed``, ``open`` (skipped) or ``half-open`` (cooldown over: a probe may go)."""
        if self._opened_at is None:
            return "closed"
        if self._clock() - self._opened_at >= self._cooldown:
            return "half-open"
        return "open"

    @property
    def consecutive_failures(self) -> int:
        """Failures since the last success."""
        return self._failures

    def available(self) -> bool:
        """Whether a request may go to this backend now (no side effects)."""
        state = self.state
        return state == "closed" or (state == "half-open" and not self._probing)

    def admit(self) -> bool:
        """Let one request through; True when it is the half-open probe.

        Only one probe is in flight at a time: the rest keep skipping the backend until
        the probe has answered.
        """
        if self.state == "half-open":
            self._probing = True
            return True
        return False

    def retry_after(self) -> float:
        """Seconds until a probe may go (0 when one may go now)."""
        if self._opened_at is None:
            return 0.0
        return max(0.0, self._opened_at + self._cooldown - self._clock())

    def succeeded(self) -> None:
        """The backend answered: close the breaker and forget past failures."""
        if self._opened_at is not None:
            name = self.backend
            log.info("后端 %s 已恢复 / backend %s is back: breaker closed", name, name)
        self._failures = 0
        self._opened_at = None
        self._opened_by_health = False
        self._probing = False

    def failed(self) -> None:
        """The backend failed a request: count it, open the breaker at the limit."""
        self._failures += 1
        if self._probing or (self._opened_at is None and self._failures >= self._limit):
            self._open(f"{self._failures} consecutive failures")

    def abandoned(self, probe: bool) -> None:
        """The request ended without a verdict (cancelled): free the probe slot."""
        if probe:
            self._probing = False

    def health(self, ok: bool) -> None:
        """A health-check result (see the module docstring for what it may change)."""
        if not ok:
            self._open("health check failed", by_health=True)
        elif self._opened_by_health:
            self.succeeded()
        elif self._opened_at is not None and not self._probing:
            self._opened_at = min(self._opened_at, self._clock() - self._cooldown)

    def _open(self, why: str, *, by_health: bool = False) -> None:
        if self._opened_at is None:
            log.warning(
                "后端 %s 熔断（%s）/ backend %s breaker opened (%s)",
                self.backend,
                why,
                self.backend,
                why,
            )
        self._opened_at = self._clock()
        self._opened_by_health = by_health
        self._probing = False
