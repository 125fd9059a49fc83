"""Database setup: migrations, dialect settings, URLs, aware timestamps."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta, timezone
from pathlib import Path

import pytest
from alembic.autogenerate import compare_metadata
from alembic.migration import MigrationContext
from sqlalchemy import inspect, select, text

from heshi.errors import ConfigError
from heshi.store.db import Database, StoreUnavailable
from heshi.store.tables import api_keys, metadata
from tests.store.databases import outage


def test_migrate_creates_the_tables_and_is_idempotent(database: Database) -> None:
    tables = set(inspect(database.engine).get_table_names())
    assert {"api_keys", "usage_ledger", "usage_pruned_totals", "alembic_version"} <= tables
    assert {"admin_tokens", "admin_sessions"} <= tables
    indexes = {ix["name"] for ix in inspect(database.engine).get_indexes("usage_ledger")}
    assert {"ix_usage_ledger_tenant_ts", "ix_usage_ledger_key_id_ts"} <= indexes

    database.migrate()  # a second gateway start must find nothing to do
    with database.read() as conn:
        assert conn.execute(text("SELECT version_num FROM alembic_version")).scalar_one() == "0010"


def test_migrations_match_the_tables_module(database: Database) -> None:
    with database.engine.connect() as conn:
        diff = compare_metadata(MigrationContext.configure(conn), metadata)
    assert diff == []


def test_timestamps_come_back_aware_utc(database: Database) -> None:
    beijing = timezone(timedelta(hours=8))
    created = datetime(2026, 11, 1, 20, 30, tzinfo=beijing)
    with database.begin() as conn:
        conn.execute(
            api_keys.insert().values(
                id="key_x",
                tenant="t",
                name="n",
                prefix="hs-x",
                key_hash="h",
                status="active",
                created_at=created,
                updated_at=created,
            )
        )
    with database.read() as conn:
        stored = conn.execute(select(api_keys.c.created_at)).scalar_one()
    assert stored == created
    assert stored.tzinfo == UTC
    assert stored.hour == 12


def test_naive_timestamps_are_refused(database: Database) -> None:
    with pytest.raises(Exception, match="naive datetime"), database.begin() as conn:
        conn.execute(
            api_keys.insert().values(
                id="key_x",
                tenant="t",
                name="n",
                prefix="hs-x",
                key_hash="h",
                status="active",
                created_at=datetime(2026, 1, 1),
                updated_at=datetime(2026, 1, 1),
            )
        )


def test_sqlite_settings(tmp_path: Path) -> None:
    db = Database(f"sqlite:///{tmp_path / 'new' / 'dir' / 'heshi.db'}")  # parents created
    try:
        with db.read() as conn:
            pragma = {
                name: conn.exec_driver_sql(f"PRAGMA {name}").scalar()
                for name in ("journal_mode", "synchronous", "busy_timeout", "foreign_keys")
            }
    finally:
        db.dispose()
    assert pragma == {
        "journal_mode": "wal",
        "synchronous": 1,
        "busy_timeout": 5000,
        "foreign_keys": 1,
    }


def test_urls() -> None:
    assert Database("postgresql://u@127.0.0.1/x").url.drivername == "postgresql+psycopg"
    with pytest.raises(ConfigError, match="unsupported database 'mysql'"):
        Database("mysql://u@127.0.0.1/x")
    with pytest.raises(ConfigError, match="invalid database URL"):
        Database("not a url")


def test_migrate_when_the_database_is_down(database: Database) -> None:
    with outage(database), pytest.raises(StoreUnavailable) as caught:
        database.migrate()
    assert caught.value.status_code == 503
    assert "数据库不可用 / database unavailable" in caught.value.message
    database.migrate()  # and fine again once it is back
