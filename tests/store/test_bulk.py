"""BulkInsert: many rows per statement, duplicates skipped, values stored as SQLAlchemy would."""

from __future__ import annotations

from datetime import datetime, timedelta
from pathlib import Path

import pytest
from sqlalchemy import event, select
from sqlalchemy.exc import StatementError

from heshi.store.bulk import BulkInsert
from heshi.store.db import Database
from heshi.store.tables import usage_ledger
from tests.store.records import T0, ledger_ids, record


def test_rows_past_the_parameter_limit_are_split_and_duplicates_skipped(
    database: Database,
) -> None:
    bulk = BulkInsert(database, usage_ledger, "request_id")
    # 12 columns x 3,000 rows = 36,000 parameters: more than SQLite allows in one statement.
    rows = [record(n, ts=T0 + timedelta(seconds=n)).values() for n in range(3000)]
    with database.begin() as conn:
        bulk.execute(conn, rows[:10])
    with database.begin() as conn:
        bulk.execute(conn, rows)  # the first ten again: skipped, not an error
    assert ledger_ids(database) == [f"req_{n:06d}" for n in range(3000)]
    with database.read() as conn:
        stored = conn.execute(
            select(usage_ledger.c.ts, usage_ledger.c.ttft_ms).where(
                usage_ledger.c.request_id == "req_002999"
            )
        ).one()
    assert stored.ts == T0 + timedelta(seconds=2999)  # aware UTC, read back by SQLAlchemy
    assert stored.ttft_ms is None


def test_sqlite_uses_one_statement_per_power_of_two_chunk_not_one_per_row(tmp_path: Path) -> None:
    database = Database(f"sqlite:///{tmp_path}/bulk.db")
    database.migrate()
    statements: list[int] = []

    def count(conn: object, cursor: object, sql: str, params: object, *_: object) -> None:
        if sql.startswith("INSERT"):
            statements.append(len(params) if isinstance(params, tuple) else -1)

    event.listen(database.engine, "before_cursor_execute", count)
    with database.begin() as conn:
        BulkInsert(database, usage_ledger, "request_id").execute(
            conn, [record(n).values() for n in range(500)]
        )
    # Power-of-two chunks (256 + 128 + 64 + 32 + 16 + 4), so at most 9 distinct
    # statements are ever prepared, whatever the batch sizes.
    assert statements == [n * 15 for n in (256, 128, 64, 32, 16, 4)]  # 15 columns
    database.dispose()


def test_a_value_the_types_refuse_is_a_statement_error(tmp_path: Path) -> None:
    database = Database(f"sqlite:///{tmp_path}/bulk.db")
    database.migrate()
    naive = record(1).values() | {"ts": datetime(2026, 1, 1)}
    with pytest.raises(StatementError, match="naive datetime"), database.begin() as conn:
        BulkInsert(database, usage_ledger, "request_id").execute(conn, [naive])
    database.dispose()
