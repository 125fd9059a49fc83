"""One generation on the in-process llama-server's slot loop: the worker thread that
runs it, the slot it waits for, its chunks as they arrive, and llama.cpp's error JSON
turned into typed errors. :class:`LocalStream` is what the engine's other streams
(``local_streams``) and its whole answers (``local_unary``) are built on."""

from __future__ import annotations

import asyncio
import contextlib
import threading
from collections.abc import Callable
from typing import Any

import orjson

from heshi.engines.base import JSON
from heshi.errors import ContextLengthExceeded, EngineError, HeshiError, InvalidRequest

END = object()
Handler = Callable[[bytes, Callable[[bytes], bool]], None]


def error_from(payload: JSON) -> HeshiError:
    """Turn llama.cpp's error JSON into our typed error."""
    err = payload.get("error", payload)
    if not isinstance(err, dict):
        return EngineError(f"llama.cpp error: {err}")
    message = str(err.get("message", "unknown llama.cpp error"))
    if err.get("type") == "exceed_context_size_error":
        return ContextLengthExceeded(
            prompt_tokens=int(err.get("n_prompt_tokens", 0)),
            max_tokens=None,
            context=int(err.get("n_ctx", 0)),
        )
    if int(err.get("code", 500)) == 400 or err.get("type") == "invalid_request_error":
        return InvalidRequest(f"llama.cpp: {message}")
    return EngineError(f"llama.cpp: {message}")


def message_of(payload: Any) -> str:
    err = payload.get("error", payload) if isinstance(payload, dict) else payload
    return str(err.get("message", err)) if isinstance(err, dict) else str(err)


def is_error(payload: JSON) -> bool:
    return "error" in payload or ("code" in payload and "message" in payload)


def usage_of(timings: JSON) -> JSON:
    prompt = int(timings.get("prompt_n", 0)) + int(timings.get("cache_n", 0))
    return {"prompt_tokens": prompt, "completion_tokens": int(timings.get("predicted_n", 0))}


NOTHING = "llama.cpp 没有返回结果 / llama.cpp returned nothing"


def in_slot(
    slots: threading.Semaphore | None, cancelled: threading.Event, call: Callable[[], None]
) -> None:
    """Run ``call`` (on a worker thread) holding one of ``slots`` (one per llama.cpp slot;
    None: no limit). A request waits here rather than in llama.cpp's queue, where nothing
    can reach it until its first token: one stopped while it waits (``cancelled``, looked
    at every 50 ms) is never started."""
    while not cancelled.is_set():
        if slots is None:
            call()
            return
        if slots.acquire(timeout=0.05):
            try:
                call()
            finally:
                slots.release()
            return


class LocalStream:
    """One streamed generation on llama.cpp's slot loop (see the module docstring).

    The request runs on a worker thread that hands each chunk to the event loop through a
    queue. ``abort()`` (or ``aclose()``) makes llama.cpp drop the task at its next chunk,
    which frees the slot; ``aclose()`` also waits for the worker to return, so ``usage``
    then counts every token the engine decoded — those no one read included.
    """

    def __init__(
        self,
        handler: Handler,
        payload: bytes,
        executor: Any,
        slots: threading.Semaphore | None = None,
    ) -> None:
        self.usage: JSON | None = None
        self._queue: asyncio.Queue[object] = asyncio.Queue()
        self._cancelled = threading.Event()
        self._last_timings: bytes | None = None  # the newest chunk that carried counts
        self._done = False
        loop = asyncio.get_running_loop()

        def on_chunk(data: bytes) -> bool:
            if b'"timings"' in data:
                self._last_timings = data  # a reference swap: safe from this thread
            if self._cancelled.is_set():
                return True  # tells llama.cpp to drop the task and free the slot
            loop.call_soon_threadsafe(self._queue.put_nowait, data)
            return False

        def run() -> None:
            try:
                in_slot(slots, self._cancelled, lambda: handler(payload, on_chunk))
            except Exception as exc:
                loop.call_soon_threadsafe(self._queue.put_nowait, exc)
            finally:
                loop.call_soon_threadsafe(self._queue.put_nowait, END)

        self._job = loop.run_in_executor(executor, run)

    def __aiter__(self) -> LocalStream:
        return self

    async def __anext__(self) -> JSON:
        if self._done:
            raise StopAsyncIteration
        item = await self._queue.get()
        if item is END:
            self._done = True
            self._count()
            raise StopAsyncIteration
        if isinstance(item, Exception):
            raise EngineError(f"llama.cpp: {item}") from item
        assert isinstance(item, bytes)
        chunk: JSON = orjson.loads(item)
        if is_error(chunk):
            raise error_from(chunk)
        timings = chunk.get("timings")
        if isinstance(timings, dict):
            self.usage = usage_of(timings)
            if "usage" not in chunk:
                del chunk["timings"]  # llama.cpp sends them only at the end unless asked
        return chunk

    def abort(self) -> None:
        """Stop generating at the next token; a pending ``__anext__`` ends at once."""
        if not self._cancelled.is_set():
            self._cancelled.set()
            self._queue.put_nowait(END)

    async def aclose(self) -> None:
        """Stop generating and wait for the worker thread, then count what it decoded."""
        self.abort()
        self._done = True
        if not self._job.done():
            with contextlib.suppress(Exception):
                await asyncio.shield(self._job)
        self._count()

    def _count(self) -> None:
        data = self._last_timings
        if data is None:
            return
        with contextlib.suppress(ValueError):
            timings = orjson.loads(data).get("timings")
            if isinstance(timings, dict):
                self.usage = usage_of(timings)
