"""``/admin/v1/audit/…``: the audit log a page at a time, its verification, its export."""

# No `from __future__ import annotations`: FastAPI reads the route annotations at run time.
from collections.abc import Iterator
from datetime import datetime
from typing import Annotated, Any, Literal

from fastapi import Depends, FastAPI, Query, Request
from fastapi.responses import StreamingResponse

from heshi.admin.params import aware, client_ip
from heshi.admin.schemas import AuditIssue, AuditRecordOut, VerifyOut
from heshi.admin.tokens import Actor


def add_audit_routes(app: FastAPI, api: Any) -> None:
    """The audit log: pages of records, verification, export."""
    service = api.service
    ip = client_ip
    Who = Annotated[Actor, Depends(api.actor)]

    @app.get("/audit/records", response_model=list[AuditRecordOut], tags=["audit"])
    def audit_records(
        actor: Who,
        limit: Annotated[int, Query(ge=1, le=500)] = 50,
        before_seq: Annotated[int | None, Query(ge=1, le=2**62)] = None,
        tenant: Annotated[str | None, Query(max_length=64)] = None,
    ) -> Any:
        records = service.audit_page(actor, limit=limit, before_seq=before_seq, tenant=tenant)
        return [
            AuditRecordOut(**{k: getattr(r, k) for k in AuditRecordOut.model_fields})
            for r in records
        ]

    @app.post("/audit/verify", response_model=VerifyOut, tags=["audit"])
    def audit_verify(actor: Who, request: Request) -> Any:
        report = service.verify_audit(actor, ip(request))
        return VerifyOut(
            intact=report.intact,
            records=report.records,
            signed_records=report.signed_records,
            checkpoints=report.checkpoints,
            first_seq=report.first_seq,
            last_seq=report.last_seq,
            head_hash=report.head_hash,
            issue_count=report.issue_count,
            issues=[
                AuditIssue(seq=i.seq, kind=i.kind, detail=i.detail, explained=str(i))
                for i in report.issues
            ],
            summary=report.summary(),
        )

    @app.get("/audit/export", tags=["audit"], response_class=StreamingResponse)
    def audit_export(
        actor: Who,
        request: Request,
        since: datetime | None = None,
        until: datetime | None = None,
        format: Literal["jsonl", "csv"] = "jsonl",
    ) -> StreamingResponse:
        aware(since, "since")
        aware(until, "until")
        lines = service.export_audit(actor, since, until, format, ip(request))
        media = "text/csv" if format == "csv" else "application/x-ndjson"
        return StreamingResponse(
            _encoded(lines),
            media_type=f"{media}; charset=utf-8",
            headers={"content-disposition": f'attachment; filename="heshi-audit.{format}"'},
        )


def _encoded(lines: Iterator[str]) -> Iterator[bytes]:
    for line in lines:
        yield line.encode("utf-8")
