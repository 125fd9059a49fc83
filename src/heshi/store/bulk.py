"""Insert many rows at once, skipping rows whose unique key is already there.

On PostgreSQL this is SQLAlchemy's ``executemany`` of ``INSERT … ON CONFLICT DO
NOTHING`` (psycopg pipelines it). On SQLite the same ``executemany`` is pathological
when another thread keeps the GIL busy, as the gateway's event loop does under load: the
sqlite3 module releases the GIL around every row's ``sqlite3_step`` and then waits up to
``sys.getswitchinterval()`` (5 ms) to get it back. Measured on the development VM with
one busy Python thread beside the writer: 250 rows/s, against ~2,300 requests/s the
gateway serves there, so the ledger queue grew without end. One multi-row ``VALUES``
statement per chunk costs one GIL hand-off per chunk instead of per row.

Chunks have power-of-two sizes (a 500-row batch is 256 + 128 + 64 + 32 + 16 + 4): the
sqlite3 module keeps up to 128 prepared statements per connection, and a statement with
a few hundred rows of parameters is large, so one cached statement per distinct batch
size grew the process by tens of MB (measured: ~27 MB after 150k ledger rows). With
power-of-two sizes at most ``log2(_MAX_CHUNK) + 1`` statements exist per connection.
"""

from __future__ import annotations

import sqlite3
from collections.abc import Callable, Mapping, Sequence
from functools import lru_cache
from typing import Any

from sqlalchemy import Connection, Table
from sqlalchemy.exc import StatementError

from heshi.store.db import Database

# SQLite's limit on ``?`` parameters per statement before 3.32 (32,766 since); the
# connection's own limit is read when the driver can report it.
_SQLITE_LEGACY_MAX_VARIABLES = 999
_MAX_CHUNK = 256  # rows per statement; larger gains little and costs statement memory


class BulkInsert:
    """``INSERT`` of many rows into ``table``, ignoring rows that clash on ``unique``."""

    def __init__(self, db: Database, table: Table, unique: str) -> None:
        self._db = db
        self._table = table
        self._unique = unique
        self._columns = [c for c in table.columns if c.name in _insertable(table)]
        self._statement = db.upsertable_insert(table).on_conflict_do_nothing(
            index_elements=[unique]
        )
        dialect = db.engine.dialect
        self._processors: list[Callable[[Any], Any] | None] = [
            c.type.dialect_impl(dialect).bind_processor(dialect) for c in self._columns
        ]

    def execute(self, conn: Connection, rows: Sequence[Mapping[str, Any]]) -> None:
        """Insert ``rows`` (dicts keyed by column name) inside the caller's transaction."""
        if not rows:
            return
        if self._db.dialect_name != "sqlite":
            conn.execute(self._statement, list(rows))
            return
        largest = _chunk_size(_sqlite_max_variables(conn) // len(self._columns))
        start = 0
        while start < len(rows):
            chunk = rows[start : start + _chunk_size(min(largest, len(rows) - start))]
            start += len(chunk)
            params: list[Any] = []
            sql = self._sqlite_sql(len(chunk))
            for row in chunk:
                for column, process in zip(self._columns, self._processors, strict=True):
                    value = row[column.name]
                    try:
                        params.append(process(value) if process is not None else value)
                    except (TypeError, ValueError) as exc:
                        # What SQLAlchemy raises for a value it cannot bind: the caller
                        # sets the row aside instead of retrying it forever.
                        raise StatementError(str(exc), sql, None, exc) from exc
            conn.exec_driver_sql(sql, tuple(params))

    def _sqlite_sql(self, count: int) -> str:
        return _values_sql(
            self._table.name, tuple(c.name for c in self._columns), self._unique, count
        )


def _insertable(table: Table) -> set[str]:
    """Columns a row supplies: all but an autoincrementing integer primary key."""
    auto = table.autoincrement_column
    return {c.name for c in table.columns if c is not auto}


def _chunk_size(limit: int) -> int:
    """The largest power of two ≤ ``limit`` and ≤ ``_MAX_CHUNK`` (at least 1)."""
    return 1 << (max(1, min(limit, _MAX_CHUNK)).bit_length() - 1)


@lru_cache(maxsize=64)
def _values_sql(table: str, columns: tuple[str, ...], unique: str, count: int) -> str:
    group = "(" + ", ".join("?" * len(columns)) + ")"
    names = ", ".join(f'"{c}"' for c in columns)
    values = ", ".join([group] * count)
    return f'INSERT INTO "{table}" ({names}) VALUES {values} ON CONFLICT ("{unique}") DO NOTHING'


def _sqlite_max_variables(conn: Connection) -> int:
    raw = conn.connection.driver_connection
    getlimit = getattr(raw, "getlimit", None)
    if getlimit is None:
        return _SQLITE_LEGACY_MAX_VARIABLES
    return int(getlimit(sqlite3.SQLITE_LIMIT_VARIABLE_NUMBER))
