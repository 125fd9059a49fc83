"""What admission works with: limits, scopes, reservations, and the refusal it raises.

Shared by both implementations so that a refusal reads the same whether the counters
live in this process or in Redis.
"""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any, Literal, Protocol

from heshi.errors import QuotaExceeded

WINDOW_SECONDS = 60.0  # RPM and TPM are "per minute": a sliding 60-second window
# An unsettled reservation (its process was killed, or a caller forgot to settle) stops
# holding budget after this long. It must exceed the longest request the gateway allows,
# or a slow stream's reservation would be released while it still runs.
DEFAULT_RESERVATION_TTL = 600.0

# "key.cny" / "tenant.cny": the same key or tenant's money budget, counted in micro-yuan
# by the budget machinery (a scope whose only limit is ``budget_tokens``, in micro-yuan).
ScopeKind = Literal["key", "tenant", "key.cny", "tenant.cny"]
LimitName = Literal["rpm", "tpm", "budget_tokens"]


@dataclass(frozen=True)
class Limits:
    """Per-scope limits; ``None`` means unlimited."""

    rpm: int | None = None  # requests admitted in any 60 s window
    tpm: int | None = None  # tokens (reserved, then actual) in any 60 s window
    budget_tokens: int | None = None  # lifetime tokens, reserved before the call

    @property
    def any(self) -> bool:
        """True when at least one limit is set (otherwise the scope costs nothing)."""
        return self.rpm is not None or self.tpm is not None or self.budget_tokens is not None


@dataclass(frozen=True)
class Scope:
    """One thing that limits apply to: an API key or a tenant, e.g. ``Scope("key", "k1", …)``."""

    kind: ScopeKind
    id: str
    limits: Limits


@dataclass(frozen=True)
class HeldScope:
    """Which counters one reservation touched in one scope, so settle undoes exactly those."""

    kind: ScopeKind
    id: str
    tpm: bool
    budget: bool


@dataclass
class Reservation:
    """What one ``reserve`` holds, per scope; pass it back to ``settle``. Opaque to callers."""

    id: str
    tokens: int
    held: tuple[HeldScope, ...]
    at: float  # admission time on the admission's clock
    settled: bool = field(default=False)
    # In-process only: the TPM buckets this reservation added to, one per held scope.
    local: Any = field(default=None, repr=False, compare=False)


@dataclass(frozen=True)
class ScopeUsage:
    """A scope's counters right now (after expired entries are dropped)."""

    requests_in_window: int
    tokens_in_window: int
    budget_spent: int
    budget_reserved: int


class Admission(Protocol):
    """Rate limits and token budgets, checked and reserved before the upstream call."""

    async def reserve(self, scopes: Sequence[Scope], tokens: int) -> Reservation:
        """Admit one request reserving ``tokens`` in every scope, or change nothing.

        Raises ``QuotaExceeded`` naming the first limit hit (scopes in the order given;
        within a scope rpm, then tpm, then budget_tokens).
        """
        ...

    async def settle(self, reservation: Reservation, used_tokens: int) -> None:
        """Replace the reservation by the actual usage. A second call is a no-op."""
        ...

    async def restore_spent(self, spent: Mapping[tuple[str, str], int]) -> None:
        """Seed lifetime budget usage from the ledger, without overwriting existing counters."""
        ...

    async def usage(self, scope: Scope) -> ScopeUsage:
        """The counters of one scope now (for headers, the console and tests)."""
        ...

    async def close(self) -> None:
        """Wait for settles in flight, then release connections."""
        ...


def check_tokens(tokens: int, what: str) -> None:
    """Reject negative token counts: they would hand out capacity that does not exist."""
    if tokens < 0:
        raise ValueError(f"{what} must be >= 0, got {tokens}")


def limited(scopes: Sequence[Scope]) -> list[Scope]:
    """The scopes that have any limit; the others need no bookkeeping at all."""
    return [s for s in scopes if s.limits.any]


def held_scope(scope: Scope) -> HeldScope:
    """What a reservation in ``scope`` will have to undo at settle time."""
    lim = scope.limits
    return HeldScope(scope.kind, scope.id, lim.tpm is not None, lim.budget_tokens is not None)


def retry_seconds(retry_at: float | None, now: float) -> int | None:
    """Whole seconds until ``retry_at`` (rounded up, at least 1); None stays None."""
    if retry_at is None:
        return None
    # Round to microseconds first so float noise (40.000000001) does not add a second.
    return max(1, math.ceil(round(retry_at - now, 6)))


_WHO = {"key": ("API 密钥", "API key"), "tenant": ("租户", "tenant")}


def money_scope(kind: Literal["key", "tenant"], scope_id: str, budget_micro: int) -> Scope:
    """The money budget of a key or tenant: amounts reserved and settled in it are
    micro-yuan (CNY × 10⁻⁶), not tokens."""
    money: ScopeKind = "key.cny" if kind == "key" else "tenant.cny"
    return Scope(money, scope_id, Limits(budget_tokens=budget_micro))


def _yuan(micro: int) -> str:
    return f"{micro / 1_000_000:.4f}"


def _retry_text(retry: int | None) -> tuple[str, str]:
    if retry is None:
        return "", ""
    return f"，请 {retry} 秒后重试", f"; retry in {retry} s"


def refusal(
    scope: Scope, limit: LimitName, counts: Sequence[int], retry_at: float | None, now: float
) -> QuotaExceeded:
    """The bilingual ``QuotaExceeded`` for one refused limit.

    ``counts`` is, for rpm: (requests in window, limit); for tpm: (tokens in window,
    requested, limit); for budget_tokens: (spent, reserved, requested, budget).
    """
    base, _, money = scope.kind.partition(".")
    zh_who, en_who = _WHO[base]
    zh_who, en_who = f"{zh_who} {scope.id}", f"{en_who} {scope.id}"
    if money:
        paid, held, most, budget = (_yuan(c) for c in counts)
        msg = (
            f"{zh_who} 费用预算不足（已花 {paid} + 预留 {held} + 本次最多 {most} > 预算"
            f" {budget} 元），请联系管理员 / {en_who}: spend budget exhausted ({paid} spent +"
            f" {held} reserved + up to {most} for this request > budget {budget} CNY); ask"
            " an operator to raise it"
        )
        return QuotaExceeded(msg, limit=f"{base}.budget_cny", retry_after=None)
    retry = retry_seconds(retry_at, now)
    zh_retry, en_retry = _retry_text(retry)
    if limit == "rpm":
        used, cap = counts
        msg = (
            f"{zh_who} 每分钟请求数已达上限（最近 60 秒 {used} 次，上限 {cap} 次）{zh_retry}"
            f" / {en_who}: requests-per-minute limit reached ({used} in the last 60 s,"
            f" limit {cap}){en_retry}"
        )
    elif limit == "tpm" and retry is None:
        _, asked, cap = counts
        msg = (
            f"{zh_who} 本次请求需要 {asked} 个令牌，超过每分钟上限 {cap}，无法放行"
            f" / {en_who}: this request needs {asked} tokens, more than the"
            f" tokens-per-minute limit of {cap}; lower max_tokens or raise the limit"
        )
    elif limit == "tpm":
        used, asked, cap = counts
        msg = (
            f"{zh_who} 每分钟令牌数超限（最近 60 秒已用 {used} + 本次 {asked} > 上限 {cap}）"
            f"{zh_retry} / {en_who}: tokens-per-minute limit reached ({used} in the last"
            f" 60 s + {asked} requested > limit {cap}){en_retry}"
        )
    else:
        spent, reserved, asked, cap = counts
        msg = (
            f"{zh_who} 令牌预算不足（已用 {spent} + 预留 {reserved} + 本次 {asked} > 预算 {cap}）"
            f"，请联系管理员 / {en_who}: token budget exhausted ({spent} spent + {reserved}"
            f" reserved + {asked} requested > budget {cap}); ask an operator to raise it"
        )
    return QuotaExceeded(msg, limit=f"{scope.kind}.{limit}", retry_after=retry)
