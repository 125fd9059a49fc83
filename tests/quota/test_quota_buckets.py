"""In-process TPM windows bucket requests admitted within 0.1 s of each other."""

from __future__ import annotations

import tracemalloc

import pytest

from heshi.errors import QuotaExceeded
from heshi.gateway.quota import InProcessAdmission, Limits, Scope
from tests.fakes.clock import FakeClock

SCOPE = [Scope("key", "k1", Limits(tpm=100))]


async def test_a_shared_bucket_counts_until_its_newest_request_leaves() -> None:
    clock = FakeClock(0.0)
    admission = InProcessAdmission(clock=clock)
    await admission.reserve(SCOPE, 50)  # t = 0
    clock.advance(0.05)
    second = await admission.reserve(SCOPE, 40)  # t = 0.05, same bucket
    await admission.settle(second, 30)  # settling adjusts the shared bucket
    assert (await admission.usage(SCOPE[0])).tokens_in_window == 80
    clock.advance(59.97)  # t = 60.02: the first request's own minute is over …
    with pytest.raises(QuotaExceeded) as info:
        await admission.reserve(SCOPE, 30)  # … but its bucket holds until t = 60.05
    assert info.value.retry_after == 1  # early, never late
    clock.advance(0.04)
    await admission.reserve(SCOPE, 100)


async def test_a_busy_minute_stays_small_in_memory() -> None:
    clock = FakeClock(0.0)
    admission = InProcessAdmission(clock=clock)
    scope = [Scope("key", "busy", Limits(tpm=10**12))]
    tracemalloc.start()
    try:
        before = tracemalloc.get_traced_memory()[0]
        for _ in range(60_000):  # a full minute at 1,000 requests per second
            reservation = await admission.reserve(scope, 200)
            await admission.settle(reservation, 120)
            clock.advance(0.001)
        grown = tracemalloc.get_traced_memory()[0] - before
    finally:
        tracemalloc.stop()
    assert (await admission.usage(scope[0])).tokens_in_window == 60_000 * 120
    assert grown < 1_000_000, grown  # 600 buckets, not 60,000 entries (~15 MB)
