"""Audit records keep the GB 45438 label's ProduceID of the answer they record.

Records are now signed too (HMAC under the audit key) in the ``signature`` column that
only checkpoints used; no schema change is needed for that.

Revision ID: 0006
Revises: 0005
Create Date: 2026-12-04
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0006"
down_revision = "0005"
branch_labels = None
depends_on = None


def upgrade() -> None:
    """Add the column; existing records have none (and their hashes do not cover it)."""
    with op.batch_alter_table("audit_log") as batch:
        batch.add_column(sa.Column("produce_id", sa.String(64), nullable=True))


def downgrade() -> None:
    """Drop it again."""
    with op.batch_alter_table("audit_log") as batch:
        batch.drop_column("produce_id")
