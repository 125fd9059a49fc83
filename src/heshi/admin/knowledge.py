"""``/admin/v1/kb/…``: the knowledge bases and the handoff queue, read by every role
(changes: :mod:`heshi.admin.kbchanges`). Asking a base is the playground with the model
``kb:NAME``."""

# No `from __future__ import annotations`: FastAPI reads the route annotations at run time.
from typing import Annotated, Any, Literal

from fastapi import Depends, FastAPI, Query

from heshi.admin.tokens import Actor


def add_knowledge_routes(app: FastAPI, api: Any) -> None:
    """``GET /kb``, ``GET /kb/{name}/documents``, ``GET /kb-handoffs``."""
    from heshi.apps.kb.sessions import SessionStore
    from heshi.apps.kb.store import KnowledgeBaseStore

    Who = Annotated[Actor, Depends(api.actor)]
    db = api.service.db

    @app.get("/kb", tags=["knowledge bases"])
    def bases(
        actor: Who, tenant: Annotated[str | None, Query(min_length=1, max_length=64)] = None
    ) -> list[dict[str, Any]]:
        """Every knowledge base (or one tenant's): documents, chunks, revision, dates."""
        store = KnowledgeBaseStore(db)
        with db.outage_as_unavailable():
            out = []
            for base in store.bases(tenant):
                documents, chunks = store.counts(base.name)
                out.append(
                    {
                        "name": base.name,
                        "model": f"kb:{base.name}",
                        "tenant": base.tenant,
                        "documents": documents,
                        "chunks": chunks,
                        "revision": base.revision,
                        "user_words": len(base.user_words),
                        "created_at": base.created_at.isoformat(),
                        "updated_at": base.updated_at.isoformat(),
                    }
                )
            return out

    @app.get("/kb/{name}/documents", tags=["knowledge bases"])
    def documents(actor: Who, name: str) -> list[dict[str, Any]]:
        """The documents of one base: file name, size, pages, chunks, when ingested."""
        store = KnowledgeBaseStore(db)
        with db.outage_as_unavailable():
            store.get(name)  # KnowledgeBaseNotFound (404) for an unknown base
            return [
                {
                    "name": d.name,
                    "size": d.size,
                    "pages": d.pages,
                    "chunks": d.chunks,
                    "sha256": d.sha256,
                    "ingested_at": d.ingested_at.isoformat(),
                }
                for d in store.documents(name)
            ]

    @app.get("/kb-handoffs", tags=["knowledge bases"])
    def handoffs(
        actor: Who,
        kb: Annotated[str | None, Query(min_length=1, max_length=64)] = None,
        status: Literal["open", "taken", "closed"] | None = None,
        limit: Annotated[int, Query(ge=1, le=500)] = 50,
    ) -> list[dict[str, Any]]:
        """The handoff queue, newest first: the conversation, why, the webhook's outcome."""
        with db.outage_as_unavailable():
            return [h.as_json() for h in SessionStore(db).handoffs(kb, status, limit)]
