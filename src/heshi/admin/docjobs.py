"""``/admin/v1/docs/jobs``: every tenant's document jobs, read by any role (jobs are made
and fed through ``/v1/docs/jobs`` with an API key, whose calls they are charged to)."""

# No `from __future__ import annotations`: FastAPI reads the route annotations at run time.
from typing import Annotated, Any

from fastapi import Depends, FastAPI, Query

from heshi.admin.tokens import Actor


def add_docjob_routes(app: FastAPI, api: Any) -> None:
    """``GET /docs/jobs`` and ``GET /docs/jobs/{id}``."""
    from heshi.store.docjobs import DocJobStore

    Who = Annotated[Actor, Depends(api.actor)]
    store = DocJobStore(api.service.db)

    @app.get("/docs/jobs", tags=["documents"])
    def jobs(
        actor: Who,
        tenant: Annotated[str | None, Query(min_length=1, max_length=64)] = None,
        limit: Annotated[int, Query(ge=1, le=500)] = 50,
    ) -> list[dict[str, Any]]:
        """The newest document jobs (of one tenant): progress by file status."""
        return [j.as_json() for j in store.jobs(tenant, limit)]

    @app.get("/docs/jobs/{job_id}", tags=["documents"])
    def job(actor: Who, job_id: str) -> dict[str, Any]:
        """One job and every file's outcome (fields, problems, error)."""
        found = store.get(job_id[:64])
        return {**found.as_json(), "data": [f.as_json() for f in store.files(found.id)]}
