"""Building usage rows for tests."""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Any

from sqlalchemy import func, select

from heshi.store.db import Database
from heshi.store.ledger import UsageRecord
from heshi.store.tables import usage_ledger

T0 = datetime(2026, 11, 1, 12, 0, tzinfo=UTC)


def record(n: int, **changes: Any) -> UsageRecord:
    """Row number ``n``: tenant acme, key key_a, model qwen, 10 + 5 tokens, 200 OK."""
    values: dict[str, Any] = {
        "request_id": f"req_{n:06d}",
        "ts": T0,
        "tenant": "acme",
        "key_id": "key_a",
        "model": "qwen",
        "backend": "local",
        "prompt_tokens": 10,
        "completion_tokens": 5,
        "latency_ms": 100,
        "ttft_ms": None,
        "status": 200,
        "route": "alias",
    }
    values.update(changes)
    return UsageRecord(**values)


def ledger_ids(db: Database) -> list[str]:
    """Every request_id in the ledger, sorted (duplicates would show twice)."""
    with db.read() as conn:
        return sorted(conn.execute(select(usage_ledger.c.request_id)).scalars())


def ledger_count(db: Database) -> int:
    """Rows in the ledger."""
    with db.read() as conn:
        return int(conn.execute(select(func.count()).select_from(usage_ledger)).scalar_one())
