"""The fake clock, the wait helpers and the gate the fake upstream holds requests on."""

from __future__ import annotations

import asyncio
import threading
from datetime import UTC, datetime

import pytest

from tests.fakes.clock import FakeClock
from tests.fakes.gate import Gate, opened
from tests.fakes.waiting import wait_until, wait_until_async


def test_the_clock_moves_only_by_hand_and_reads_as_seconds_or_utc() -> None:
    clock = FakeClock()
    assert clock() == clock.now == 1000.0
    assert clock.advance(29.5) == 1029.5 and clock() == 1029.5
    clock.now = datetime(2030, 1, 2, tzinfo=UTC).timestamp()
    assert clock.utc() == datetime(2030, 1, 2, tzinfo=UTC)
    assert FakeClock(0.0)() == 0.0


def test_wait_until_returns_the_first_true_value() -> None:
    calls: list[int] = []

    def third() -> int | None:
        calls.append(1)
        return len(calls) if len(calls) == 3 else None

    assert wait_until(third, timeout=5, interval=0.001) == 3


def test_wait_until_fails_with_its_message_after_the_timeout() -> None:
    with pytest.raises(AssertionError, match=r"^never$"):
        wait_until(lambda: False, timeout=0.05, interval=0.01, message="never")
    with pytest.raises(AssertionError, match=r"^computed late$"):
        wait_until(lambda: False, timeout=0.05, message=lambda: "computed late")


async def test_wait_until_async_takes_functions_and_coroutine_functions() -> None:
    flag: list[bool] = []
    asyncio.get_running_loop().call_later(0.05, flag.append, True)
    assert await wait_until_async(lambda: flag, timeout=5) == [True]

    async def never() -> bool:
        return False

    with pytest.raises(AssertionError, match=r"^condition not met in time$"):
        await wait_until_async(never, timeout=0.05)


async def test_a_gate_wakes_coroutines_and_threads() -> None:
    gate = Gate()
    waiter = asyncio.create_task(gate.wait_async())
    plain = threading.Event()
    other = asyncio.create_task(opened(plain))
    await asyncio.sleep(0)
    assert not waiter.done()
    threading.Thread(target=gate.set).start()  # set from another thread
    await asyncio.wait_for(waiter, 5)
    assert gate.wait(0) and gate.is_set()
    await gate.wait_async()  # already set: returns at once
    plain.set()
    await asyncio.wait_for(other, 5)
