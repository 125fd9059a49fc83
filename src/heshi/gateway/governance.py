"""Who is calling, may they, and what did it cost: auth → admission → settle → ledger.

One object the gateway consults before and after each generation. The request path
never waits for a database: keys come from an in-memory cache refreshed in the
background, admission counters live in process (or Redis for several replicas), and
usage rows are queued for a background writer.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from typing import Any

from redis.exceptions import RedisError

from heshi.audit.head import audit_key, head_path
from heshi.audit.log import AuditLog
from heshi.audit.writer import AuditWriter
from heshi.config import HeshiConfig
from heshi.errors import AdmissionUnavailable
from heshi.gateway.auth import KeyAuthenticator
from heshi.gateway.quota import (
    Admission,
    Limits,
    Reservation,
    Scope,
    make_admission,
    money_scope,
)
from heshi.store.db import Database
from heshi.store.keys import MICRO, ApiKey, KeyStore
from heshi.store.ledger import LedgerWriter, prune, spent_tokens
from heshi.tasks import cancel

log = logging.getLogger("heshi.gateway")

_PRUNE_EVERY_SECONDS = 3600.0


class Governance:
    """Auth, admission, settlement and metering for the gateway."""

    def __init__(self, config: HeshiConfig) -> None:
        self.config = config
        store = config.store
        self.db = Database(
            store.sql_url(config.home), statement_timeout_s=store.statement_timeout_seconds
        )
        self.keys = KeyStore(self.db)
        self.auth = KeyAuthenticator(
            self.keys, refresh_seconds=store.key_refresh_seconds, open_mode=config.auth.open
        )
        self.admission: Admission = make_admission(store.redis_address(), prefix=store.redis_prefix)
        self._admission_down = False  # Redis unreachable at the last admission call
        self.ledger = LedgerWriter(
            self.db,
            flush_seconds=store.ledger_flush_seconds,
            batch_rows=store.ledger_batch_rows,
            buffer_rows=store.ledger_buffer_rows,
            spool_dir=config.home / "ledger-spool",
            stall_seconds=store.ledger_stall_seconds,
        )
        self._pruner: asyncio.Task[None] | None = None
        # Guard verdicts of every guarded request (docs/audit.md); read only by `heshi audit`.
        # Every record signed under the audit key; the newest one noted outside the
        # database (docs/audit.md).
        self.audit_log = AuditLog(
            self.db,
            key=audit_key(config.home, create=True),
            head=head_path(config.home, self.db.url),
        )
        self.audit = AuditWriter(
            self.audit_log, spool=config.home / "audit-spool" / "audit-spool.jsonl"
        )
        self._unseeded: dict[tuple[str, str], int] | None = None  # spend not yet in counters
        self._tenant_scopes = {  # tenant limits are static configuration
            name: Scope("tenant", name, Limits(t.rpm, t.tpm, t.budget_tokens))
            for name, t in config.tenants.items()
        }
        self._tenant_money = {
            name: money_scope("tenant", name, round(t.budget_cny * MICRO))
            for name, t in config.tenants.items()
            if t.budget_cny is not None
        }

    async def start(self) -> None:
        """Migrate the database, start the ledger writer, load keys, restore budgets."""
        self.config.home.mkdir(parents=True, exist_ok=True)
        self.db.migrate()
        self.ledger.start()
        self.audit.start()
        await asyncio.to_thread(self.audit_log.note_tail)
        # Rows an earlier run left on disk (its spool, or the journal of a killed process)
        # were charged to budgets: write them before reading what was spent.
        if not await asyncio.to_thread(self.ledger.flush):
            log.warning("ledger rows of an earlier run are not written yet: budgets omit them")
        await self.auth.start()
        self._unseeded = spent_tokens(self.db).as_scopes()
        try:
            await self._seed_budgets()
        except RedisError as exc:
            # Serve anyway (redis_outage decides how); admission seeds once Redis answers.
            log.warning("配额存储不可用 / admission store unreachable at startup: %s", exc)
            self._admission_down = True
        self._pruner = asyncio.create_task(self._prune_forever(), name="heshi-ledger-prune")

    async def _prune_forever(self) -> None:
        days = self.config.store.ledger_retention_days
        while True:
            try:
                removed = await asyncio.to_thread(prune, self.db, days)
                if removed:
                    log.info("pruned %d usage rows older than %d days", removed, days)
            except Exception as exc:  # the database may be down; try again next round
                log.warning("ledger pruning failed: %s", exc)
            await asyncio.sleep(_PRUNE_EVERY_SECONDS)

    async def _seed_budgets(self) -> None:
        """Lifetime spend from the ledger into the counters, before any admission counts:
        a counter created by a settle first would block the seed (``SET NX``)."""
        if self._unseeded is not None:
            await self.admission.restore_spent(self._unseeded)
            self._unseeded = None

    async def close(self) -> None:
        """Flush the ledger and release connections."""
        await cancel(self._pruner)
        await self.auth.close()
        self.ledger.close()
        self.audit.close()
        await self.admission.close()
        self.db.dispose()

    def authenticate(self, authorization: str | None, model: str | None) -> ApiKey | None:
        """The caller's key, or None in open / single-user mode."""
        return self.auth.authenticate(authorization, model)

    def scopes(self, key: ApiKey | None, *, internal: bool = False) -> list[Scope]:
        """The quota scopes a request by ``key`` counts against. An internal request (a
        guard-model call made for one) counts tokens but not requests: the caller's rpm
        is for the caller's own requests."""
        if key is None:
            return []
        scopes = [Scope("key", key.id, Limits(key.rpm, key.tpm, key.budget_tokens))]
        tenant = self._tenant_scopes.get(key.tenant)
        if tenant is not None:
            scopes.append(tenant)
        if internal:
            scopes = [
                Scope(s.kind, s.id, Limits(None, s.limits.tpm, s.limits.budget_tokens))
                for s in scopes
            ]
        return scopes

    def money_scopes(self, key: ApiKey | None) -> list[Scope]:
        """The money budgets a request by ``key`` counts against (amounts in micro-yuan)."""
        if key is None:
            return []
        scopes = []
        if key.budget_micro is not None:
            scopes.append(money_scope("key", key.id, key.budget_micro))
        tenant = self._tenant_money.get(key.tenant)
        if tenant is not None:
            scopes.append(tenant)
        return scopes

    def cost(self, model: str, prompt_tokens: int, completion_tokens: int) -> int | None:
        """What ``model`` charges for these tokens, micro-yuan; None when it has no price."""
        price = self.config.pricing.models.get(model)
        return None if price is None else price.micro_yuan(prompt_tokens, completion_tokens)

    async def reserve(self, scopes: list[Scope], tokens: int) -> Reservation | None:
        """Reserve ``tokens`` in every scope (``QuotaExceeded`` when a limit is hit), with
        ``store.redis_outage`` applied when Redis fails: ``reject`` raises
        ``AdmissionUnavailable`` (503), ``allow`` admits unchecked (None)."""
        if not scopes:
            return None
        try:
            await self._seed_budgets()
            reservation = await self.admission.reserve(scopes, tokens)
        except RedisError as exc:
            if not self._admission_down:
                self._admission_down = True
                log.error(
                    "配额存储不可用，%s / admission store unreachable, %s: %s",
                    "拒绝受限请求" if self._rejects_on_outage else "不检查限额放行",
                    "limited requests are rejected"
                    if self._rejects_on_outage
                    else "limited requests pass unchecked",
                    exc,
                )
            if self._rejects_on_outage:
                raise AdmissionUnavailable(
                    "配额服务暂不可用，请稍后重试 / rate-limit store unavailable, retry shortly"
                ) from exc
            return None
        if self._admission_down:
            self._admission_down = False
            log.warning("配额存储已恢复 / admission store reachable again")
        return reservation

    def admission_status(self) -> dict[str, Any]:
        """For ``/healthz``: where counters live and whether that store answered last time."""
        store = "redis" if self.config.store.redis_address() else "memory"
        return {
            "store": store,
            "reachable": not self._admission_down,
            "on_outage": self.config.store.redis_outage,
        }

    @property
    def _rejects_on_outage(self) -> bool:
        return self.config.store.redis_outage == "reject"

    async def settle(self, reservation: Reservation, used_tokens: int) -> None:
        """Replace a reservation by what was used. Called after the request's ledger row is
        queued: a failing Redis must not lose usage (an unsettled reservation is released
        by Redis after ``reservation_ttl``; the failure is logged by the admission)."""
        with contextlib.suppress(RedisError):
            await self.admission.settle(reservation, used_tokens)
