"""Budgets in money: a key's lifetime spend limit, and what pruned ledger rows cost.

Revision ID: 0009
Revises: 0008
Create Date: 2026-12-05
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0009"
down_revision = "0008"
branch_labels = None
depends_on = None


def upgrade() -> None:
    """Add ``api_keys.budget_micro`` (NULL: no money budget) and
    ``usage_pruned_totals.cost_micro`` (0 for totals pruned before costs were kept)."""
    with op.batch_alter_table("api_keys") as batch:
        batch.add_column(sa.Column("budget_micro", sa.BigInteger(), nullable=True))
    with op.batch_alter_table("usage_pruned_totals") as batch:
        batch.add_column(
            sa.Column("cost_micro", sa.BigInteger(), nullable=False, server_default="0")
        )


def downgrade() -> None:
    """Drop both columns again."""
    with op.batch_alter_table("usage_pruned_totals") as batch:
        batch.drop_column("cost_micro")
    with op.batch_alter_table("api_keys") as batch:
        batch.drop_column("budget_micro")
