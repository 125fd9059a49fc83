"""Admission for one gateway process: counters in memory, no network.

Correct only when one process serves all traffic. Every public method does its whole
check-and-update without awaiting, so on asyncio's single thread no other request can
interleave between a check and its update: that is what makes it exact under
concurrency without a lock.
"""

from __future__ import annotations

import itertools
import time
from collections import OrderedDict, deque
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field

from heshi.errors import QuotaExceeded
from heshi.gateway.quota.limits import (
    DEFAULT_RESERVATION_TTL,
    WINDOW_SECONDS,
    Reservation,
    Scope,
    ScopeUsage,
    check_tokens,
    held_scope,
    limited,
    refusal,
)

ScopeKey = tuple[str, str]


# Requests admitted within this many seconds of each other share one TPM bucket. Per
# request entries cost ~250 bytes each and a busy key holds a minute of them (120k at
# 2k req/s: ~23 MB, measured); buckets bound that to 600 per scope. A bucket counts
# until its *newest* entry leaves the window, so an entry may count up to this long
# after its own minute: refusals can come that much early, never late.
_BUCKET_SECONDS = 0.1


@dataclass(slots=True)
class _Bucket:
    """Tokens of requests admitted close together: reserved until settled, then actual."""

    first: float  # admission time of the oldest request in it
    at: float  # admission time of the newest: the bucket leaves the window with it
    tokens: int
    live: bool = True  # False once evicted, so a late settle leaves the total alone


@dataclass
class _Counters:
    """One scope's sliding logs and pending budget reservations.

    Entries are appended in clock order, so the oldest is always first and eviction
    only ever pops from the front.
    """

    requests: deque[float] = field(default_factory=deque)  # admission times
    tokens: deque[_Bucket] = field(default_factory=deque)  # oldest first
    tokens_total: int = 0
    pending: OrderedDict[str, tuple[float, int]] = field(default_factory=OrderedDict)
    reserved: int = 0  # sum of pending budget reservations

    def evict(self, now: float) -> None:
        """Drop what left the window and budget reservations past their expiry."""
        cutoff = now - WINDOW_SECONDS
        while self.requests and self.requests[0] <= cutoff:
            self.requests.popleft()
        while self.tokens and self.tokens[0].at <= cutoff:
            bucket = self.tokens.popleft()
            bucket.live = False
            self.tokens_total -= bucket.tokens
        while self.pending:
            rid, (expires, n) = next(iter(self.pending.items()))
            if expires > now:
                break
            del self.pending[rid]
            self.reserved -= n

    def add_tokens(self, now: float, tokens: int) -> _Bucket:
        """Count ``tokens`` admitted at ``now``; the bucket they went into."""
        last = self.tokens[-1] if self.tokens else None
        if last is not None and now - last.first < _BUCKET_SECONDS:
            last.at = now
            last.tokens += tokens
        else:
            last = _Bucket(now, now, tokens)
            self.tokens.append(last)
        self.tokens_total += tokens
        return last

    def tokens_free_at(self, room: int) -> float | None:
        """When the window will hold at most ``room`` tokens (None: never, room < 0)."""
        if room < 0:
            return None
        total = self.tokens_total
        for bucket in self.tokens:
            total -= bucket.tokens
            if total <= room:
                return bucket.at + WINDOW_SECONDS
        return None  # unreachable while tokens_total > room; kept for the type checker


class InProcessAdmission:
    """Exact RPM/TPM/budget admission for a single gateway process.

    ``clock`` must not go backwards (the default is ``time.monotonic``); tests inject a
    fake one. ``reservation_ttl`` is how long an unsettled reservation holds budget.
    """

    def __init__(
        self,
        *,
        clock: Callable[[], float] = time.monotonic,
        reservation_ttl: float = DEFAULT_RESERVATION_TTL,
    ) -> None:
        self._clock = clock
        self._ttl = reservation_ttl
        self._counters: dict[ScopeKey, _Counters] = {}
        self._spent: dict[ScopeKey, int] = {}
        self._ids = itertools.count(1)

    async def reserve(self, scopes: Sequence[Scope], tokens: int) -> Reservation:
        """See :class:`heshi.gateway.quota.Admission`. Never awaits: atomic by construction."""
        check_tokens(tokens, "tokens")
        now = self._clock()
        active = limited(scopes)
        rid = str(next(self._ids))
        if not active:
            return Reservation(rid, tokens, (), now)
        counters = [self._counters_of(s) for s in active]
        for scope, c in zip(active, counters, strict=True):
            c.evict(now)
            refused = self._check(scope, c, tokens, now)
            if refused is not None:
                raise refused
        buckets: list[_Bucket | None] = []
        for scope, c in zip(active, counters, strict=True):
            lim = scope.limits
            if lim.rpm is not None:
                c.requests.append(now)
            buckets.append(c.add_tokens(now, tokens) if lim.tpm is not None else None)
            if lim.budget_tokens is not None:
                c.pending[rid] = (now + self._ttl, tokens)
                c.reserved += tokens
        held = tuple(held_scope(s) for s in active)
        return Reservation(rid, tokens, held, now, local=tuple(buckets))

    def _check(self, scope: Scope, c: _Counters, tokens: int, now: float) -> QuotaExceeded | None:
        lim = scope.limits
        if lim.rpm is not None and len(c.requests) >= lim.rpm:
            # The entry whose departure leaves room for one more request.
            oldest = c.requests[len(c.requests) - lim.rpm]
            return refusal(scope, "rpm", (len(c.requests), lim.rpm), oldest + WINDOW_SECONDS, now)
        if lim.tpm is not None and c.tokens_total + tokens > lim.tpm:
            free_at = c.tokens_free_at(lim.tpm - tokens)
            return refusal(scope, "tpm", (c.tokens_total, tokens, lim.tpm), free_at, now)
        if lim.budget_tokens is not None:
            spent = self._spent.get((scope.kind, scope.id), 0)
            if spent + c.reserved + tokens > lim.budget_tokens:
                counts = (spent, c.reserved, tokens, lim.budget_tokens)
                return refusal(scope, "budget_tokens", counts, None, now)
        return None

    async def settle(self, reservation: Reservation, used_tokens: int) -> None:
        """See :class:`heshi.gateway.quota.Admission`. Never awaits, so it always completes."""
        check_tokens(used_tokens, "used_tokens")
        if reservation.settled:
            return
        reservation.settled = True
        rid = reservation.id
        buckets = reservation.local or (None,) * len(reservation.held)
        for held, bucket in zip(reservation.held, buckets, strict=True):
            key = (held.kind, held.id)
            c = self._counters.get(key)
            if held.tpm and c is not None and bucket is not None and bucket.live:
                bucket.tokens += used_tokens - reservation.tokens
                c.tokens_total += used_tokens - reservation.tokens
            if held.budget:
                if c is not None and rid in c.pending:
                    c.reserved -= c.pending.pop(rid)[1]
                # Charged even when the reservation already expired: the tokens were used.
                self._spent[key] = self._spent.get(key, 0) + used_tokens

    async def restore_spent(self, spent: Mapping[tuple[str, str], int]) -> None:
        """Seed lifetime usage; a counter that already exists is left alone."""
        for key, tokens in spent.items():
            check_tokens(tokens, f"spent[{key!r}]")
            self._spent.setdefault(key, tokens)

    async def usage(self, scope: Scope) -> ScopeUsage:
        """The scope's counters now."""
        key = (scope.kind, scope.id)
        c = self._counters.get(key) or _Counters()
        c.evict(self._clock())
        return ScopeUsage(len(c.requests), c.tokens_total, self._spent.get(key, 0), c.reserved)

    async def close(self) -> None:
        """Nothing to release; present for the protocol."""

    def _counters_of(self, scope: Scope) -> _Counters:
        key = (scope.kind, scope.id)
        c = self._counters.get(key)
        if c is None:
            c = self._counters[key] = _Counters()
        return c
