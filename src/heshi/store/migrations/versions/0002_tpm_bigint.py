"""Widen api_keys.rpm and api_keys.tpm to 64-bit integers.

A tenant-sized tokens-per-minute limit passes 2**31 on a large deployment, and
PostgreSQL refused such a key with "integer out of range". SQLite's INTEGER is already
64-bit, so only PostgreSQL changes.

Revision ID: 0002
Revises: 0001
Create Date: 2026-11-29
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0002"
down_revision = "0001"
branch_labels = None
depends_on = None


def upgrade() -> None:
    """ALTER the two columns on PostgreSQL."""
    if op.get_bind().dialect.name == "postgresql":
        for column in ("rpm", "tpm"):
            op.alter_column("api_keys", column, type_=sa.BigInteger(), existing_type=sa.Integer())


def downgrade() -> None:
    """Narrow them again (fails if a stored limit no longer fits)."""
    if op.get_bind().dialect.name == "postgresql":
        for column in ("rpm", "tpm"):
            op.alter_column("api_keys", column, type_=sa.Integer(), existing_type=sa.BigInteger())
