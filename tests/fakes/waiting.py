"""One way for a test to wait for something it cannot be told about with an event."""

from __future__ import annotations

import asyncio
import inspect
import time
from collections.abc import Awaitable, Callable
from typing import Any

Message = str | Callable[[], object]  # a callable is evaluated only when the wait failed


def wait_until(
    predicate: Callable[[], Any],
    *,
    timeout: float = 10.0,
    interval: float = 0.01,
    message: Message = "condition not met in time",
) -> Any:
    """Call ``predicate`` every ``interval`` seconds until it returns something true, and
    return that; fail the test (``AssertionError(message)``) after ``timeout`` seconds.

    Exceptions the predicate raises (an ``AssertionError`` for "stop waiting, this will
    never happen") propagate at once.
    """
    deadline = time.monotonic() + timeout
    while not (result := predicate()):
        if time.monotonic() >= deadline:
            raise AssertionError(_text(message))
        time.sleep(interval)
    return result


async def wait_until_async(
    predicate: Callable[[], Any | Awaitable[Any]],
    *,
    timeout: float = 10.0,
    interval: float = 0.01,
    message: Message = "condition not met in time",
) -> Any:
    """:func:`wait_until` for coroutines: sleeps without blocking the event loop, and
    ``predicate`` may be a plain function or a coroutine function."""
    loop = asyncio.get_running_loop()
    deadline = loop.time() + timeout
    while True:
        result = predicate()
        if inspect.isawaitable(result):
            result = await result
        if result:
            return result
        if loop.time() >= deadline:
            raise AssertionError(_text(message))
        await asyncio.sleep(interval)


def _text(message: Message) -> str:
    return str(message() if callable(message) else message)
