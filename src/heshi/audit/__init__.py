"""Tamper-evident audit log: append-only, hash-chained, pruned behind signed checkpoints.

Reading it is an administrator's job: the local ``heshi audit`` command, and the admin
API's ``/admin/v1/audit/…`` routes for holders of an admin or auditor token
(docs/admin-api.md).
"""

from heshi.audit.chain import Issue, VerifyReport
from heshi.audit.export import ExportFormat
from heshi.audit.log import DEFAULT_RETENTION_DAYS, AuditLog
from heshi.audit.prune import PruneResult
from heshi.audit.records import (
    GENESIS_HASH,
    AuditChainBroken,
    AuditEntry,
    AuditKeyMissing,
    AuditRecord,
    AuditVerdict,
    canonical_json,
    record_hash,
)

__all__ = [
    "DEFAULT_RETENTION_DAYS",
    "GENESIS_HASH",
    "AuditChainBroken",
    "AuditEntry",
    "AuditKeyMissing",
    "AuditLog",
    "AuditRecord",
    "AuditVerdict",
    "ExportFormat",
    "Issue",
    "PruneResult",
    "VerifyReport",
    "canonical_json",
    "record_hash",
]
