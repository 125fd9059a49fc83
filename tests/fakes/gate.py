"""A ``threading.Event`` that coroutines can await too, without tying up a thread."""

from __future__ import annotations

import asyncio
import contextlib
import threading


class Gate(threading.Event):
    """A ``threading.Event`` (``set``, ``clear``, ``is_set``, ``wait``) that coroutines on
    any event loop can also ``await gate.wait_async()``.

    The fake upstream holds requests on one of these: a test thread (or a test's own event
    loop) sets it, and requests held on the upstream's loop go on, with no thread per
    held request (a hung upstream must not exhaust the default executor).
    """

    def __init__(self) -> None:
        super().__init__()
        self._waiters_lock = threading.Lock()
        self._waiters: list[tuple[asyncio.AbstractEventLoop, asyncio.Future[None]]] = []

    def set(self) -> None:
        with self._waiters_lock:
            super().set()
            waiters, self._waiters = self._waiters, []
        for loop, future in waiters:
            with contextlib.suppress(RuntimeError):  # that loop is closed: nobody waits
                loop.call_soon_threadsafe(_wake, future)

    async def wait_async(self) -> None:
        """Return once the gate is set (at once if it already is)."""
        loop = asyncio.get_running_loop()
        future: asyncio.Future[None] = loop.create_future()
        with self._waiters_lock:
            if self.is_set():
                return
            self._waiters.append((loop, future))
        await future


def _wake(future: asyncio.Future[None]) -> None:
    if not future.done():
        future.set_result(None)


async def opened(event: threading.Event) -> None:
    """Wait for ``event`` from a coroutine: a ``Gate`` without a thread, any other
    ``threading.Event`` (a test may have put its own there) in a worker thread."""
    if isinstance(event, Gate):
        await event.wait_async()
    else:
        await asyncio.to_thread(event.wait)
