"""Admission behaviour both implementations share: in-process and Redis, same tests."""

from __future__ import annotations

import asyncio
import contextlib

import pytest

from heshi.errors import QuotaExceeded
from heshi.gateway.quota import Admission, Limits, Reservation, Scope, ScopeUsage
from tests.fakes.clock import FakeClock
from tests.fakes.waiting import wait_until_async

TENANT = "acme"


def key(key_id: str, **limits: int) -> Scope:
    """A key scope with the given limits."""
    return Scope("key", key_id, Limits(**limits))


def tenant(tenant_id: str = TENANT, **limits: int) -> Scope:
    """A tenant scope with the given limits."""
    return Scope("tenant", tenant_id, Limits(**limits))


async def refused(admission: Admission, scopes: list[Scope], tokens: int) -> QuotaExceeded:
    """The refusal ``reserve`` raises (fails the test if it admits)."""
    with pytest.raises(QuotaExceeded) as info:
        await admission.reserve(scopes, tokens)
    return info.value


async def test_200_concurrent_requests_against_a_budget_that_admits_50(
    admission: Admission,
) -> None:
    scopes = [key("k1"), tenant(budget_tokens=50 * 40)]
    results = await asyncio.gather(
        *(admission.reserve(scopes, 40) for _ in range(200)), return_exceptions=True
    )
    admitted = [r for r in results if isinstance(r, Reservation)]
    refusals = [r for r in results if isinstance(r, QuotaExceeded)]
    assert len(admitted) == 50
    assert len(refusals) == 150
    assert {(e.limit, e.retry_after, e.code) for e in refusals} == {
        ("tenant.budget_tokens", None, "insufficient_quota")
    }
    held = await admission.usage(scopes[1])
    assert held.budget_spent + held.budget_reserved == 2000

    await asyncio.gather(*(admission.settle(r, 40) for r in admitted))
    after = await admission.usage(scopes[1])
    assert (after.budget_spent, after.budget_reserved) == (2000, 0)
    assert (await refused(admission, scopes, 1)).limit == "tenant.budget_tokens"


async def test_61st_request_in_a_minute_waits_for_the_oldest_to_leave(
    admission: Admission, clock: FakeClock
) -> None:
    scopes = [key("k1", rpm=60)]
    for _ in range(60):
        await admission.reserve(scopes, 0)
        clock.advance(0.5)  # the 60 requests span t=0 … 29.5; now t=30
    err = await refused(admission, scopes, 0)
    assert err.limit == "key.rpm"
    assert err.retry_after == 30  # the request at t=0 leaves the window at t=60
    assert "每分钟请求数" in err.message and "requests-per-minute" in err.message
    assert "60" in err.message

    clock.advance(30)  # t = 60: the first request has left
    await admission.reserve(scopes, 0)
    err = await refused(admission, scopes, 0)
    assert err.retry_after == 1  # the next one leaves at 60.5: rounded up to 1 s


async def test_settling_fewer_tokens_frees_tpm_and_settle_is_idempotent(
    admission: Admission,
) -> None:
    scopes = [key("k1", tpm=100)]
    first = await admission.reserve(scopes, 80)
    err = await refused(admission, scopes, 30)
    assert (err.limit, err.retry_after) == ("key.tpm", 60)
    assert "80" in err.message and "100" in err.message

    await admission.settle(first, 20)
    second = await admission.reserve(scopes, 30)
    assert (await admission.usage(scopes[0])).tokens_in_window == 50

    await admission.settle(first, 80)  # a second settle changes nothing
    assert (await admission.usage(scopes[0])).tokens_in_window == 50
    await admission.settle(second, 0)  # settle(0) returns the whole reservation
    assert (await admission.usage(scopes[0])).tokens_in_window == 20


async def test_tpm_retry_after_counts_only_the_entries_that_must_leave(
    admission: Admission, clock: FakeClock
) -> None:
    scopes = [tenant(tpm=100)]
    await admission.reserve(scopes, 60)  # t=0
    clock.advance(10)
    await admission.reserve(scopes, 30)  # t=10
    clock.advance(10)
    err = await refused(admission, scopes, 50)  # t=20: 90 + 50 > 100, 40 must leave
    assert (err.limit, err.retry_after) == ("tenant.tpm", 40)
    clock.advance(40)
    await admission.reserve(scopes, 50)


async def test_hundreds_of_entries_leave_the_window_together(
    admission: Admission, clock: FakeClock
) -> None:
    scopes = [key("k1", rpm=300, tpm=300)]
    for _ in range(300):  # 1 token each at t = 0, 0.125, … 37.375
        await admission.reserve(scopes, 1)
        clock.advance(0.125)
    err = await refused(admission, scopes, 1)
    assert (err.limit, err.retry_after) == ("key.rpm", 23)  # t=0 leaves at 60; now 37.5
    err = await refused(admission, [key("k1", tpm=300)], 100)
    # 100 entries must leave; the 100th oldest (t=12.375) leaves at 72.375.
    assert (err.limit, err.retry_after) == ("key.tpm", 35)
    clock.advance(61)
    assert await admission.usage(scopes[0]) == ScopeUsage(0, 0, 0, 0)
    await admission.reserve(scopes, 300)


async def test_request_larger_than_tpm_is_refused_without_retry(admission: Admission) -> None:
    err = await refused(admission, [key("k1", tpm=100)], 101)
    assert (err.limit, err.retry_after, err.code) == ("key.tpm", None, "rate_limit_exceeded")
    assert "max_tokens" in err.message


async def test_tenant_limit_is_shared_by_its_keys_and_key_limits_are_not(
    admission: Admission,
) -> None:
    def scopes(key_id: str, tenant_id: str = TENANT) -> list[Scope]:
        return [key(key_id, rpm=2), tenant(tenant_id, rpm=3)]

    await admission.reserve(scopes("k1"), 1)
    await admission.reserve(scopes("k1"), 1)
    assert (await refused(admission, scopes("k1"), 1)).limit == "key.rpm"
    await admission.reserve(scopes("k2"), 1)  # k2 has its own key limit
    err = await refused(admission, scopes("k2"), 1)  # but the tenant's 3 are used up
    assert err.limit == "tenant.rpm"
    assert "租户 acme" in err.message and "tenant acme" in err.message
    await admission.reserve(scopes("k3", "other"), 1)  # another tenant is unaffected


async def test_refusal_by_the_tenant_leaves_the_key_untouched(admission: Admission) -> None:
    key_scope = key("k1", rpm=10, tpm=1000, budget_tokens=1000)
    scopes = [key_scope, tenant(budget_tokens=150)]
    settled = await admission.reserve(scopes, 100)
    await admission.settle(settled, 100)
    pending = await admission.reserve(scopes, 20)
    before = await admission.usage(key_scope)

    err = await refused(admission, scopes, 40)
    assert err.limit == "tenant.budget_tokens"
    assert "100" in err.message and "20" in err.message and "150" in err.message
    assert await admission.usage(key_scope) == before
    assert (before.requests_in_window, before.tokens_in_window) == (2, 120)
    assert (before.budget_spent, before.budget_reserved) == (100, 20)
    await admission.settle(pending, 20)


async def test_restore_spent_seeds_budgets_without_overwriting(admission: Admission) -> None:
    scopes = [key("k1", budget_tokens=100), tenant(budget_tokens=1000)]
    await admission.restore_spent({("key", "k1"): 90, ("tenant", TENANT): 500})
    err = await refused(admission, scopes, 11)
    assert err.limit == "key.budget_tokens"
    r = await admission.reserve(scopes, 10)
    await admission.settle(r, 10)

    await admission.restore_spent({("key", "k1"): 0, ("tenant", TENANT): 0})  # too late
    assert (await admission.usage(scopes[0])).budget_spent == 100
    assert (await admission.usage(scopes[1])).budget_spent == 510


async def test_unsettled_reservation_expires_and_stops_counting(
    admission: Admission, clock: FakeClock
) -> None:
    scopes = [key("k1", tpm=100, budget_tokens=100)]
    lost = await admission.reserve(scopes, 100)  # its process "dies": never settled
    assert (await refused(admission, scopes, 1)).limit == "key.tpm"
    clock.advance(61)  # left the TPM window, but still holds the budget
    assert (await refused(admission, scopes, 1)).limit == "key.budget_tokens"
    clock.advance(540)  # past the 600 s reservation expiry
    assert await admission.usage(scopes[0]) == ScopeUsage(0, 0, 0, 0)
    late = await admission.reserve(scopes, 70)
    await admission.settle(late, 70)
    # A settle after expiry still charges what was really used.
    await admission.settle(lost, 30)
    assert (await admission.usage(scopes[0])).budget_spent == 100


async def test_settle_completes_when_the_caller_is_cancelled(admission: Admission) -> None:
    scopes = [key("k1", tpm=1000, budget_tokens=1000)]
    reservation = await admission.reserve(scopes, 500)
    task = asyncio.create_task(admission.settle(reservation, 7))
    await asyncio.sleep(0)  # the settle has started …
    task.cancel()  # … when the client disconnects
    with contextlib.suppress(asyncio.CancelledError):
        await task

    async def released() -> ScopeUsage | None:
        usage = await admission.usage(scopes[0])
        return usage if usage.budget_reserved == 0 else None

    usage = await wait_until_async(
        released, timeout=1.0, interval=0.005, message="the reservation was never released"
    )
    assert (usage.budget_spent, usage.budget_reserved, usage.tokens_in_window) == (7, 0, 7)


async def test_scopes_without_limits_cost_nothing(admission: Admission) -> None:
    free = [key("k1"), tenant()]
    reservation = await admission.reserve(free, 10**9)
    assert reservation.held == ()
    await admission.settle(reservation, 10**9)
    assert await admission.usage(free[0]) == await admission.usage(key("never-seen"))


async def test_negative_tokens_are_rejected(admission: Admission) -> None:
    with pytest.raises(ValueError, match="tokens"):
        await admission.reserve([key("k1", rpm=1)], -1)
    reservation = await admission.reserve([key("k1", rpm=1)], 1)
    with pytest.raises(ValueError, match="used_tokens"):
        await admission.settle(reservation, -1)
