"""Pruning the audit log behind a signed checkpoint, a chunk per transaction.

Only a prefix is removed: a record younger than the cutoff keeps everything after it.
Each chunk checks the rows it removes (refusing, with ``AuditChainBroken``, to sign over
tampering), deletes them and writes a signed checkpoint in place of the last one, in one
transaction; on PostgreSQL an advisory lock lets one pruner run at a time.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime

from sqlalchemy import Connection, delete, func, insert, select, text

from heshi.audit.chain import ChainChecker, Issue
from heshi.audit.records import (
    CHECKPOINT,
    RECORD,
    AuditChainBroken,
    AuditRecord,
    sign_checkpoint,
)
from heshi.store.db import Database
from heshi.store.tables import audit_log

PRUNE_CHUNK_ROWS = 5000  # rows removed per transaction; each leaves a verifiable log
_PG_PRUNE_LOCK = 0x61756474  # advisory-lock id ("audt"): one pruner at a time


@dataclass(frozen=True)
class PruneResult:
    """What ``prune`` did: records removed and the checkpoint now heading the log."""

    removed: int
    checkpoint_seq: int | None  # None when nothing was old enough
    cutoff: datetime


def prune_before(
    db: Database, key: bytes, cutoff: datetime, now: datetime, chunk_rows: int
) -> PruneResult:
    """Remove the records older than ``cutoff`` from the head, chunk by chunk."""
    removed, checkpoint = 0, None
    with db.outage_as_unavailable():
        while True:
            with db.begin() as conn:
                if db.dialect_name == "postgresql":
                    conn.execute(text("SELECT pg_advisory_xact_lock(:k)"), {"k": _PG_PRUNE_LOCK})
                step = _prune_chunk(conn, key, cutoff, now, chunk_rows)
            if step is None:
                return PruneResult(removed, checkpoint, cutoff)
            removed += step[0]
            checkpoint = step[1]


def _prune_chunk(
    conn: Connection, key: bytes, cutoff: datetime, now: datetime, chunk_rows: int
) -> tuple[int, int] | None:
    """Prune up to ``chunk_rows`` records; (records removed, checkpoint seq) or None."""
    c = audit_log.c
    first = conn.execute(select(c.seq, c.kind).order_by(c.seq).limit(1)).first()
    if first is None:
        return None
    young = conn.execute(
        select(func.min(c.seq)).where(c.kind == RECORD, c.ts >= cutoff)
    ).scalar_one_or_none()
    if young is None:
        boundary = conn.execute(select(func.max(c.seq)).where(c.kind == RECORD)).scalar()
        if boundary is None:
            return None
    else:
        boundary = young - 1
    start = int(first.seq) + (1 if first.kind == CHECKPOINT else 0)
    if boundary < start:
        return None
    end = min(int(boundary), start + chunk_rows - 1)
    rows = conn.execute(select(audit_log).where(c.seq <= end).order_by(c.seq)).mappings()
    checker = ChainChecker(key)
    last: AuditRecord | None = None
    for row in rows:
        last = AuditRecord.from_row(row)
        checker.feed(last)
    report = checker.report
    if last is None or last.seq != end or last.kind != RECORD:
        report.issues.insert(0, Issue(end, "gap", f"seq {end} missing / 缺失"))
        report.issue_count += 1
    if not report.intact:
        raise AuditChainBroken(
            f"审计日志已损坏，拒绝剪除 / the audit log is broken, refusing to prune: "
            f"{report.issues[0]} (run heshi audit verify)"
        )
    assert last is not None
    conn.execute(delete(audit_log).where(c.seq <= end))
    signature = sign_checkpoint(key, end, last.hash, now)
    conn.execute(
        insert(audit_log).values(
            seq=end, kind=CHECKPOINT, ts=now, hash=last.hash, signature=signature
        )
    )
    return report.records, end
