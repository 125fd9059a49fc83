"""Document jobs in the store: a job and its files, queued until a gateway extracts them.

Any gateway replica on the database may take the next queued file: taking it is one
conditional UPDATE (``queued`` → ``running``, with a claim token), so two replicas never
take the same file, and only the claim's holder can finish or requeue it. The holder
refreshes its claim while it works; a file whose holder went silent (a replica that died)
is taken again after ``stale_seconds``. Every read filters by tenant in SQL when a tenant
is given, so one tenant never sees another's jobs.
"""

from __future__ import annotations

import hashlib
import secrets
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from typing import Any

from sqlalchemy import func, insert, select, update

from heshi.errors import HeshiError, InvalidRequest
from heshi.store.db import Database
from heshi.store.tables import docs_job_files, docs_jobs

MAX_WAITING_FILES = 200  # files queued per tenant at once: the store is not a file share
STATUSES = ("queued", "running", "done", "failed", "cancelled")


class JobNotFound(InvalidRequest):
    """No job with this id (for this tenant): HTTP 404."""

    status_code = 404
    code = "job_not_found"


class JobClosed(HeshiError):
    """The job was cancelled: it takes no more files (HTTP 409)."""

    status_code = 409
    error_type = "invalid_request_error"
    code = "job_cancelled"


class QueueFull(HeshiError):
    """The tenant has too many files waiting (HTTP 429)."""

    status_code = 429
    error_type = "rate_limit_error"
    code = "docs_queue_full"
    reason = "docs.queue_full"
    retry_after = 30.0


@dataclass(frozen=True)
class Job:
    id: str
    tenant: str
    key_id: str | None
    name: str
    schema: str
    model: str
    status: str  # open | cancelled
    created_at: datetime
    counts: dict[str, int] = field(default_factory=dict)  # files by status

    def as_json(self) -> dict[str, Any]:
        total = sum(self.counts.values())
        finished = sum(self.counts.get(s, 0) for s in ("done", "failed", "cancelled"))
        return {
            "id": self.id, "object": "docs.job", "tenant": self.tenant, "name": self.name,
            "schema": self.schema, "model": self.model, "status": self.status,
            "created_at": self.created_at.isoformat(), "files": total, "finished": finished,
            "counts": {s: self.counts.get(s, 0) for s in STATUSES},
        }  # fmt: skip


@dataclass(frozen=True)
class JobFile:
    id: str
    job_id: str
    seq: int
    key_id: str | None
    file_name: str
    size: int
    sha256: str
    status: str
    type: str | None
    result: dict[str, Any] | None
    error: str | None
    queued_at: datetime
    not_before: datetime | None
    attempts: int
    claim: str | None
    started_at: datetime | None
    finished_at: datetime | None
    data: bytes | None = field(default=None, repr=False)

    def as_json(self) -> dict[str, Any]:
        result = self.result or {}
        return {
            "id": self.id, "seq": self.seq, "file": self.file_name, "size": self.size,
            "sha256": self.sha256, "status": self.status, "type": self.type,
            "fields": result.get("fields"), "problems": result.get("problems"),
            "pages": result.get("pages"), "truncated": result.get("truncated"),
            "usage": result.get("usage"), "error": self.error,
            "queued_at": self.queued_at.isoformat(),
            "finished_at": self.finished_at.isoformat() if self.finished_at else None,
        }  # fmt: skip


_FILE_COLUMNS = [c for c in docs_job_files.c if c.name != "data"]


def _job_fields(row: Any) -> dict[str, Any]:
    return {k: v for k, v in dict(row).items() if k != "next_seq"}


def _now() -> datetime:
    return datetime.now(UTC)


class DocJobStore:
    """Jobs and their files in ``db``."""

    def __init__(self, db: Database) -> None:
        self.db = db

    def create(self, tenant: str, key_id: str | None, name: str, schema: str, model: str) -> Job:
        job = Job(
            "job_" + secrets.token_hex(12), tenant, key_id, name, schema, model, "open", _now()
        )
        values = {k: v for k, v in job.__dict__.items() if k != "counts"}
        with self.db.writing() as tx:
            tx.execute(insert(docs_jobs).values(**values))
        return job

    def get(self, job_id: str, tenant: str | None = None) -> Job:
        """The job with its file counts; ``JobNotFound`` for another tenant's."""
        query = select(docs_jobs).where(docs_jobs.c.id == job_id)
        if tenant is not None:
            query = query.where(docs_jobs.c.tenant == tenant)
        with self.db.outage_as_unavailable(), self.db.read() as conn:
            row = conn.execute(query).mappings().first()
            if row is None:
                raise JobNotFound(f"没有这个单据任务 / no document job {job_id!r}", param="id")
            return Job(**_job_fields(row), counts=self._counts(conn, [job_id]).get(job_id, {}))

    def jobs(self, tenant: str | None = None, limit: int = 50) -> list[Job]:
        """The newest jobs (of ``tenant``), with their file counts."""
        query = select(docs_jobs).order_by(docs_jobs.c.created_at.desc()).limit(limit)
        if tenant is not None:
            query = query.where(docs_jobs.c.tenant == tenant)
        with self.db.outage_as_unavailable(), self.db.read() as conn:
            rows = [_job_fields(r) for r in conn.execute(query).mappings()]
            counts = self._counts(conn, [r["id"] for r in rows])
        return [Job(**r, counts=counts.get(r["id"], {})) for r in rows]

    def _counts(self, conn: Any, job_ids: list[str]) -> dict[str, dict[str, int]]:
        f = docs_job_files.c
        query = (
            select(f.job_id, f.status, func.count())
            .where(f.job_id.in_(job_ids))
            .group_by(f.job_id, f.status)
        )
        out: dict[str, dict[str, int]] = {}
        for job_id, status, n in conn.execute(query):
            out.setdefault(job_id, {})[status] = int(n)
        return out

    def add_file(self, job: Job, file_name: str, data: bytes, key_id: str | None) -> JobFile:
        """Queue one file of ``job``, to be extracted with the key ``key_id`` that sent it
        (``QueueFull`` past MAX_WAITING_FILES of the tenant, ``JobClosed`` once the job
        was cancelled — checked in the same transaction that numbers the file)."""
        f, j = docs_job_files.c, docs_jobs.c
        waiting = (
            select(func.count())
            .select_from(docs_job_files.join(docs_jobs, f.job_id == j.id))
            .where(j.tenant == job.tenant, f.status.in_(("queued", "running")))
        )
        with self.db.writing() as tx:
            # the job's row is locked by this update until the file is in: numbers never
            # collide, and a cancel cannot slip between the check and the insert
            seq = tx.execute(
                update(docs_jobs)
                .where(j.id == job.id, j.status == "open")
                .values(next_seq=j.next_seq + 1)
                .returning(j.next_seq)
            ).scalar_one_or_none()
            if seq is None:
                raise JobClosed(f"单据任务已取消 / document job {job.id} was cancelled")
            if tx.execute(waiting).scalar_one() >= MAX_WAITING_FILES:
                raise QueueFull(
                    f"等待处理的文件已达 {MAX_WAITING_FILES} 个，请稍后再传 / "
                    f"{MAX_WAITING_FILES} files are waiting already; upload more later"
                )
            row = {
                "id": f"{job.id}-{seq}", "job_id": job.id, "seq": seq, "key_id": key_id,
                "file_name": file_name, "size": len(data),
                "sha256": hashlib.sha256(data).hexdigest(), "data": data, "status": "queued",
                "type": None, "result": None, "error": None, "queued_at": _now(),
                "not_before": None, "attempts": 0, "claim": None, "started_at": None,
                "finished_at": None,
            }  # fmt: skip
            tx.execute(insert(docs_job_files).values(**row))
        return JobFile(**row)

    def files(self, job_id: str) -> list[JobFile]:
        """A job's files in upload order, without their bytes."""
        query = (
            select(*_FILE_COLUMNS)
            .where(docs_job_files.c.job_id == job_id)
            .order_by(docs_job_files.c.seq)
        )
        with self.db.outage_as_unavailable(), self.db.read() as conn:
            return [JobFile(**dict(r)) for r in conn.execute(query).mappings()]

    def take(self, stale_seconds: float) -> tuple[Job, JobFile] | None:
        """The next file to extract, now ``running`` for this caller alone (its ``claim``);
        None when there is none. Jobs take turns — the job served longest ago goes first —
        so one tenant's long queue does not hold up another's file. A file whose taker
        has not been heard of for ``stale_seconds`` (:meth:`heartbeat`) is taken again."""
        f, j = docs_job_files.c, docs_jobs.c
        now = _now()
        stale = now - timedelta(seconds=stale_seconds)
        ready = ((f.status == "queued") & ((f.not_before.is_(None)) | (f.not_before <= now))) | (
            (f.status == "running") & (f.started_at < stale)
        )
        served = (
            select(f.job_id, func.max(f.started_at).label("last")).group_by(f.job_id).subquery()
        )
        candidates = (
            select(f.id)
            .join(docs_jobs, j.id == f.job_id)
            .outerjoin(served, served.c.job_id == f.job_id)
            .where(ready, j.status == "open")
            .order_by(served.c.last.asc().nulls_first(), f.seq)
            .limit(5)
        )
        claim = secrets.token_hex(8)
        with self.db.outage_as_unavailable():
            with self.db.read() as conn:
                ids = list(conn.execute(candidates).scalars())
            for file_id in ids:
                with self.db.begin() as tx:
                    taken = tx.execute(
                        update(docs_job_files)
                        .where(f.id == file_id, ready)
                        .values(
                            status="running",
                            started_at=now,
                            claim=claim,
                            attempts=f.attempts + 1,
                        )
                    ).rowcount
                    if not taken:
                        continue  # another replica took it first
                    row = tx.execute(select(docs_job_files).where(f.id == file_id)).mappings()
                    file = JobFile(**dict(row.one()))
                    job_row = tx.execute(select(docs_jobs).where(j.id == file.job_id))
                    return Job(**_job_fields(job_row.mappings().one())), file
        return None

    def _held(self, file: JobFile, **values: Any) -> bool:
        """Change ``file`` only while its caller's claim on it stands."""
        f = docs_job_files.c
        with self.db.writing() as tx:
            return bool(
                tx.execute(
                    update(docs_job_files)
                    .where(f.id == file.id, f.claim == file.claim, f.status == "running")
                    .values(**values)
                ).rowcount
            )

    def heartbeat(self, file: JobFile) -> bool:
        """The taker of ``file`` is still at it; False when the file is no longer its own."""
        return self._held(file, started_at=_now())

    def finish(
        self,
        file: JobFile,
        status: str,
        *,
        kind: str | None = None,
        result: dict[str, Any] | None = None,
        error: str | None = None,
    ) -> bool:
        """Record a file's outcome and drop its bytes, if the caller still holds it."""
        return self._held(
            file, status=status, type=kind, result=result, error=error, data=None, claim=None,
            finished_at=_now(),
        )  # fmt: skip

    def requeue(self, file: JobFile, not_before: datetime | None = None) -> None:
        """Give a taken file back (no reader was free, a rate limit, a shutdown), to be
        taken again — not before ``not_before`` when given."""
        self._held(file, status="queued", started_at=None, claim=None, not_before=not_before)

    def prune(self, older_than_days: int) -> int:
        """Jobs created more than ``older_than_days`` ago with nothing left to do, and
        their files; returns how many jobs went."""
        f, j = docs_job_files.c, docs_jobs.c
        cutoff = _now() - timedelta(days=older_than_days)
        busy = select(f.job_id).where(f.status.in_(("queued", "running")))
        old = select(j.id).where(j.created_at < cutoff, j.id.not_in(busy))
        with self.db.writing() as tx:
            ids = list(tx.execute(old).scalars())
            if ids:
                tx.execute(docs_job_files.delete().where(f.job_id.in_(ids)))
                tx.execute(docs_jobs.delete().where(j.id.in_(ids)))
        return len(ids)

    def cancel(self, job: Job) -> int:
        """Stop ``job``: its waiting files are cancelled (and their bytes dropped), it takes
        no more; the file being extracted finishes. Returns how many were cancelled."""
        f = docs_job_files.c
        with self.db.writing() as tx:
            tx.execute(update(docs_jobs).where(docs_jobs.c.id == job.id).values(status="cancelled"))
            return int(
                tx.execute(
                    update(docs_job_files)
                    .where(f.job_id == job.id, f.status == "queued")
                    .values(status="cancelled", data=None, finished_at=_now())
                ).rowcount
            )
