"""The ``database`` fixture (a fresh, migrated SQLite file or PostgreSQL schema per test)
and ``outage``, which makes that database really unreachable for a while.

PostgreSQL is the local server CI starts (``HESHI_TEST_PG_URL`` overrides the admin URL).
If it is not reachable the PostgreSQL variants fail: a skipped backend would hide bugs.
"""

from __future__ import annotations

import os
import secrets
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import pytest
from sqlalchemy import URL, Engine, NullPool, create_engine, make_url, text
from sqlalchemy.exc import OperationalError

from heshi.store.db import Database

PG_ADMIN_URL = os.environ.get(
    "HESHI_TEST_PG_URL", "postgresql+psycopg://postgres@127.0.0.1:5432/test"
)


@pytest.fixture(scope="session")
def pg_admin() -> Iterator[Engine]:
    """An autocommit engine on the server's maintenance database (for CREATE DATABASE)."""
    engine = create_engine(PG_ADMIN_URL, isolation_level="AUTOCOMMIT")
    try:
        with engine.connect() as conn:
            conn.execute(text("SELECT 1"))
    except OperationalError as exc:
        engine.dispose()
        pytest.fail(f"PostgreSQL at {PG_ADMIN_URL} is not reachable: {exc.orig}")
    yield engine
    engine.dispose()


@pytest.fixture(scope="module")
def pg_module_url(pg_admin: Engine) -> Iterator[URL]:
    """A fresh PostgreSQL database for one test module, dropped afterwards."""
    name = f"heshi_t_{secrets.token_hex(6)}"
    with pg_admin.connect() as conn:
        conn.execute(text(f'CREATE DATABASE "{name}"'))
    try:
        yield make_url(PG_ADMIN_URL).set(database=name)
    finally:
        with pg_admin.connect() as conn:
            conn.execute(text(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)'))


@pytest.fixture(params=["sqlite", "postgresql"])
def database(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[Database]:
    """A migrated, empty database of each kind, private to one test.

    PostgreSQL: a schema of its own (first on the ``search_path``) inside the module's
    database; creating a schema is far cheaper than a database, and just as separate.
    """
    if request.param == "sqlite":
        db = Database(f"sqlite:///{tmp_path / 'db' / 'heshi.db'}")
        db.migrate()
        yield db
        db.dispose()
        return
    module_url: URL = request.getfixturevalue("pg_module_url")
    schema = f"t_{secrets.token_hex(6)}"
    admin = create_engine(module_url, isolation_level="AUTOCOMMIT", poolclass=NullPool)
    with admin.connect() as conn:
        conn.execute(text(f'CREATE SCHEMA "{schema}"'))
    db = Database(
        module_url.update_query_dict({"options": f"-csearch_path={schema}"}).render_as_string(
            hide_password=False
        )
    )
    try:
        db.migrate()
        yield db
    finally:
        db.dispose()
        with admin.connect() as conn:
            conn.execute(text(f'DROP SCHEMA IF EXISTS "{schema}" CASCADE'))
        admin.dispose()


@contextmanager
def outage(db: Database) -> Iterator[None]:
    """The database is unreachable inside the block, then comes back with its data.

    SQLite: its directory is replaced by a file (connections cannot open the database).
    PostgreSQL: the database stops accepting connections and its sessions are killed.
    Pooled connections are dropped so nothing keeps working by accident.
    """
    if db.dialect_name == "sqlite":
        assert db.url.database
        folder = Path(db.url.database).parent
        away = folder.with_name(folder.name + "-down")
        db.dispose()
        folder.rename(away)
        folder.write_bytes(b"")  # a file where the folder was: nothing can recreate it
        try:
            yield
        finally:
            folder.unlink()
            away.rename(folder)
        return
    name = db.url.database
    admin = create_engine(PG_ADMIN_URL, isolation_level="AUTOCOMMIT")
    try:
        with admin.connect() as conn:
            conn.execute(text(f'ALTER DATABASE "{name}" ALLOW_CONNECTIONS false'))
            conn.execute(
                text("SELECT pg_terminate_backend(pid) FROM pg_stat_activity WHERE datname = :n"),
                {"n": name},
            )
        db.dispose()
        try:
            yield
        finally:
            with admin.connect() as conn:
                conn.execute(text(f'ALTER DATABASE "{name}" ALLOW_CONNECTIONS true'))
    finally:
        admin.dispose()
