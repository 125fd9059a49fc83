"""Usage reports, tenant isolation, spent tokens and pruning, on real ledger rows."""

from __future__ import annotations

from collections.abc import Iterable
from datetime import timedelta
from pathlib import Path

import pytest
from sqlalchemy import event

from heshi.store.db import Database
from heshi.store.ledger import LedgerWriter, UsageRecord
from heshi.store.usage import GroupBy, SpentTokens, UsageRow, prune, spent_tokens, usage_report
from tests.store.records import T0, ledger_count, record

DAY = timedelta(days=1)


def write(db: Database, records: Iterable[UsageRecord], spool_dir: Path) -> None:
    """Put rows in the ledger the way the gateway does: through a LedgerWriter."""
    writer = LedgerWriter(
        db, flush_seconds=0.01, batch_rows=100, buffer_rows=10_000, spool_dir=spool_dir
    )
    for r in records:
        writer.submit(r)
    writer.start()
    try:
        assert writer.flush(10)
    finally:
        writer.close()


@pytest.fixture
def ledger(database: Database, tmp_path: Path) -> Database:
    """acme: 3 rows on day 0 (2 models, 2 keys, one 500), 1 on day 1; beta: 2 rows."""
    write(
        database,
        [
            record(1, model="qwen-7b", key_id="key_a", latency_ms=100, ttft_ms=20),
            record(2, model="qwen-7b", key_id="key_b", latency_ms=300, prompt_tokens=30),
            record(3, model="qwen-72b", key_id="key_a", status=500, completion_tokens=0),
            record(4, model="qwen-7b", key_id=None, ts=T0 + DAY, status=499),
            record(5, tenant="beta", model="secret-model", key_id="key_z", prompt_tokens=1000),
            record(6, tenant="beta", model="qwen-7b", key_id="key_z", prompt_tokens=2000),
        ],
        tmp_path / "spool",
    )
    return database


def test_report_by_model(ledger: Database) -> None:
    rows = usage_report(ledger, tenant="acme", since=T0 - DAY, by="model")
    assert rows == [
        UsageRow("qwen-72b", 1, 10, 0, 10, 1, 100.0, None),
        UsageRow("qwen-7b", 3, 50, 15, 65, 1, pytest.approx(500 / 3), 20.0),  # type: ignore[arg-type]
    ]


def test_report_by_key(ledger: Database) -> None:
    rows = usage_report(ledger, tenant="acme", since=T0 - DAY, by="key")
    by_key = {r.group: (r.requests, r.total_tokens, r.errors) for r in rows}
    assert by_key == {"key_a": (2, 25, 1), "key_b": (1, 35, 0), None: (1, 15, 1)}


def test_report_by_utc_day_with_since_and_until(ledger: Database) -> None:
    rows = usage_report(ledger, tenant="acme", since=T0 - DAY, by="day")
    assert [(r.group, r.requests) for r in rows] == [("2026-11-01", 3), ("2026-11-02", 1)]
    only_first = usage_report(ledger, tenant="acme", since=T0, until=T0 + DAY, by="day")
    assert [(r.group, r.requests) for r in only_first] == [("2026-11-01", 3)]
    assert usage_report(ledger, tenant="acme", since=T0 + 2 * DAY, by="day") == []


def test_a_tenant_never_sees_another_tenants_rows(ledger: Database) -> None:
    statements: list[str] = []
    event.listen(ledger.engine, "before_cursor_execute", lambda *a: statements.append(a[2]))
    groupings: list[GroupBy] = ["model", "key", "day"]
    for by in groupings:
        acme = usage_report(ledger, tenant="acme", since=T0 - DAY, by=by)
        assert sum(r.requests for r in acme) == 4
        assert all(r.group not in {"secret-model", "key_z"} for r in acme)
        assert sum(r.prompt_tokens for r in acme) < 1000
    beta = usage_report(ledger, tenant="beta", since=T0 - DAY, by="model")
    assert [r.group for r in beta] == ["qwen-7b", "secret-model"]
    assert usage_report(ledger, tenant="nobody", since=T0 - DAY, by="model") == []
    selects = [s for s in statements if s.lstrip().upper().startswith("SELECT")]
    assert len(selects) == 5
    # filtered in SQL
    assert all("usage_ledger.tenant = " in s.partition("WHERE")[2] for s in selects)


def test_spent_tokens_per_key_and_tenant(ledger: Database) -> None:
    spent = spent_tokens(ledger)
    assert spent == SpentTokens(
        by_key={"key_a": 25, "key_b": 35, "key_z": 3010},
        by_tenant={"acme": 75, "beta": 3010},
    )
    assert spent.as_scopes()[("tenant", "beta")] == 3010
    assert spent.as_scopes()[("key", "key_a")] == 25


def test_prune_deletes_old_rows_in_chunks_and_keeps_budgets(
    database: Database, tmp_path: Path
) -> None:
    old = [record(n, ts=T0 - 100 * DAY, key_id=f"key_{n % 3}") for n in range(10)]
    new = [record(n, ts=T0) for n in range(10, 14)]
    write(database, [*old, *new], tmp_path / "spool")
    before = spent_tokens(database)
    commits = [0]
    event.listen(database.engine, "commit", lambda _c: commits.__setitem__(0, commits[0] + 1))

    assert prune(database, 90, now=T0, chunk_rows=4) == 10
    assert commits[0] == 3  # 4 + 4 + 2 rows
    assert ledger_count(database) == 4
    assert spent_tokens(database) == before  # pruning never refills a lifetime budget
    assert prune(database, 90, now=T0) == 0

    write(database, [record(99, ts=T0 - 100 * DAY, key_id="key_0")], tmp_path / "spool2")
    assert prune(database, 90, now=T0) == 1
    assert spent_tokens(database).by_key["key_0"] == before.by_key["key_0"] + 15
    with pytest.raises(ValueError, match="older_than_days"):
        prune(database, 0)
