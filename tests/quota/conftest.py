"""Fixtures for admission tests: a fake clock, and each implementation over fresh state.

Redis tests use the real server at ``HESHI_TEST_REDIS_URL`` (default
redis://127.0.0.1:6379/0). When it is unreachable they fail rather than skip: CI starts
Redis, and a skipped test would hide that it did not.
"""

from __future__ import annotations

import os
import uuid
from collections.abc import AsyncIterator, Callable

import pytest
from redis.asyncio import Redis

from heshi.gateway.quota import Admission, InProcessAdmission, RedisAdmission
from tests.fakes.clock import FakeClock

REDIS_URL = os.environ.get("HESHI_TEST_REDIS_URL", "redis://127.0.0.1:6379/0")
START = 1_000_000.0  # far from 0 so "now - 60" never goes negative


async def _delete_keys(client: Redis, prefix: str) -> None:
    """Remove a test's keys and close the client."""
    keys = [k async for k in client.scan_iter(match=f"{prefix}:*", count=1000)]
    if keys:
        await client.delete(*keys)
    await client.aclose()


@pytest.fixture
def clock() -> FakeClock:
    """A fake clock starting at ``START``."""
    return FakeClock(START)


@pytest.fixture
async def redis_prefix() -> AsyncIterator[str]:
    """A key prefix of this test's own; its keys are deleted afterwards."""
    prefix = f"heshi-test-{uuid.uuid4().hex}"
    client = Redis.from_url(REDIS_URL, decode_responses=True)
    await client.ping()  # unreachable Redis: an error here, never a skip
    yield prefix
    await _delete_keys(client, prefix)


ReplicaFactory = Callable[[], RedisAdmission]


@pytest.fixture
async def redis_replicas(clock: FakeClock, redis_prefix: str) -> AsyncIterator[ReplicaFactory]:
    """Builds RedisAdmissions on one prefix, each with its own client (= a replica)."""
    made: list[RedisAdmission] = []

    def replica() -> RedisAdmission:
        admission = RedisAdmission.from_url(REDIS_URL, prefix=redis_prefix, clock=clock)
        made.append(admission)
        return admission

    yield replica
    for admission in made:
        await admission.close()


@pytest.fixture(params=["memory", "redis"])
async def admission(request: pytest.FixtureRequest, clock: FakeClock) -> AsyncIterator[Admission]:
    """Each implementation with the fake clock and fresh state."""
    if request.param == "memory":
        yield InProcessAdmission(clock=clock)
        return
    prefix = f"heshi-test-{uuid.uuid4().hex}"
    client = Redis.from_url(REDIS_URL, decode_responses=True)
    await client.ping()  # unreachable Redis: an error here, never a skip
    shared = RedisAdmission.from_url(REDIS_URL, prefix=prefix, clock=clock)
    yield shared
    await shared.close()
    await _delete_keys(client, prefix)
