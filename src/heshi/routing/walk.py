"""The path one request takes through its targets, and the header that explains it.

Order of attempts: the route's own targets first (chosen by its balancing rule among
those not yet tried), then each fallback name's targets, in the configured order. A
target whose backend breaker is open is skipped without spending an attempt. When every
target has been tried and attempts remain, the walk starts over from the first name —
with a single target and ``retries: 2`` that is simply three tries of it.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from dataclasses import dataclass

from heshi.routing.balance import Balancer
from heshi.routing.breaker import Breaker
from heshi.routing.names import NameEntry, Target

_HEADER_LIMIT = 1000  # a long retry chain must not grow a header past proxy limits


@dataclass(frozen=True, slots=True)
class Pick:
    """The next target to try and why it was chosen."""

    entry: NameEntry
    target: Target
    stage: int  # index in the chain: 0 = the requested name, then fallbacks
    again: bool  # this backend was already tried for this request: back off first
    skipped: tuple[str, ...]  # backends passed over because their breaker is open


class TargetWalk:
    """Yields targets for one request, one :meth:`next` per attempt."""

    def __init__(
        self,
        chain: tuple[NameEntry, ...],
        balancer: Balancer,
        breakers: Mapping[str, Breaker],
    ) -> None:
        self._chain = chain
        self._balancer = balancer
        self._breakers = breakers
        self._stage = 0
        self._tried: set[tuple[int, int]] = set()  # (stage, target index) in this lap
        self._backends: set[str] = set()  # every backend tried for this request

    def next(self) -> Pick | None:
        """The next target, or None when no target with a closed breaker is left."""
        skipped: list[str] = []
        for _lap in range(2):
            progressed = bool(self._tried)
            while self._stage < len(self._chain):
                pick = self._pick_in_stage(skipped)
                if pick is not None:
                    return pick
                self._stage += 1
            if not progressed:
                return None  # a whole lap found nothing to try
            self._stage = 0
            self._tried.clear()
        return None

    def _pick_in_stage(self, skipped: list[str]) -> Pick | None:
        entry = self._chain[self._stage]
        indexes: list[int] = []
        for i, target in enumerate(entry.targets):
            if (self._stage, i) in self._tried:
                continue
            if self._breakers[target.backend].available():
                indexes.append(i)
            elif target.backend not in skipped:
                skipped.append(target.backend)
        if not indexes:
            return None
        choice = self._balancer.choose(entry.balance, [entry.targets[i] for i in indexes])
        index = indexes[choice]
        target = entry.targets[index]
        self._tried.add((self._stage, index))
        again = target.backend in self._backends
        self._backends.add(target.backend)
        return Pick(entry, target, self._stage, again, tuple(skipped))


class RouteLog:
    """Builds the ``x-heshi-route`` header and the "tried" list of an error message.

    Example: ``auto->large(score=3:math,code);qwen-large->vllm-a(least-busy);
    vllm-a:502;retry->vllm-b`` — ``auto`` chose the large tier, the route picked
    ``vllm-a`` as least busy, it failed with 502, the retry went to ``vllm-b``.
    """

    def __init__(self, prefix: str, requested: str, labels: Mapping[str, str]) -> None:
        self._parts: list[str] = [prefix] if prefix else []
        self._requested = requested  # header-safe label of the name the plan started from
        self._labels = labels  # backend → header-safe label
        self._stage: int | None = None
        self.tried: list[str] = []

    def picked(self, pick: Pick) -> None:
        """Record the target an attempt goes to."""
        backend = self._labels[pick.target.backend]
        notes = [f"open:{self._labels[b]}" for b in pick.skipped]
        entry = pick.entry
        if self._stage is None and pick.stage == 0:
            how = (
                entry.balance if entry.kind == "route" else "alias" if entry.kind == "alias" else ""
            )
            notes = [how, *notes] if how else notes
            segment = f"{entry.label}->{backend}"
        elif self._stage is None:
            # Every target of the requested name had an open breaker: say so, then fall back.
            self._parts.append(f"{self._requested}({','.join(notes)})")
            notes = []
            segment = f"fallback->{entry.label}->{backend}"
        elif self._stage == pick.stage:
            segment = f"retry->{backend}"
        elif self._stage > pick.stage:  # every target tried: starting over from the top
            segment = f"retry->{entry.label}->{backend}"
        else:
            segment = f"fallback->{entry.label}->{backend}"
        self._parts.append(segment + (f"({','.join(notes)})" if notes else ""))
        self._stage = pick.stage

    def all_open(self, backends: Iterable[str]) -> None:
        """Record that nothing was tried: every backend's breaker is open."""
        notes = ",".join(f"open:{self._labels[b]}" for b in backends)
        self._parts.append(f"{self._requested}({notes})")

    def failed(self, backend: str, status: int) -> None:
        """Record that the attempt on ``backend`` failed with ``status``."""
        self._parts.append(f"{self._labels[backend]}:{status}")
        self.tried.append(f"{backend} ({status})")

    def header(self) -> str:
        """The header value: ASCII, ``;``-separated, at most 1000 characters."""
        value = ";".join(self._parts)
        if len(value) > _HEADER_LIMIT:
            value = value[: _HEADER_LIMIT - 3] + "..."
        return value
