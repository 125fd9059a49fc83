"""``/admin/v1/kb/…`` changes, by admins, each audited: create a knowledge base, upload a
document into it (one file per request, read as it arrives within ``MAX_FILE_BYTES`` and
ingested as ``heshi kb ingest`` does), take or close a handoff."""

# No `from __future__ import annotations`: FastAPI reads the route annotations at run time.
import asyncio
import re
from collections.abc import Callable
from pathlib import Path, PurePosixPath
from typing import Annotated, Any, Literal

from fastapi import Depends, FastAPI, Request
from pydantic import BaseModel, ConfigDict, Field

from heshi.admin.params import client_ip
from heshi.admin.service import ADMIN_TENANT
from heshi.admin.tokens import Actor
from heshi.errors import HeshiError, InvalidRequest

# Uploads are streamed to the route, bounded by the form reader (bounded.BoundedBody
# passes them through): POST /kb/{name}/documents.
UPLOAD_PATH = re.compile(r"/kb/[^/]+/documents$")
_NAME = re.compile(r"[^\\/\x00-\x1f]{1,200}")


class NewBase(BaseModel):
    model_config = ConfigDict(extra="forbid", strict=True)

    name: Annotated[str, Field(min_length=1, max_length=64)]
    tenant: Annotated[str, Field(min_length=1, max_length=64)] | None = None


class HandoffMove(BaseModel):
    model_config = ConfigDict(extra="forbid", strict=True)

    status: Literal["taken", "closed"]


def add_knowledge_changes(
    app: FastAPI, api: Any, embedder: Callable[[], Any] | None = None
) -> None:
    """``POST /kb``, ``POST /kb/{name}/documents``, ``POST /kb-handoffs/{id}``.
    ``embedder`` gives the gateway's own passage embedder (None, or it gives None: one is
    made on the first upload)."""
    from heshi.apps.kb.documents import MAX_FILE_BYTES
    from heshi.apps.kb.sessions import SessionStore
    from heshi.apps.kb.store import KnowledgeBaseStore

    Who = Annotated[Actor, Depends(api.actor)]
    service = api.service
    db = service.db
    ingesting = asyncio.Lock()  # one upload parsed and embedded at a time: CPU-bound
    vectors: list[Any] = []

    def embed() -> Any:
        if not vectors:
            from heshi.apps.kb.index import E5Vectors

            vectors.append((embedder() if embedder else None) or E5Vectors())
        return vectors[0]

    def audited(actor: Actor, action: str, tenant: str, params: dict[str, Any],
                request: Request, do: Callable[[], Any]) -> Any:  # fmt: skip
        try:
            actor.require("admin")
            done = do()
        except HeshiError as exc:
            outcome = {"result": "refused", "code": exc.code or exc.reason, "error": exc.message}
            service.record(actor, action, tenant, params, outcome, client_ip(request))
            raise
        return done

    @app.post("/kb", status_code=201, tags=["knowledge bases"])
    def create_base(actor: Who, body: NewBase, request: Request) -> dict[str, Any]:
        """A new, empty knowledge base (admins; audited); ``tenant`` limits it to one
        tenant's keys."""
        params = {"name": body.name, "tenant": body.tenant}
        tenant = body.tenant or ADMIN_TENANT
        with db.outage_as_unavailable():
            base = audited(
                actor, "kb.create", tenant, params, request,
                lambda: KnowledgeBaseStore(db).create(body.name, body.tenant),
            )  # fmt: skip
        service.record(actor, "kb.create", tenant, params, {"result": "ok"}, client_ip(request))
        return {"name": base.name, "model": f"kb:{base.name}", "tenant": base.tenant}

    @app.post("/kb/{name}/documents", tags=["knowledge bases"])
    async def upload(actor: Who, name: str, request: Request) -> dict[str, Any]:
        """One document as ``multipart/form-data`` part ``file`` (admins; audited): read,
        chunked, embedded and stored; the same file name again replaces its chunks."""
        from heshi.apps.kb.ingest import ingest_bytes
        from heshi.gateway.forms import FormSpec, read_form

        store = KnowledgeBaseStore(db)
        with db.outage_as_unavailable():
            # refused (and recorded) before the body is read: not an admin, no such base
            base = audited(actor, "kb.ingest", ADMIN_TENANT, {"kb": name}, request,
                           lambda: store.get(name))  # fmt: skip
        spec = FormSpec(MAX_FILE_BYTES + 16 * 1024, {"file": MAX_FILE_BYTES}, "MAX_FILE_BYTES")
        part = (await read_form(request, spec)).get("file")
        if part is None or not part.filename:
            raise InvalidRequest("缺少文件 / the form needs a 'file' part", param="file")
        file_name = PurePosixPath(part.filename.replace("\\", "/")).name
        if not _NAME.fullmatch(file_name):
            raise InvalidRequest("文件名无效 / invalid file name", param="file")
        data = bytes(part.data)
        part.data.clear()
        params = {"kb": name, "file": file_name, "size": len(data)}
        tenant = base.tenant or ADMIN_TENANT
        async with ingesting:
            result = await asyncio.to_thread(
                lambda: ingest_bytes(
                    store,
                    name,
                    Path(file_name),  # its name and type; never opened
                    data,
                    embed(),
                    source=f"upload:{file_name}",
                )
            )
        outcome = {
            "result": "ok" if result.status != "failed" else "failed",
            "status": result.status,
            "chunks": result.chunks,
            "error": result.error,
        }
        service.record(actor, "kb.ingest", tenant, params, outcome, client_ip(request))
        documents, chunks = store.counts(name)
        return {
            "file": file_name, "status": result.status, "chunks": result.chunks,
            "pages": result.pages, "error": result.error or None,
            "kb": {"name": name, "documents": documents, "chunks": chunks},
        }  # fmt: skip

    @app.post("/kb-handoffs/{handoff_id}", tags=["knowledge bases"])
    def move_handoff(
        actor: Who, handoff_id: Annotated[str, Field(max_length=64)], body: HandoffMove,
        request: Request,
    ) -> dict[str, Any]:  # fmt: skip
        """Take a handoff (``open`` → ``taken``) or close it (admins; audited)."""
        params = {"id": handoff_id[:64], "status": body.status}
        with db.outage_as_unavailable():
            moved = audited(
                actor, "kb.handoff", ADMIN_TENANT, params, request,
                lambda: SessionStore(db).move_handoff(handoff_id, body.status),
            )  # fmt: skip
        service.record(
            actor, "kb.handoff", moved.tenant or ADMIN_TENANT, params, {"result": "ok"},
            client_ip(request),
        )  # fmt: skip
        answer: dict[str, Any] = moved.as_json()
        return answer
