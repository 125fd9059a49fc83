"""What only the Redis admission promises: several replicas, one set of counters."""

from __future__ import annotations

import asyncio

import pytest
from redis.asyncio import Redis
from redis.exceptions import RedisError

from heshi.errors import QuotaExceeded
from heshi.gateway.quota import (
    InProcessAdmission,
    Limits,
    RedisAdmission,
    Reservation,
    Scope,
    make_admission,
)
from heshi.gateway.quota.limits import HeldScope
from tests.quota.conftest import REDIS_URL, ReplicaFactory


async def test_two_replicas_sharing_one_redis_budget_admit_exactly_50(
    redis_replicas: ReplicaFactory,
) -> None:
    a, b = redis_replicas(), redis_replicas()
    scopes = [Scope("key", "k1", Limits()), Scope("tenant", "acme", Limits(budget_tokens=5000))]
    calls = [(a if i % 2 else b).reserve(scopes, 100) for i in range(200)]
    results = await asyncio.gather(*calls, return_exceptions=True)
    admitted = [r for r in results if isinstance(r, Reservation)]
    refused = [r for r in results if isinstance(r, QuotaExceeded)]
    assert (len(admitted), len(refused)) == (50, 150)
    assert {e.limit for e in refused} == {"tenant.budget_tokens"}

    # Each replica settles its own reservations; both see one total.
    await asyncio.gather(*(a.settle(r, 100) for r in admitted[::2]))
    await asyncio.gather(*(b.settle(r, 100) for r in admitted[1::2]))
    for replica in (a, b):
        usage = await replica.usage(scopes[1])
        assert (usage.budget_spent, usage.budget_reserved) == (5000, 0)


async def test_rpm_is_shared_across_replicas(redis_replicas: ReplicaFactory) -> None:
    a, b = redis_replicas(), redis_replicas()
    scopes = [Scope("key", "k1", Limits(rpm=3))]
    await a.reserve(scopes, 1)
    await b.reserve(scopes, 1)
    await a.reserve(scopes, 1)
    err = None
    try:
        await b.reserve(scopes, 1)
    except QuotaExceeded as exc:
        err = exc
    assert err is not None and err.limit == "key.rpm" and err.retry_after == 60


async def test_restore_spent_keeps_the_counter_another_replica_holds(
    redis_replicas: ReplicaFactory,
) -> None:
    first = redis_replicas()
    scope = Scope("tenant", "acme", Limits(budget_tokens=1000))
    await first.restore_spent({("tenant", "acme"): 300})
    await first.settle(await first.reserve([scope], 50), 50)

    # A replica started later seeds from a ledger that has not caught up yet.
    second = redis_replicas()
    await second.restore_spent({("tenant", "acme"): 300, ("key", "new"): 7})
    assert (await second.usage(scope)).budget_spent == 350
    assert (await second.usage(Scope("key", "new", Limits()))).budget_spent == 7


async def test_unlimited_requests_make_no_redis_round_trip() -> None:
    # Nothing listens on port 1: any command would fail to connect.
    admission = RedisAdmission.from_url("redis://127.0.0.1:1/0")
    reservation = await admission.reserve([Scope("key", "k1", Limits())], 100)
    await admission.settle(reservation, 100)
    await admission.close()


async def test_server_clock_is_used_when_no_clock_is_given(redis_prefix: str) -> None:
    admission = RedisAdmission.from_url(REDIS_URL, prefix=redis_prefix)
    scopes = [Scope("key", "k1", Limits(rpm=1))]
    try:
        await admission.reserve(scopes, 1)
        try:
            await admission.reserve(scopes, 1)
        except QuotaExceeded as exc:
            assert exc.retry_after is not None and 1 <= exc.retry_after <= 60
        else:
            raise AssertionError("the second request in a minute was admitted")
    finally:
        await admission.close()


async def test_idle_window_keys_expire_but_spent_does_not(redis_prefix: str) -> None:
    client = Redis.from_url(REDIS_URL, decode_responses=True)
    admission = RedisAdmission(client, prefix=redis_prefix)
    scope = Scope("key", "k1", Limits(rpm=5, tpm=500, budget_tokens=500))
    await admission.settle(await admission.reserve([scope], 10), 10)
    base = f"{redis_prefix}:quota:key:k1:"
    assert 0 < await client.pttl(base + "rpm") <= 61_000
    assert 0 < await client.pttl(base + "tpmv") <= 61_000
    assert await client.pttl(base + "spent") == -1  # lifetime: never expires
    await admission.close()
    await client.aclose()


async def test_make_admission_picks_by_redis_url() -> None:
    assert isinstance(make_admission(None), InProcessAdmission)
    shared = make_admission(REDIS_URL, prefix="heshi-test-unused")
    assert isinstance(shared, RedisAdmission)
    await shared.close()


async def test_close_waits_for_settles_still_in_flight(redis_replicas: ReplicaFactory) -> None:
    gateway, observer = redis_replicas(), redis_replicas()
    scope = Scope("key", "k1", Limits(budget_tokens=100))
    reservation = await gateway.reserve([scope], 100)
    caller = asyncio.create_task(gateway.settle(reservation, 40))
    await asyncio.sleep(0)
    caller.cancel()  # the request task dies during shutdown …
    await gateway.close()  # … and close still lets its settle land
    usage = await observer.usage(scope)
    assert (usage.budget_spent, usage.budget_reserved) == (40, 0)


async def test_settle_failure_is_raised_and_logged(caplog: pytest.LogCaptureFixture) -> None:
    admission = RedisAdmission.from_url("redis://127.0.0.1:1/0")  # nothing listens here
    held = HeldScope("key", "k1", tpm=True, budget=True)
    reservation = Reservation("r1", 10, (held,), 0.0)
    with pytest.raises(RedisError):
        await admission.settle(reservation, 5)
    assert "quota settle failed" in caplog.text
    await admission.settle(reservation, 5)  # not retried: it may have landed
    await admission.close()


async def test_a_request_waits_for_a_busy_pool_longer_than_a_redis_call_may_take(
    redis_prefix: str,
) -> None:
    """Two calls of 1.5 s each (under the 2 s a call may take) hold a pool of one
    connection; the admission queued behind both waits ~3 s for it and is admitted — a
    busy pool is a queue, not an outage."""
    admission = RedisAdmission.from_url(REDIS_URL, prefix=redis_prefix, max_connections=1)
    client = admission._client  # the admission's own pool of one connection
    try:
        holders = []
        for n in range(2):
            holders.append(asyncio.create_task(client.blpop([f"{redis_prefix}:none{n}"], 1.5)))
            await asyncio.sleep(0.1)  # queued in this order
        scopes = [Scope("tenant", "acme", Limits(budget_tokens=100))]
        reservation = await admission.reserve(scopes, 40)
        assert isinstance(reservation, Reservation)
        assert await asyncio.gather(*holders) == [None, None]  # both timed out empty
    finally:
        await admission.close()
