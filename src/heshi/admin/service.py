"""The admin service layer: what the CLI, the admin HTTP API and the console all call.

Every method takes the ``Actor`` doing it. Changes need the ``admin`` role; reads are
open to ``auditor`` too. Every change — and every change refused for lack of the role —
is appended to the audit log before the method returns, as a record of its own:
``tenant`` is the tenant the change concerns (``_admin`` for Heshi-wide ones), ``input``
the action and its parameters as JSON (never a secret: a created key's plaintext is not
in it), ``output`` the outcome, ``policy_version`` ``admin/v1``. So the log answers "who
created this key, who suspended that one" with the same hash chain and signatures as
the requests it records.
"""

from __future__ import annotations

import json
import logging
import secrets
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass
from datetime import datetime
from typing import Any, TypeVar

from sqlalchemy import Connection

from heshi.admin.tokens import Actor, AdminToken, AdminTokenStore, safe_reference
from heshi.audit import AuditEntry, AuditLog, ExportFormat, VerifyReport
from heshi.audit.records import AuditRecord
from heshi.config.pricing import PricingConfig
from heshi.errors import HeshiError
from heshi.store.db import Database
from heshi.store.keys import ApiKey, KeyStore
from heshi.store.usage import GroupBy, UsageRow, usage_report

log = logging.getLogger("heshi.admin")
ADMIN_TENANT = "_admin"  # audit records of changes that concern no single tenant
POLICY = "admin/v1"
T = TypeVar("T")


@dataclass(frozen=True)
class KeySpec:
    """What a new API key may do (``None``: no limit of that kind)."""

    tenant: str
    name: str
    models: Sequence[str] | None = None
    rpm: int | None = None
    tpm: int | None = None
    budget_tokens: int | None = None
    expires_at: datetime | None = None
    budget_cny: float | None = None  # lifetime spend limit in yuan


class AdminService:
    """Keys, admin tokens, usage and the audit log of one database, audited."""

    def __init__(
        self,
        db: Database,
        audit: AuditLog,
        on_keys_changed: Callable[[], None] | None = None,
        pricing: PricingConfig | None = None,
    ) -> None:
        self.db = db
        self.pricing = pricing or PricingConfig()
        self.keys = KeyStore(db)
        self.tokens = AdminTokenStore(db)
        self.audit = audit
        # a gateway reloads its keys at once: a key made in the console works right away
        self._keys_changed = on_keys_changed

    # -- the audit trail of admin actions -------------------------------------------------

    def _entry(
        self,
        actor: Actor,
        action: str,
        tenant: str,
        params: dict[str, Any],
        outcome: dict[str, Any],
        client_ip: str | None,
    ) -> AuditEntry:
        return AuditEntry(
            tenant=tenant,
            request_id="adm-" + secrets.token_hex(12),
            input=_canonical(
                {
                    "admin_action": action,
                    "actor": actor.name,
                    # the token's id tells apart two tokens with the same name
                    "actor_id": actor.token_id or actor.name,
                    "role": actor.role,
                    "via": actor.via,
                    "params": params,
                }
            ),
            output=_canonical(outcome),
            client_ip=client_ip,
            policy_version=POLICY,
        )

    def record(
        self,
        actor: Actor,
        action: str,
        tenant: str,
        params: dict[str, Any],
        outcome: dict[str, Any],
        client_ip: str | None = None,
    ) -> None:
        """Append one admin action that changed nothing (a refusal, a sign-in, a check)."""
        self.audit.append(self._entry(actor, action, tenant, params, outcome, client_ip))

    def change(
        self,
        actor: Actor,
        action: str,
        tenant: str,
        params: dict[str, Any],
        do: Callable[[Connection], T],
        describe: Callable[[T], dict[str, Any]],
        client_ip: str | None = None,
    ) -> T:
        """Run ``do`` as ``actor`` (admins only) in one transaction with its audit record,
        so that no change is ever saved without it; a refusal is recorded on its own."""
        try:
            actor.require("admin")
            result = self.audit.append_with(
                do,
                lambda done: self._entry(
                    actor, action, tenant, params, {"result": "ok", **describe(done)}, client_ip
                ),
            )
        except HeshiError as exc:
            outcome = {"result": "refused", "code": exc.code or exc.reason, "error": exc.message}
            self.record(actor, action, tenant, params, outcome, client_ip)
            raise
        if action.startswith("keys.") and self._keys_changed is not None:
            try:
                self._keys_changed()
            except HeshiError as exc:  # saved and audited; other gateways pick it up anyway
                log.warning("密钥缓存未刷新 / keys not reloaded at once: %s", exc.message)
        return result

    # -- API keys -------------------------------------------------------------------------

    def create_key(
        self, actor: Actor, spec: KeySpec, client_ip: str | None = None
    ) -> tuple[str, ApiKey]:
        """A new API key: (its plaintext, shown once; what is stored)."""
        params = {
            "tenant": spec.tenant,
            "name": spec.name,
            "models": list(spec.models) if spec.models is not None else None,
            "rpm": spec.rpm,
            "tpm": spec.tpm,
            "budget_tokens": spec.budget_tokens,
            "budget_cny": spec.budget_cny,
            "expires_at": spec.expires_at.isoformat() if spec.expires_at else None,
        }
        return self.change(
            actor,
            "keys.create",
            spec.tenant,
            params,
            lambda conn: self.keys.create(
                spec.tenant,
                spec.name,
                models=spec.models,
                rpm=spec.rpm,
                tpm=spec.tpm,
                budget_tokens=spec.budget_tokens,
                expires_at=spec.expires_at,
                budget_cny=spec.budget_cny,
                conn=conn,
            ),
            lambda created: {"key_id": created[1].id, "prefix": created[1].prefix},
            client_ip,
        )

    def list_keys(self, actor: Actor, tenant: str | None = None) -> list[ApiKey]:
        return self.keys.list(tenant)

    def get_key(self, actor: Actor, id_or_prefix: str) -> ApiKey:
        return self.keys.get(id_or_prefix)

    def change_key(
        self,
        actor: Actor,
        id_or_prefix: str,
        state: str,
        reason: str | None = None,
        client_ip: str | None = None,
    ) -> ApiKey:
        """``state``: revoke, suspend (with ``reason``) or resume."""
        params: dict[str, Any] = {"key_id": id_or_prefix[:64]}
        if state == "suspend":
            params["reason"] = reason
        try:
            key = self.keys.get(id_or_prefix)
        except HeshiError as exc:  # an unknown key: the attempt is recorded all the same
            outcome = {"result": "refused", "code": exc.code or exc.reason, "error": exc.message}
            self.record(actor, f"keys.{state}", ADMIN_TENANT, params, outcome, client_ip)
            raise
        moves: dict[str, Callable[[Connection], ApiKey]] = {
            "revoke": lambda conn: self.keys.revoke(key.id, conn),
            "suspend": lambda conn: self.keys.suspend(key.id, reason, conn),
            "resume": lambda conn: self.keys.resume(key.id, conn),
        }
        params["key_id"] = key.id
        return self.change(
            actor,
            f"keys.{state}",
            key.tenant,
            params,
            moves[state],
            lambda k: {"key_id": k.id, "status": k.status},
            client_ip,
        )

    # -- admin tokens ---------------------------------------------------------------------

    def create_admin_token(
        self, actor: Actor, name: str, role: str, client_ip: str | None = None
    ) -> tuple[str, AdminToken]:
        return self.change(
            actor,
            "admin_tokens.create",
            ADMIN_TENANT,
            {"name": name, "role": role},
            lambda conn: self.tokens.create(name, role, conn),
            lambda created: {"token_id": created[1].id, "prefix": created[1].prefix},
            client_ip,
        )

    def list_admin_tokens(self, actor: Actor) -> list[AdminToken]:
        return self.tokens.list()

    def revoke_admin_token(
        self, actor: Actor, id_or_prefix: str, client_ip: str | None = None
    ) -> AdminToken:
        return self.change(
            actor,
            "admin_tokens.revoke",
            ADMIN_TENANT,
            {"token": safe_reference(id_or_prefix)},
            lambda conn: self.tokens.revoke(id_or_prefix, conn),
            lambda token: {"token_id": token.id},
            client_ip,
        )

    # -- usage and the audit log ----------------------------------------------------------

    def usage(
        self,
        actor: Actor,
        tenant: str | None,
        since: datetime,
        until: datetime | None,
        by: GroupBy,
        model: str | None = None,
        key_id: str | None = None,
    ) -> list[UsageRow]:
        """Usage grouped in the database (one aggregate query; docs/console.md)."""
        return usage_report(
            self.db, tenant=tenant, since=since, until=until, by=by, model=model, key_id=key_id
        )

    def audit_page(
        self,
        actor: Actor,
        *,
        limit: int = 50,
        before_seq: int | None = None,
        tenant: str | None = None,
    ) -> list[AuditRecord]:
        """Audit records newest first, a page at a time."""
        return self.audit.page(limit=limit, before_seq=before_seq, tenant=tenant)

    def verify_audit(self, actor: Actor, client_ip: str | None = None) -> VerifyReport:
        """Check the whole chain (any role); the check itself is recorded."""
        report = self.audit.verify()
        outcome = {
            "result": "ok",
            "intact": report.intact,
            "records": report.records,
            "issues": report.issue_count,
        }
        self.record(actor, "audit.verify", ADMIN_TENANT, {}, outcome, client_ip)
        return report

    def export_audit(
        self,
        actor: Actor,
        since: datetime | None,
        until: datetime | None,
        fmt: ExportFormat,
        client_ip: str | None = None,
    ) -> Iterator[str]:
        """The records as JSONL or CSV lines (any role); who exported what is recorded."""
        params = {
            "since": since.isoformat() if since else None,
            "until": until.isoformat() if until else None,
            "format": fmt,
        }
        self.record(actor, "audit.export", ADMIN_TENANT, params, {"result": "ok"}, client_ip)
        return self.audit.export(since, until, fmt)


def _canonical(value: Any) -> str:
    return json.dumps(value, ensure_ascii=False, sort_keys=True, separators=(",", ":"))
