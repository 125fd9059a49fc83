"""What the guard did, read back from the audit log: recent blocks and counts by TC260
risk, and the guard settings in force for a tenant (read-only: they live in heshi.yaml)."""

from __future__ import annotations

from collections import Counter
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any

from sqlalchemy import select

from heshi.audit import AuditRecord
from heshi.config import HeshiConfig
from heshi.store.db import Database
from heshi.store.tables import audit_log

SCAN_ROWS = 10_000  # the newest guarded records read per query: a bound on the work done
ADMIN_POLICY = "admin/v1"


@dataclass
class GuardActivity:
    """Blocks among the newest guarded requests of a window."""

    scanned: int  # guarded records read (at most SCAN_ROWS)
    blocked: int
    by_risk: dict[str, int] = field(default_factory=dict)  # blocked requests per risk
    recent: list[AuditRecord] = field(default_factory=list)  # newest first


def guard_activity(
    db: Database, since: datetime, tenant: str | None = None, limit: int = 50
) -> GuardActivity:
    """Requests the guard blocked since ``since`` (one tenant's when given)."""
    c = audit_log.c
    query = (
        select(audit_log)
        .where(c.kind == "record", c.ts >= since, c.verdicts.is_not(None))
        .order_by(c.seq.desc())
        .limit(SCAN_ROWS)
    )
    if tenant is not None:
        query = query.where(c.tenant == tenant)
    with db.outage_as_unavailable(), db.read() as conn:
        rows = [AuditRecord.from_row(r) for r in conn.execute(query).mappings()]
    activity = GuardActivity(scanned=0, blocked=0)
    risks: Counter[str] = Counter()
    for record in rows:
        if record.policy_version == ADMIN_POLICY or not record.verdicts:
            continue
        activity.scanned += 1
        blocks = [v for v in record.verdicts if v.get("action") == "block"]
        if not blocks:
            continue
        activity.blocked += 1
        risks.update({v.get("risk") or "?" for v in blocks})
        if len(activity.recent) < limit:
            activity.recent.append(record)
    activity.by_risk = dict(risks.most_common())
    return activity


def guard_settings(config: HeshiConfig, tenant: str | None) -> dict[str, Any]:
    """The guard and AIGC-label settings in force for ``tenant`` (the top-level section
    with the tenant's overrides); secrets are never part of them (keys stay in the env)."""
    return {
        "tenant": tenant,
        "guard": config.guard_for(tenant).model_dump(mode="json"),
        "aigc": config.aigc.model_dump(mode="json"),
        "tenant_overrides": bool(
            tenant and tenant in config.tenants and config.tenants[tenant].guard
        ),
    }
