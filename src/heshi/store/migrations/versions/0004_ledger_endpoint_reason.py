"""Ledger rows say which endpoint a request used and why it ended as it did.

Refused requests (403, 429, 400 after authentication) get a row too now, and guard-model
calls made on a request's behalf are rows of their own: ``endpoint`` tells them apart
(chat, completions, embeddings, guard) and ``reason`` says why a request ended as it did
("ok", "quota.key.rpm", "client_gone", "upstream_error", …). Existing rows get "chat" and
"ok" ("" for errors, whose reason was not recorded).

Revision ID: 0004
Revises: 0003
Create Date: 2026-12-03
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0004"
down_revision = "0003"
branch_labels = None
depends_on = None


def upgrade() -> None:
    """Add the two columns with defaults that describe the rows already there."""
    with op.batch_alter_table("usage_ledger") as batch:
        batch.add_column(
            sa.Column("endpoint", sa.String(16), nullable=False, server_default="chat")
        )
        batch.add_column(sa.Column("reason", sa.String(48), nullable=False, server_default=""))
    op.execute("UPDATE usage_ledger SET reason = 'ok' WHERE status < 400")


def downgrade() -> None:
    """Drop them again."""
    with op.batch_alter_table("usage_ledger") as batch:
        batch.drop_column("reason")
        batch.drop_column("endpoint")
