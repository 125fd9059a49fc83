"""Leases (one request's hold on a backend) and routed streams that release them.

A lease counts the request as in flight on its backend and, when the request ends,
tells the backend's breaker how it went — exactly once, however it ends. A stream holds
its lease until the caller closes it, so a long generation keeps counting as busy.
"""

from __future__ import annotations

import contextlib
from collections.abc import AsyncIterator
from dataclasses import dataclass

from heshi.engines.base import JSON, abort_stream, stream_usage
from heshi.errors import HeshiError, UpstreamError
from heshi.routing.balance import Balancer
from heshi.routing.breaker import Breaker


def verdict(exc: BaseException) -> bool | None:
    """What an error says about the backend: failed (False), alive (True), or nothing.

    An ``UpstreamError`` (down, 5xx, garbage, timeout, cut stream) is a failure; any
    other error below 500 (a 4xx rejection, a local ``InvalidRequest``) was a deliberate
    answer, so the backend is alive; cancellation and our own bugs say nothing.
    """
    if isinstance(exc, UpstreamError):
        return False
    if isinstance(exc, HeshiError) and exc.status_code < 500:
        return True
    return None


class Lease:
    """One request's hold on one backend, from sending until the answer is done."""

    __slots__ = ("_balancer", "_breaker", "_probe", "_released", "backend")

    def __init__(self, backend: str, balancer: Balancer, breaker: Breaker) -> None:
        self.backend = backend
        self._balancer = balancer
        self._breaker = breaker
        self._probe = breaker.admit()
        self._released = False
        balancer.acquire(backend)

    def report(self, ok: bool | None) -> None:
        """Tell the backend's breaker how the request went (see :func:`verdict`)."""
        if ok is True:
            self._breaker.succeeded()
        elif ok is False:
            self._breaker.failed()
        else:
            self._breaker.abandoned(self._probe)

    def release(self) -> None:
        """Stop counting the request as in flight. Idempotent."""
        if not self._released:
            self._released = True
            self._balancer.release(self.backend)

    def finish(self, ok: bool | None) -> None:
        """Report and release, once: later calls do nothing."""
        if not self._released:
            self.report(ok)
            self.release()


class RoutedStream:
    """The chunks after the first. Always ``aclose()`` it: that frees the backend.

    The backend was reported healthy when its first chunk arrived. Errors after that
    are never retried (the client already has output); they count against the
    backend's breaker and reach the caller as they are, to become one SSE error frame.
    """

    def __init__(self, source: AsyncIterator[JSON], lease: Lease, *, ended: bool = False) -> None:
        self._source = source
        self._lease = lease
        self._ended = ended
        if ended:
            lease.release()

    def __aiter__(self) -> RoutedStream:
        return self

    @property
    def usage(self) -> JSON | None:
        """What the engine counted for this stream (final once :meth:`aclose` returned)."""
        return stream_usage(self._source)

    def abort(self) -> None:
        """Ask the engine to stop now (the client has gone); a pending read then ends."""
        abort_stream(self._source)

    async def __anext__(self) -> JSON:
        if self._ended:
            raise StopAsyncIteration
        try:
            return await anext(self._source)
        except StopAsyncIteration:
            self._end()
            raise
        except HeshiError as exc:
            if verdict(exc) is False:
                self._lease.report(False)
            self._end()
            raise

    async def aclose(self) -> None:
        """Close the upstream stream (the backend stops generating) and free the lease."""
        self._ended = True
        try:
            await close_source(self._source)
        finally:
            self._lease.release()

    def _end(self) -> None:
        self._ended = True
        self._lease.release()


async def close_source(source: AsyncIterator[JSON]) -> None:
    """``aclose()`` an engine's stream if it has one (async generators do)."""
    aclose = getattr(source, "aclose", None)
    if aclose is not None:
        with contextlib.suppress(StopAsyncIteration):
            await aclose()


@dataclass(frozen=True, slots=True)
class StreamStart:
    """An opened stream: its first chunk (None if the stream was empty) and the rest."""

    first: JSON | None
    rest: RoutedStream
