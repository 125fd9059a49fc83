"""One fake clock for every test that must decide what time it is."""

from __future__ import annotations

from datetime import UTC, datetime


class FakeClock:
    """Monotonic seconds that move only when a test moves them.

    Pass the clock itself where code takes ``Callable[[], float]`` (breakers, admission
    windows), or ``clock.utc`` where it takes ``Callable[[], datetime]`` (key expiry):
    both read the same ``now``, which a test moves with :meth:`advance` or sets outright.
    """

    def __init__(self, now: float = 1000.0) -> None:
        self.now = now

    def __call__(self) -> float:
        return self.now

    def advance(self, seconds: float) -> float:
        """Move time forward by ``seconds``; returns the new ``now``."""
        self.now += seconds
        return self.now

    def utc(self) -> datetime:
        """``now`` read as seconds since the Unix epoch, as an aware UTC datetime."""
        return datetime.fromtimestamp(self.now, UTC)
