"""Choosing among a route's targets: weighted random, or least busy.

In-flight requests are counted per **backend**, not per (backend, model): what is busy
is the server, and one server may be reached through several routes and aliases. A
request counts from the moment it is sent until its response is read or its stream is
closed.
"""

from __future__ import annotations

import random
from collections.abc import Iterable, Sequence

from heshi.routing.names import Balance, Target


class Balancer:
    """In-flight counts and the choice between candidate targets."""

    def __init__(self, backends: Iterable[str], rng: random.Random) -> None:
        self._rng = rng
        self._in_flight = dict.fromkeys(backends, 0)

    def in_flight(self, backend: str) -> int:
        """Requests currently sent to ``backend`` and not finished."""
        return self._in_flight[backend]

    def acquire(self, backend: str) -> None:
        """Count one more request on ``backend``."""
        self._in_flight[backend] += 1

    def release(self, backend: str) -> None:
        """Count one request on ``backend`` as finished."""
        self._in_flight[backend] -= 1

    def choose(self, balance: Balance, candidates: Sequence[Target]) -> int:
        """The index in ``candidates`` (non-empty) of the target to try.

        ``weighted``: at random, in proportion to ``weight``. ``least-busy``: fewest
        in flight; ties go to the higher weight, then to the earlier target.
        """
        if len(candidates) == 1:
            return 0
        if balance == "weighted":
            return self._weighted(candidates)
        return min(
            range(len(candidates)),
            key=lambda i: (self._in_flight[candidates[i].backend], -candidates[i].weight, i),
        )

    def _weighted(self, candidates: Sequence[Target]) -> int:
        point = self._rng.random() * sum(t.weight for t in candidates)
        for i, target in enumerate(candidates):
            point -= target.weight
            if point < 0:
                return i
        return len(candidates) - 1  # float rounding left a sliver past the last weight
