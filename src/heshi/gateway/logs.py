"""Log lines a network client can cause, at most once per interval each.

A client must not be able to flood the log: a failing backend, a key store that is not
loaded yet or a stream of malformed requests would otherwise write one line per request.
The first line of a kind is written at once; later ones within ``interval`` are counted
and summarised in the next line written.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Callable


class Throttle:
    """``allow(kind)`` is True at most once per ``interval`` seconds per kind; the number
    of lines held back since the last one written is returned with it."""

    def __init__(self, interval: float = 10.0, clock: Callable[[], float] = time.monotonic):
        self.interval = interval
        self._clock = clock
        self._last: dict[str, float] = {}
        self._held: dict[str, int] = {}

    def allow(self, kind: str) -> tuple[bool, int]:
        """Whether to write a line of ``kind`` now, and how many were held back before it."""
        now = self._clock()
        last = self._last.get(kind)
        if last is not None and now - last < self.interval:
            self._held[kind] = self._held.get(kind, 0) + 1
            return False, 0
        self._last[kind] = now
        return True, self._held.pop(kind, 0)


class ThrottleFilter(logging.Filter):
    """A logging filter letting each distinct message through once per interval (used on
    uvicorn's ``Invalid HTTP request received.``, one line per bad connection)."""

    def __init__(self, interval: float = 10.0) -> None:
        super().__init__()
        self._throttle = Throttle(interval)

    def filter(self, record: logging.LogRecord) -> bool:
        allowed, held = self._throttle.allow(str(record.msg))
        if allowed and held:
            record.msg = f"{record.msg} (+{held} more in the last {self._throttle.interval:g}s)"
        return allowed
