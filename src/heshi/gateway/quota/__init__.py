"""Admission before the call: per-key and per-tenant RPM, TPM and token budgets.

The gateway calls ``reserve(scopes, tokens)`` before it contacts a backend, with
``tokens`` the most the request can use (prompt estimate + ``max_tokens``), and
``settle(reservation, used)`` after it, from a ``finally`` so a broken stream settles
what was produced. Two implementations share one contract (:class:`Admission`):
:class:`InProcessAdmission` for a single gateway process and :class:`RedisAdmission`
for replicas sharing a Redis; :func:`make_admission` picks one from the config.

Semantics
---------
Atomic across scopes
    A request is admitted only if every scope admits it; otherwise nothing changes
    and ``QuotaExceeded`` names the first limit hit (scopes in the order given, within
    a scope rpm, tpm, budget_tokens), e.g. ``limit="tenant.budget_tokens"``.
RPM: sliding log, exact
    Each admitted request's time is logged (a deque; a Redis sorted set) and entries
    older than 60 s are dropped, so at most ``rpm`` requests are admitted in *any*
    60-second window (t-60, t]. There is no approximation error (a two-bucket sliding
    estimate can admit up to 2x the limit at a bucket edge under bursty load); the
    only error is the clock's. The price is memory: one entry per request admitted in
    the last minute and scope, bounded by ``rpm`` itself.
TPM: sliding log of tokens (Redis: exact; in process: 0.1 s buckets)
    Every admitted request adds an entry at its admission time worth its reserved
    tokens; settle replaces that by the actual usage; the entry leaves the window 60 s
    after admission (so an unsettled reservation stops counting toward TPM after 60 s,
    and a request running longer than a minute is charged to the minute it started). A
    running total per scope is adjusted on add, settle and eviction, so a check costs
    O(1) amortised. A request that alone needs more than ``tpm`` is refused with
    ``retry_after=None``: waiting would not help. In process, requests admitted within
    0.1 s of each other share one entry that leaves with its newest request, which keeps
    a busy key's minute to at most 600 entries (per-request entries measured 23 MB at
    2k req/s); the only effect is that a refusal may come up to 0.1 s early, never late.
Budget: lifetime tokens, reserved up front
    Admitted iff ``spent + reserved + tokens <= budget_tokens``, and the tokens are
    reserved in the same atomic step, so concurrent requests can never overrun the
    budget (LiteLLM checks after the call, so bursts overrun). Settle moves the actual
    usage from reserved to spent. The budget can be exceeded only if a request uses
    more than it reserved (the caller's estimate was low: the real usage is still
    charged, because the ledger must not undercount) or runs longer than
    ``reservation_ttl``.
Unsettled reservations expire
    A reservation never settled (process killed) holds budget for
    ``reservation_ttl`` (default 600 s) and is then released; in Redis the pending
    reservations of a scope are a sorted set scored by expiry, cleaned inside the
    scripts. A settle after expiry charges the actual usage to ``spent``.
Retry-After
    When the entry whose departure makes room leaves the window, in whole seconds
    rounded up, at least 1; ``None`` for an exhausted budget (an operator must act).
Settle
    Idempotent (the reservation remembers it was settled; a second call is a no-op),
    ``settle(r, 0)`` returns everything, and it completes even if the calling task is
    cancelled (in-process it never awaits; in Redis the script runs in a shielded task).
Free when unlimited
    Scopes without limits are skipped; a request with no limits in any scope costs no
    Redis round trip at all.
Money budgets
    A key's or tenant's budget in yuan is a scope of its own (kind ``key.cny`` /
    ``tenant.cny``, :func:`money_scope`) whose amounts are micro-yuan: the same
    reserve-then-settle budget, so concurrent requests cannot overrun it either. The
    gateway reserves the most a request can cost (its reserved tokens at the model's
    price) in the money scopes first, then its tokens in the others; when the second
    step refuses, the first is settled at 0, which undoes it completely.
Lifetime spend at startup
    ``restore_spent`` seeds each scope's spent tokens from the ledger, only where no
    counter exists yet (another replica may already be counting). Call it before
    serving. Spent is counted only for scopes that had a budget when the request was
    admitted.
"""

from __future__ import annotations

from heshi.gateway.quota.limits import (
    DEFAULT_RESERVATION_TTL,
    WINDOW_SECONDS,
    Admission,
    Limits,
    Reservation,
    Scope,
    ScopeUsage,
    money_scope,
)
from heshi.gateway.quota.memory import InProcessAdmission
from heshi.gateway.quota.redis import RedisAdmission

__all__ = [
    "DEFAULT_RESERVATION_TTL",
    "WINDOW_SECONDS",
    "Admission",
    "InProcessAdmission",
    "Limits",
    "RedisAdmission",
    "Reservation",
    "Scope",
    "ScopeUsage",
    "make_admission",
    "money_scope",
]


def make_admission(
    redis_url: str | None,
    *,
    prefix: str = "heshi",
    reservation_ttl: float = DEFAULT_RESERVATION_TTL,
) -> Admission:
    """Redis-backed admission when ``redis_url`` is set (``StoreConfig.redis_url``), else
    in-process. Nothing connects until the first call."""
    if redis_url is None:
        return InProcessAdmission(reservation_ttl=reservation_ttl)
    return RedisAdmission.from_url(redis_url, prefix=prefix, reservation_ttl=reservation_ttl)
