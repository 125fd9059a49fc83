"""Ledger rows carry what the request cost (micro-yuan at the prices of the moment).

Revision ID: 0008
Revises: 0007
Create Date: 2026-12-05
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0008"
down_revision = "0007"
branch_labels = None
depends_on = None


def upgrade() -> None:
    """Add the column; rows written before it have no cost (NULL)."""
    with op.batch_alter_table("usage_ledger") as batch:
        batch.add_column(sa.Column("cost_micro", sa.BigInteger(), nullable=True))


def downgrade() -> None:
    """Drop it again."""
    with op.batch_alter_table("usage_ledger") as batch:
        batch.drop_column("cost_micro")
