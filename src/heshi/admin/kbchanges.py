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
# a file name: no separators, no control, bidi-override or other invisible format chars
_NAME = re.compile(r"[^\\/\x00-\x1f\x7f-\x9f\u200b-\u200f\u202a-\u202e\u2066-\u2069\ufeff]{1,200}")


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
    from heshi.admin.kbservice import KnowledgeAdmin

    Who = Annotated[Actor, Depends(api.actor)]
    kb = KnowledgeAdmin(api.service)
    ingesting = asyncio.Lock()  # one upload parsed and embedded at a time: CPU-bound
    waiting = [0]  # uploads read or waiting for the lock: each holds its file in memory
    vectors: list[Any] = []

    def embed() -> Any:
        if not vectors:
            from heshi.apps.kb.index import E5Vectors

            vectors.append((embedder() if embedder else None) or E5Vectors())
        return vectors[0]

    @app.post("/kb", status_code=201, tags=["knowledge bases"])
    def create_base(actor: Who, body: NewBase, request: Request) -> dict[str, Any]:
        """A new, empty knowledge base (admins; audited); ``tenant`` limits it to one
        tenant's keys."""
        base = kb.create(actor, body.name, body.tenant, ip=client_ip(request))
        return {"name": base.name, "model": f"kb:{base.name}", "tenant": base.tenant}

    @app.post("/kb/{name}/documents", tags=["knowledge bases"])
    async def upload(actor: Who, name: str, request: Request) -> dict[str, Any]:
        """One document as ``multipart/form-data`` part ``file`` (admins; audited): read,
        chunked, embedded and stored; the same file name again replaces its chunks."""
        params: dict[str, Any] = {"kb": name[:64]}
        tenant, ip = ADMIN_TENANT, client_ip(request)
        try:
            actor.require("admin")
            base = await asyncio.to_thread(kb.store.get, name)  # before the body is read
            tenant = base.tenant or ADMIN_TENANT
            if waiting[0] >= _MAX_WAITING:
                raise UploadsBusy(
                    "正在导入其他文档，请稍后重试 / other uploads are being ingested; retry shortly"
                )
        except HeshiError as exc:
            await asyncio.to_thread(kb.refused, actor, "kb.ingest", tenant, params, exc, ip)
            raise
        waiting[0] += 1
        try:
            try:
                file_name, data = await _read_upload(request, params)
            except HeshiError as exc:
                await asyncio.to_thread(kb.refused, actor, "kb.ingest", tenant, params, exc, ip)
                raise
            async with ingesting:
                result = await asyncio.to_thread(
                    lambda: kb.ingest(
                        actor, name, Path(file_name), data, embed(),  # the path is never opened
                        source=f"upload:{file_name}", ip=ip,
                    )
                )  # fmt: skip
        finally:
            waiting[0] -= 1
        documents, chunks = await asyncio.to_thread(kb.store.counts, name)
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
        moved = kb.move_handoff(actor, handoff_id, body.status, client_ip(request))
        answer: dict[str, Any] = moved.as_json()
        return answer


_MAX_WAITING = 3  # uploads held in memory at once (each ≤ MAX_FILE_BYTES); more: 503


class UploadsBusy(HeshiError):
    """Too many uploads are being read or wait to be ingested (HTTP 503)."""

    status_code = 503
    error_type = "server_error"
    code = "uploads_busy"


async def _read_upload(request: Request, params: dict[str, Any]) -> tuple[str, bytes]:
    """The ``file`` part of the form: its base name (never a path) and its bytes."""
    from heshi.apps.kb.documents import MAX_FILE_BYTES
    from heshi.gateway.forms import FormSpec, read_form

    spec = FormSpec(MAX_FILE_BYTES + 16 * 1024, {"file": MAX_FILE_BYTES}, "MAX_FILE_BYTES")
    part = (await read_form(request, spec)).get("file")
    if part is None or not part.filename:
        raise InvalidRequest("缺少文件 / the form needs a 'file' part", param="file")
    file_name = PurePosixPath(part.filename.replace("\\", "/")).name
    params["file"] = file_name[:200]
    if not _NAME.fullmatch(file_name):
        raise InvalidRequest(
            "文件名无效（不能含控制字符或方向控制符）/ invalid file name (control or "
            "direction-changing characters)",
            param="file",
        )
    data = bytes(part.data)
    part.data.clear()  # one copy in memory, not two
    params["size"] = len(data)
    return file_name, data
