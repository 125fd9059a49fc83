"""One SQL database: engine setup per dialect, transactions, and migrations."""

from __future__ import annotations

import logging
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

from alembic import command
from alembic.config import Config
from sqlalchemy import Connection, Engine, Table, create_engine, event, make_url, text
from sqlalchemy.dialects import postgresql, sqlite
from sqlalchemy.engine import URL
from sqlalchemy.exc import ArgumentError, DBAPIError

from heshi.errors import ConfigError, HeshiError

log = logging.getLogger(__name__)

MIGRATIONS_DIR = Path(__file__).with_name("migrations")
_WRITE_OPTION = "heshi_write"  # execution option: this transaction will write
_PG_MIGRATION_LOCK = 0x68657368  # advisory-lock id ("hesh"): one migrator at a time


class StoreUnavailable(HeshiError):
    """The database cannot be reached or refused the operation (HTTP 503)."""

    status_code = 503
    error_type = "server_error"
    code = "store_unavailable"


class Database:
    """A SQLAlchemy engine plus the dialect-specific settings Heshi relies on.

    ``url`` is a SQLAlchemy URL: ``sqlite:///path/heshi.db`` (the parent directory is
    created) or ``postgresql+psycopg://user@host/db`` (``postgresql://`` is taken to mean
    psycopg 3, the driver Heshi ships with).
    """

    def __init__(
        self, url: str, *, busy_timeout_ms: int = 5000, statement_timeout_s: float | None = None
    ) -> None:
        self.url = _normalise(url)
        self.dialect_name = self.url.get_backend_name()
        # Applied per transaction (SET LOCAL), only where ``begin(bounded=True)`` asks:
        # the ledger's and audit log's writes. Migrations, start-up totals and reports
        # may run long; a connection option would bound them too (and PgBouncer refuses
        # connection options).
        self._statement_timeout_ms = (
            max(1, round(statement_timeout_s * 1000)) if statement_timeout_s else None
        )
        if self.dialect_name == "sqlite":
            self.engine = _sqlite_engine(self.url, busy_timeout_ms)
        elif self.dialect_name == "postgresql":
            connect_args: dict[str, Any] = {
                # Fail fast when the server is down: callers retry on their own schedule.
                "connect_timeout": 5,
                # A server that stops answering (paused, partitioned) is noticed by the
                # client's TCP keepalives, not only when the server itself gives up.
                "keepalives": 1,
                "keepalives_idle": 10,
                "keepalives_interval": 3,
                "keepalives_count": 3,
            }
            self.engine = create_engine(
                self.url,
                pool_pre_ping=True,  # a restarted server must not fail the next query
                connect_args=connect_args,
            )
        else:
            raise ConfigError(
                f"不支持的数据库 / unsupported database {self.dialect_name!r}: "
                "use sqlite:/// or postgresql+psycopg://"
            )

    def __repr__(self) -> str:
        return f"Database({self.url.render_as_string(hide_password=True)!r})"

    @contextmanager
    def begin(self, *, bounded: bool = False) -> Iterator[Connection]:
        """A write transaction: committed when the block ends, rolled back on error.

        On SQLite it starts with ``BEGIN IMMEDIATE`` so the write lock is taken up front and
        ``busy_timeout`` applies, instead of failing mid-transaction on a lock upgrade.
        ``bounded``: on PostgreSQL, each statement may run (and wait for locks) at most
        the configured statement timeout, so a hung database fails the write instead of
        holding the writer.
        """
        with self.engine.connect() as conn:
            conn.execution_options(**{_WRITE_OPTION: True})
            with conn.begin():
                ms = self._statement_timeout_ms
                if bounded and ms is not None and self.dialect_name == "postgresql":
                    conn.execute(text(f"SET LOCAL statement_timeout = {ms}"))
                    conn.execute(text(f"SET LOCAL lock_timeout = {ms}"))
                yield conn

    @contextmanager
    def writing(self, conn: Connection | None = None) -> Iterator[Connection]:
        """``conn`` when given (the caller's transaction: an admin change commits with its
        audit record), else a write transaction of its own, outages reported as
        ``StoreUnavailable``."""
        if conn is not None:
            yield conn
            return
        with self.outage_as_unavailable(), self.begin() as own:
            yield own

    @contextmanager
    def read(self) -> Iterator[Connection]:
        """A read-only transaction: one consistent snapshot that never blocks writers.

        On PostgreSQL it is REPEATABLE READ (READ COMMITTED, the default, takes a new
        snapshot per statement: a prune committing between two reads would show rows
        both in the ledger and in the pruned totals). Read-only, it never fails to
        serialize. SQLite's read transaction is one snapshot already.
        """
        with self.engine.connect() as conn:
            if self.dialect_name == "postgresql":
                conn.execution_options(isolation_level="REPEATABLE READ")
            with conn.begin():
                yield conn

    def migrate(self) -> None:
        """Bring the schema to the newest Alembic revision (idempotent).

        Raises ``StoreUnavailable`` when the database cannot be reached.
        """
        cfg = Config()
        # ConfigParser interpolates "%", which may appear in an install path.
        cfg.set_main_option("script_location", str(MIGRATIONS_DIR).replace("%", "%%"))
        cfg.set_main_option("path_separator", "os")
        try:
            with self.begin() as conn:
                if self.dialect_name == "postgresql":
                    # Gateway replicas may start together; the transaction-scoped lock makes
                    # the second one wait and then find the schema already current.
                    conn.execute(
                        text("SELECT pg_advisory_xact_lock(:k)"), {"k": _PG_MIGRATION_LOCK}
                    )
                cfg.attributes["connection"] = conn
                command.upgrade(cfg, "head")
        except DBAPIError as exc:
            raise unavailable(self, exc) from exc

    @contextmanager
    def outage_as_unavailable(self) -> Iterator[None]:
        """Inside the block, a failing database raises ``StoreUnavailable`` (HTTP 503)."""
        try:
            yield
        except DBAPIError as exc:
            raise unavailable(self, exc) from exc

    def upsertable_insert(self, table: Table) -> postgresql.Insert | sqlite.Insert:
        """``INSERT`` of this database's dialect, so ``on_conflict_do_*`` is available."""
        if self.dialect_name == "postgresql":
            return postgresql.insert(table)
        return sqlite.insert(table)

    def dispose(self) -> None:
        """Close every pooled connection; the object may be used again afterwards."""
        self.engine.dispose()


def unavailable(db: Database, exc: BaseException) -> StoreUnavailable:
    """The bilingual error for a failed database call (the driver text is kept for operators)."""
    return StoreUnavailable(f"数据库不可用 / database unavailable ({db!r}): {driver_message(exc)}")


def driver_message(exc: BaseException) -> str:
    """The first line of the driver's own error text (what an operator needs to see)."""
    detail = str(getattr(exc, "orig", None) or exc).strip().splitlines()
    return detail[0] if detail else type(exc).__name__


def _normalise(url: str) -> URL:
    try:
        parsed = make_url(url)
    except ArgumentError as exc:
        raise ConfigError(f"无效的数据库 URL / invalid database URL {url!r}") from exc
    if parsed.drivername == "postgresql":
        parsed = parsed.set(drivername="postgresql+psycopg")
    return parsed


def _sqlite_engine(url: URL, busy_timeout_ms: int) -> Engine:
    if url.database and url.database != ":memory:":
        folder = Path(url.database).expanduser().parent
        try:
            folder.mkdir(parents=True, exist_ok=True)
        except OSError as exc:
            raise StoreUnavailable(
                f"数据库不可用，无法创建目录 {folder} / "
                f"database unavailable: cannot create the folder {folder} ({exc.strerror})"
            ) from exc
    engine = create_engine(url)

    @event.listens_for(engine, "connect")
    def _on_connect(dbapi_conn: Any, _record: Any) -> None:
        # Let SQLAlchemy, not the sqlite3 module, decide when transactions begin: the
        # module's implicit BEGIN skips DDL and cannot do BEGIN IMMEDIATE.
        dbapi_conn.isolation_level = None
        cursor = dbapi_conn.cursor()
        try:
            # WAL: readers never block the writer; NORMAL is durable across app crashes
            # (only an OS crash may lose the last commits) and much faster than FULL.
            cursor.execute("PRAGMA journal_mode=WAL")
            cursor.execute("PRAGMA synchronous=NORMAL")
            cursor.execute(f"PRAGMA busy_timeout={int(busy_timeout_ms)}")
            cursor.execute("PRAGMA foreign_keys=ON")
        finally:
            cursor.close()

    @event.listens_for(engine, "begin")
    def _on_begin(conn: Connection) -> None:
        write = conn.get_execution_options().get(_WRITE_OPTION, False)
        conn.exec_driver_sql("BEGIN IMMEDIATE" if write else "BEGIN")

    return engine
