"""Connections that cannot hold the gateway hostage: timeouts and a ceiling.

uvicorn closes an idle keep-alive connection after ``timeout_keep_alive``, but a
connection that never sends a request, sends its headers a byte at a time, or stops
in the middle of its body is kept forever — and each one costs a file descriptor. With
the common limit of 1,024 open files, about a thousand such sockets stopped the gateway
from accepting anyone (asyncio then pauses ``accept`` and logs nothing useful). So each
connection here has:

- a **header timeout**: the request line and headers must arrive within
  ``server.header_timeout_seconds`` of the connection opening (on a kept-alive
  connection: of the next request's first byte; the keep-alive timeout covers the wait
  before it);
- a **body timeout**: while a body is arriving, ``server.body_timeout_seconds`` of
  silence ends it (the handler sees the client as gone);
- a **write timeout**: a client that stops reading what it is sent (a stream it never
  consumes, holding a backend connection) is dropped after
  ``server.write_timeout_seconds``;
- the **keep-alive timeout** between requests (``server.keep_alive_seconds``);

and the server has a **ceiling** (``server.max_connections``, by default three quarters
of the open-file limit): a connection that would pass it evicts the connection that has
been idle longest (no request in progress), and is itself refused only when every
connection is busy. Hitting the ceiling is logged once a minute with the counts.
"""

from __future__ import annotations

import asyncio
import logging
import resource
import time
from dataclasses import dataclass
from typing import Any

from uvicorn.protocols.http.httptools_impl import HttpToolsProtocol

log = logging.getLogger("heshi.gateway")

_LOG_EVERY_SECONDS = 60.0
_FD_HEADROOM = 64  # descriptors kept for the database, Redis, upstreams and the model


@dataclass(frozen=True)
class ConnectionLimits:
    """How long each phase may take, and how many connections may be open."""

    header_timeout: float = 10.0
    body_timeout: float = 30.0
    write_timeout: float = 30.0
    max_connections: int = 768


class _Shedding:
    """Counts what the limits closed, for one log line a minute (not one per socket)."""

    def __init__(self) -> None:
        self.counts: dict[str, int] = {}
        self._logged = 0.0

    def note(self, what: str, open_now: int, ceiling: int) -> None:
        self.counts[what] = self.counts.get(what, 0) + 1
        now = time.monotonic()
        if self._logged and now - self._logged < _LOG_EVERY_SECONDS:
            return
        self._logged = now
        summary = ", ".join(f"{k} {v}" for k, v in sorted(self.counts.items()))
        self.counts = {}
        log.warning(
            "连接上限或超时：已关闭连接（%s），当前 %d / 上限 %d / "
            "connection limits closed connections (%s); open %d, ceiling %d",
            summary,
            open_now,
            ceiling,
            summary,
            open_now,
            ceiling,
        )


def raise_open_file_limit(wanted: int = 65536) -> int:
    """Raise this process's soft open-file limit towards ``wanted`` (never above the hard
    limit, which only an administrator can change); returns the soft limit now in force."""
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    target = wanted if hard == resource.RLIM_INFINITY else min(wanted, hard)
    if soft != resource.RLIM_INFINITY and soft < target:
        try:
            resource.setrlimit(resource.RLIMIT_NOFILE, (target, hard))
            soft = target
        except (ValueError, OSError):  # a container may forbid it: live with what we have
            pass
    return int(soft) if soft != resource.RLIM_INFINITY else wanted


def default_max_connections(open_file_limit: int) -> int:
    """Three quarters of the descriptors left after the gateway's own."""
    return max(16, (open_file_limit - _FD_HEADROOM) * 3 // 4)


class GuardedProtocol(HttpToolsProtocol):
    """uvicorn's httptools protocol with the limits above; made per server by
    :func:`guarded_protocol`, which sets ``limits`` and ``shedding``."""

    limits: ConnectionLimits = ConnectionLimits()
    shedding: _Shedding = _Shedding()
    _deadline: asyncio.TimerHandle | None = None
    _write_deadline: asyncio.TimerHandle | None = None
    _last_active = 0.0

    def connection_made(self, transport: asyncio.Transport) -> None:  # type: ignore[override]
        super().connection_made(transport)
        self._last_active = time.monotonic()
        self._arm(self.limits.header_timeout, "header_timeout")
        ceiling = self.limits.max_connections
        if len(self.connections) > ceiling and _open(self.connections) > ceiling:
            self._shed()

    def _shed(self) -> None:
        """Close the longest-idle connection (or this one, when none is idle)."""
        idle = [
            p
            for p in self.connections
            if p is not self
            and isinstance(p, GuardedProtocol)
            and not p.transport.is_closing()  # already on its way out: not room made
            and (p.cycle is None or p.cycle.response_complete)
        ]
        victim = min(idle, key=lambda p: p._last_active) if idle else self
        victim.transport.close()
        what = "evicted_idle" if idle else "refused"
        self.shedding.note(what, _open(self.connections), self.limits.max_connections)

    def _arm(self, seconds: float, what: str) -> None:
        self._disarm()
        self._deadline = self.loop.call_later(seconds, self._expire, what)

    def _disarm(self) -> None:
        if self._deadline is not None:
            self._deadline.cancel()
            self._deadline = None

    def _expire(self, what: str) -> None:
        self._deadline = None
        if not self.transport.is_closing():
            self.transport.close()
            self.shedding.note(what, _open(self.connections), self.limits.max_connections)

    def _write_expired(self) -> None:
        self._write_deadline = None
        # close() would wait to flush what the client is not reading: drop it instead.
        self.transport.abort()
        self.shedding.note("write_timeout", _open(self.connections), self.limits.max_connections)

    def data_received(self, data: bytes) -> None:
        self._last_active = time.monotonic()
        super().data_received(data)

    def on_message_begin(self) -> None:
        super().on_message_begin()
        if self._deadline is None:  # a request on a kept-alive connection
            self._arm(self.limits.header_timeout, "header_timeout")

    def on_headers_complete(self) -> None:
        super().on_headers_complete()
        self._arm(self.limits.body_timeout, "body_timeout")

    def on_body(self, body: bytes) -> None:
        super().on_body(body)
        self._arm(self.limits.body_timeout, "body_timeout")

    def on_message_complete(self) -> None:
        super().on_message_complete()
        self._disarm()

    def on_response_complete(self) -> None:
        super().on_response_complete()
        self._last_active = time.monotonic()

    def pause_writing(self) -> None:
        # The client stopped reading what we send: it has that long to start again.
        super().pause_writing()
        if self._write_deadline is None:
            self._write_deadline = self.loop.call_later(
                self.limits.write_timeout, self._write_expired
            )

    def resume_writing(self) -> None:
        super().resume_writing()
        if self._write_deadline is not None:
            self._write_deadline.cancel()
            self._write_deadline = None

    def connection_lost(self, exc: Exception | None) -> None:
        self._disarm()
        if self._write_deadline is not None:
            self._write_deadline.cancel()
            self._write_deadline = None
        super().connection_lost(exc)


def _open(connections: set[Any]) -> int:
    """Connections not already closing."""
    return sum(1 for p in connections if not p.transport.is_closing())


def guarded_protocol(limits: ConnectionLimits) -> type[asyncio.Protocol]:
    """The protocol class for one server (pass as ``uvicorn.Config(http=…)``)."""
    return type("GuardedProtocol", (GuardedProtocol,), {"limits": limits, "shedding": _Shedding()})
