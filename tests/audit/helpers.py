"""Building entries and tampering with rows the way an attacker with SQL access would."""

from __future__ import annotations

from datetime import datetime
from typing import Any

from sqlalchemy import delete, insert, select, update

from heshi.audit import AuditEntry, AuditLog
from heshi.audit.records import new_record
from heshi.store.db import Database
from heshi.store.tables import audit_log

KEY = b"k" * 32
OTHER_KEY = b"x" * 32


def entry(n: int, *, ts: datetime | None = None, tenant: str = "acme") -> AuditEntry:
    return AuditEntry(
        tenant=tenant,
        request_id=f"req-{n}",
        key_id="key_0123456789ab",
        client_ip="10.0.0.7",
        input=f"我的手机是138****8000，第{n}问",
        output=f"回答 {n}",
        verdicts=[{"category": "pii", "risk": "A8", "level": "low", "action": "flag"}],
        lexicon_version="lex-2026.11",
        policy_version="policy-3",
        model_version="qwen3-8b-q4",
        ts=ts,
    )


def filled(db: Database, count: int, **kwargs: Any) -> AuditLog:
    log = AuditLog(db, key=KEY, **kwargs)
    for n in range(1, count + 1):
        log.append(entry(n))
    return log


def set_row(db: Database, seq: int, **values: Any) -> None:
    with db.begin() as conn:
        conn.execute(update(audit_log).where(audit_log.c.seq == seq).values(**values))


def delete_row(db: Database, seq: int) -> None:
    with db.begin() as conn:
        conn.execute(delete(audit_log).where(audit_log.c.seq == seq))


def insert_forged(db: Database, at: int) -> None:
    """Shift records ``at``… up by one and slip a correctly hashed forgery in at ``at``."""
    c = audit_log.c
    with db.begin() as conn:
        # Two steps: PostgreSQL checks the primary key row by row.
        conn.execute(update(audit_log).where(c.seq >= at).values(seq=c.seq + 1000))
        conn.execute(update(audit_log).where(c.seq >= at + 1000).values(seq=c.seq - 999))
        prev = conn.execute(select(c.hash).where(c.seq == at - 1)).scalar_one()
        forged = new_record(entry(999), seq=at, prev_hash=prev, now=datetime.now().astimezone())
        row = forged.as_json()
        row["ts"] = forged.ts
        conn.execute(insert(audit_log).values(**row))
