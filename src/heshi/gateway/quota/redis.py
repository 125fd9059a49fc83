"""Admission shared by several gateway replicas through one Redis.

Each reserve, settle and usage call is one Lua script (see ``redis_scripts``), so a
check and its update are atomic across all scopes and all replicas. By default the
scripts read the Redis server's clock, so replicas need not agree on the time; tests
inject a clock instead, which is then passed into every script.
"""

from __future__ import annotations

import asyncio
import logging
import math
import time
import uuid
from collections.abc import Callable, Mapping, Sequence
from typing import Any

from redis.asyncio import BlockingConnectionPool, Redis

from heshi.gateway.quota import redis_scripts
from heshi.gateway.quota.limits import (
    DEFAULT_RESERVATION_TTL,
    WINDOW_SECONDS,
    LimitName,
    Reservation,
    Scope,
    ScopeUsage,
    check_tokens,
    held_scope,
    limited,
    refusal,
)

log = logging.getLogger("heshi.gateway.quota")

# A script takes ~0.1 ms of Redis time, so a few dozen connections carry thousands of
# admissions per second; bursts beyond that wait for a free connection instead of
# failing (redis-py's default pool raises "Too many connections" at 100).
DEFAULT_MAX_CONNECTIONS = 64
# A healthy Redis answers in well under a millisecond; without a timeout a partitioned
# one would hang every request at admission instead of failing it.
REDIS_TIMEOUT_SECONDS = 2.0
# How long a request waits for a free pooled connection: a queue, not an outage — the calls
# holding the connections fail within REDIS_TIMEOUT_SECONDS if Redis is gone. With the
# same 2 s, a burst of 200 admissions on a CPU-starved process failed the 136 beyond the
# 64 connections (docs/decisions.md).
POOL_WAIT_SECONDS = 10.0

_SUFFIXES = ("rpm", "tpm", "tpmv", "pend", "pendv", "spent")


def _opt(value: int | None) -> str:
    return "" if value is None else str(value)


class RedisAdmission:
    """Exact RPM/TPM/budget admission shared by every replica that uses the same Redis.

    ``prefix`` namespaces the keys (``<prefix>:quota:…``); for Redis Cluster give it a
    hash tag, e.g. ``"{heshi}"``, so one script's keys share a slot. ``clock`` None
    means the Redis server's clock. ``owns_client``: close the client in :meth:`close`.

    A client passed in must use ``decode_responses=True`` and a pool that waits for a
    free connection under bursts (:meth:`from_url` builds one). Redis failures are not
    translated: ``redis.exceptions.RedisError`` reaches the caller, which decides
    whether admission fails open or closed.
    """

    def __init__(
        self,
        client: Redis,
        *,
        prefix: str = "heshi",
        clock: Callable[[], float] | None = None,
        reservation_ttl: float = DEFAULT_RESERVATION_TTL,
        owns_client: bool = False,
    ) -> None:
        self._client = client
        self._prefix = f"{prefix}:quota:"
        self._clock = clock
        self._ttl = reservation_ttl
        self._owns_client = owns_client
        self._reserve = client.register_script(redis_scripts.RESERVE)
        self._settle = client.register_script(redis_scripts.SETTLE)
        self._usage = client.register_script(redis_scripts.USAGE)
        # Idle-scope garbage collection only; a second of slack so a key never expires
        # while one of its entries can still count.
        self._window_idle_ms = math.ceil((WINDOW_SECONDS + 1) * 1000)
        self._pending_idle_ms = math.ceil((reservation_ttl + WINDOW_SECONDS) * 1000)
        self._settling: set[asyncio.Task[None]] = set()

    @classmethod
    def from_url(
        cls,
        url: str,
        *,
        prefix: str = "heshi",
        clock: Callable[[], float] | None = None,
        reservation_ttl: float = DEFAULT_RESERVATION_TTL,
        max_connections: int = DEFAULT_MAX_CONNECTIONS,
    ) -> RedisAdmission:
        """An admission with its own client for ``url`` (connects on first use)."""
        pool = BlockingConnectionPool.from_url(
            url,
            decode_responses=True,
            max_connections=max_connections,
            timeout=POOL_WAIT_SECONDS,  # waiting for a free pooled connection
            socket_timeout=REDIS_TIMEOUT_SECONDS,
            socket_connect_timeout=REDIS_TIMEOUT_SECONDS,
        )
        client = Redis.from_pool(pool)
        return cls(
            client, prefix=prefix, clock=clock, reservation_ttl=reservation_ttl, owns_client=True
        )

    def _keys(self, kind: str, scope_id: str, suffixes: Sequence[str] = _SUFFIXES) -> list[str]:
        base = f"{self._prefix}{kind}:{scope_id}:"
        return [base + s for s in suffixes]

    def _now_arg(self) -> str:
        return "" if self._clock is None else repr(self._clock())

    async def reserve(self, scopes: Sequence[Scope], tokens: int) -> Reservation:
        """See :class:`heshi.gateway.quota.Admission`: one script, atomic across replicas."""
        check_tokens(tokens, "tokens")
        active = limited(scopes)
        rid = uuid.uuid4().hex
        if not active:
            now = self._clock() if self._clock is not None else time.time()
            return Reservation(rid, tokens, (), now)
        keys: list[str] = []
        args: list[str | int | float] = [
            WINDOW_SECONDS,
            self._now_arg(),
            rid,
            tokens,
            self._ttl,
            len(active),
            self._window_idle_ms,
            self._pending_idle_ms,
        ]
        for scope in active:
            keys += self._keys(scope.kind, scope.id)
            lim = scope.limits
            args += [_opt(lim.rpm), _opt(lim.tpm), _opt(lim.budget_tokens)]
        reply: list[Any] = await self._reserve(keys=keys, args=args)
        if reply[0] == "ok":
            return Reservation(rid, tokens, tuple(held_scope(s) for s in active), float(reply[2]))
        limit: LimitName = reply[0]
        scope = active[int(reply[1]) - 1]
        retry_at = float(reply[3]) if reply[3] != "" else None
        counts = [int(c) for c in reply[4:]]
        raise refusal(scope, limit, counts, retry_at, float(reply[2]))

    async def settle(self, reservation: Reservation, used_tokens: int) -> None:
        """See :class:`heshi.gateway.quota.Admission`.

        The script runs in its own task shielded from the caller's cancellation, so a
        settle started in a ``finally`` after a client disconnect still completes.
        """
        check_tokens(used_tokens, "used_tokens")
        if reservation.settled:
            return
        # Marked before the first await: a second settle racing this one is a no-op.
        reservation.settled = True
        # RPM-only scopes have nothing to settle: the request was counted at admission.
        held_scopes = [h for h in reservation.held if h.tpm or h.budget]
        if not held_scopes:
            return
        keys: list[str] = []
        args: list[str | int] = [reservation.id, used_tokens, len(held_scopes)]
        for held in held_scopes:
            keys += self._keys(held.kind, held.id, ("tpmv", "pend", "pendv", "spent"))
            args.append(("1" if held.tpm else "0") + ("1" if held.budget else "0"))
        task = asyncio.create_task(self._settle(keys=keys, args=args))
        self._settling.add(task)
        task.add_done_callback(self._settled)
        await asyncio.shield(task)

    def _settled(self, task: asyncio.Task[None]) -> None:
        self._settling.discard(task)
        # Retrieved here too, so a failure behind a cancelled caller is still reported.
        if not task.cancelled() and (exc := task.exception()) is not None:
            log.warning("配额结算失败 / quota settle failed: %r", exc)

    async def restore_spent(self, spent: Mapping[tuple[str, str], int]) -> None:
        """Seed lifetime usage with ``SET NX``: a counter another replica holds is kept."""
        for key, tokens in spent.items():
            check_tokens(tokens, f"spent[{key!r}]")
        async with self._client.pipeline(transaction=False) as pipe:
            for (kind, scope_id), tokens in spent.items():
                (spent_key,) = self._keys(kind, scope_id, ("spent",))
                pipe.set(spent_key, tokens, nx=True)
            await pipe.execute()

    async def usage(self, scope: Scope) -> ScopeUsage:
        """The scope's counters now, as every replica sees them."""
        keys = self._keys(scope.kind, scope.id)
        reply: list[Any] = await self._usage(keys=keys, args=[WINDOW_SECONDS, self._now_arg()])
        return ScopeUsage(*(int(v) for v in reply))

    async def close(self) -> None:
        """Let settles in flight finish, then close the client if this admission owns it."""
        if self._settling:
            await asyncio.gather(*self._settling, return_exceptions=True)
        if self._owns_client:
            await self._client.aclose()
