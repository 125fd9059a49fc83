"""Knowledge-base changes, audited: the one place the admin API and ``heshi kb`` make
them. Each change commits in one transaction with its audit record
(:meth:`AdminService.change`); an action that changes nothing (a file unchanged or
unreadable) and every refusal is a record of its own."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path
from typing import Any

from heshi.admin.service import ADMIN_TENANT, AdminService
from heshi.admin.tokens import Actor
from heshi.apps.kb.index import Vectors
from heshi.apps.kb.ingest import FileResult, ingest_bytes
from heshi.apps.kb.sessions import Handoff, SessionStore
from heshi.apps.kb.store import KnowledgeBase, KnowledgeBaseStore
from heshi.errors import HeshiError


class KnowledgeAdmin:
    """Create and remove bases, ingest documents, move handoffs — as ``actor``."""

    def __init__(self, service: AdminService) -> None:
        self.service = service
        self.store = KnowledgeBaseStore(service.db)
        self.sessions = SessionStore(service.db)

    def create(
        self,
        actor: Actor,
        name: str,
        tenant: str | None = None,
        user_words: list[str] | None = None,
        ip: str | None = None,
    ) -> KnowledgeBase:
        """A new empty base (``tenant``: only that tenant's keys may use it)."""
        return self.service.change(
            actor, "kb.create", tenant or ADMIN_TENANT,
            {"name": name[:64], "tenant": tenant, "user_words": len(user_words or [])},
            lambda conn: self.store.create(name, tenant, user_words, conn=conn),
            lambda base: {}, ip,
        )  # fmt: skip

    def remove(self, actor: Actor, name: str, ip: str | None = None) -> None:
        """The base and all it holds."""
        tenant = self._tenant_of(name)
        self.service.change(
            actor, "kb.remove", tenant, {"name": name[:64]},
            lambda conn: self.store.remove(name, conn=conn), lambda done: {}, ip,
        )  # fmt: skip

    def ingest(
        self,
        actor: Actor,
        kb: str,
        path: Path,
        data: bytes,
        embed: Vectors | None,
        *,
        source: str,
        ip: str | None = None,
    ) -> FileResult:
        """One document's bytes (``path``: its name and type, never opened; ``source``:
        its identity in the base): read, chunked and embedded, then stored with its
        record; unchanged and unreadable files are recorded alone."""
        tenant = self._tenant_of(kb)
        params: dict[str, Any] = {"kb": kb, "file": path.name[:200], "size": len(data)}

        def save(put: Callable[[Any], Any]) -> Any:
            try:
                return self.service.change(
                    actor, "kb.ingest", tenant, params, put,
                    lambda doc: {"status": "stored", "chunks": doc.chunks}, ip,
                )  # fmt: skip
            except HeshiError as exc:
                exc.recorded = True  # type: ignore[attr-defined]  # change() recorded it
                raise

        try:
            result = ingest_bytes(self.store, kb, path, data, embed, source=source, save=save)
        except HeshiError as exc:
            if not getattr(exc, "recorded", False):
                self.refused(actor, "kb.ingest", tenant, params, exc, ip)
            raise
        except Exception as exc:  # the embedder or the store failed: still on the record
            failure = {"result": "error", "error": f"{type(exc).__name__}: {exc}"[:500]}
            self.service.record(actor, "kb.ingest", tenant, params, failure, ip)
            raise
        if result.status in ("unchanged", "failed"):
            outcome = {"result": result.status, "error": result.error or ""}
            self.service.record(actor, "kb.ingest", tenant, params, outcome, ip)
        return result

    def move_handoff(
        self, actor: Actor, handoff_id: str, status: str, ip: str | None = None
    ) -> Handoff:
        """``taken`` (from open) or ``closed`` (from open or taken)."""
        return self.service.change(
            actor, "kb.handoff", ADMIN_TENANT, {"id": handoff_id[:64], "status": status},
            lambda conn: self.sessions.move_handoff(handoff_id, status, conn=conn),
            lambda handoff: {"kb": handoff.kb, "tenant": handoff.tenant}, ip,
        )  # fmt: skip

    def refused(
        self,
        actor: Actor,
        action: str,
        tenant: str,
        params: dict[str, Any],
        exc: HeshiError,
        ip: str | None = None,
    ) -> None:
        """Record a refusal that no change method saw (a bad upload, say)."""
        outcome = {"result": "refused", "code": exc.code or exc.reason, "error": exc.message}
        self.service.record(actor, action, tenant, params, outcome, ip)

    def _tenant_of(self, name: str) -> str:
        try:
            return self.store.get(name).tenant or ADMIN_TENANT
        except HeshiError:
            return ADMIN_TENANT  # the change itself reports the missing base
