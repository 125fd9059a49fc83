"""Alembic environment: runs on the connection ``Database.migrate()`` passes in.

Heshi never runs Alembic from an ``alembic.ini``. To draft a new revision, build the same
``Config`` as ``Database.migrate()`` against a scratch database at head, set
``cfg.attributes["connection"]`` and call ``alembic.command.revision(cfg, message,
autogenerate=True)``; then review the generated operations by hand (keep them
self-contained, as in 0001) and update ``heshi.store.tables`` to match.
"""

from __future__ import annotations

from alembic import context
from sqlalchemy import Connection

from heshi.store.tables import metadata


def _run(connection: Connection) -> None:
    context.configure(
        connection=connection,
        target_metadata=metadata,
        render_as_batch=connection.dialect.name == "sqlite",  # SQLite cannot ALTER much
    )
    with context.begin_transaction():
        context.run_migrations()


_connection = context.config.attributes.get("connection")
if not isinstance(_connection, Connection):
    raise RuntimeError("Heshi migrations run through heshi.store.db.Database.migrate()")
_run(_connection)
