"""Create the knowledge-base tables: bases, documents, chunks, sessions and handoffs.

Self-contained on purpose: it must keep producing this schema even after
``heshi.store.tables`` moves on.

Revision ID: 0005
Revises: 0004
Create Date: 2026-12-04
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0005"
down_revision = "0004"
branch_labels = None
depends_on = None

_COUNTER = sa.BigInteger().with_variant(sa.Integer(), "sqlite")


def upgrade() -> None:
    """Create the five tables and their indexes."""
    op.create_table(
        "kb_bases",
        sa.Column("name", sa.String(64), nullable=False),
        sa.Column("tenant", sa.String(64), nullable=True),
        sa.Column("settings", sa.JSON(), nullable=False),
        sa.Column("revision", _COUNTER, nullable=False),
        sa.Column("created_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("updated_at", sa.DateTime(timezone=True), nullable=False),
        sa.PrimaryKeyConstraint("name", name="pk_kb_bases"),
    )
    op.create_table(
        "kb_documents",
        sa.Column("id", sa.String(32), nullable=False),
        sa.Column("kb", sa.String(64), nullable=False),
        sa.Column("source", sa.Text(), nullable=False),
        sa.Column("name", sa.Text(), nullable=False),
        sa.Column("sha256", sa.String(64), nullable=False),
        sa.Column("size", sa.BigInteger(), nullable=False),
        sa.Column("pages", sa.Integer(), nullable=False),
        sa.Column("chunks", sa.Integer(), nullable=False),
        sa.Column("ingested_at", sa.DateTime(timezone=True), nullable=False),
        sa.PrimaryKeyConstraint("id", name="pk_kb_documents"),
    )
    op.create_index("ix_kb_documents_kb_source", "kb_documents", ["kb", "source"], unique=True)
    op.create_table(
        "kb_chunks",
        sa.Column("id", sa.String(40), nullable=False),
        sa.Column("kb", sa.String(64), nullable=False),
        sa.Column("doc_id", sa.String(32), nullable=False),
        sa.Column("seq", sa.Integer(), nullable=False),
        sa.Column("headings", sa.JSON(), nullable=False),
        sa.Column("kind", sa.String(8), nullable=False),
        sa.Column("page", sa.Integer(), nullable=True),
        sa.Column("text", sa.Text(), nullable=False),
        sa.Column("vector", sa.LargeBinary(), nullable=True),
        sa.PrimaryKeyConstraint("id", name="pk_kb_chunks"),
    )
    op.create_index("ix_kb_chunks_kb", "kb_chunks", ["kb"])
    op.create_index("ix_kb_chunks_doc_id", "kb_chunks", ["doc_id"])
    op.create_table(
        "kb_sessions",
        sa.Column("id", sa.String(64), nullable=False),
        sa.Column("kb", sa.String(64), nullable=False),
        sa.Column("tenant", sa.String(64), nullable=True),
        sa.Column("messages", sa.JSON(), nullable=False),
        sa.Column("failures", sa.Integer(), nullable=False),
        sa.Column("handed_off", sa.Boolean(), nullable=False),
        sa.Column("created_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("updated_at", sa.DateTime(timezone=True), nullable=False),
        sa.PrimaryKeyConstraint("id", name="pk_kb_sessions"),
    )
    op.create_index("ix_kb_sessions_updated_at", "kb_sessions", ["updated_at"])
    op.create_table(
        "kb_handoffs",
        sa.Column("id", sa.String(32), nullable=False),
        sa.Column("kb", sa.String(64), nullable=False),
        sa.Column("tenant", sa.String(64), nullable=True),
        sa.Column("session_id", sa.String(64), nullable=False),
        sa.Column("reason", sa.String(32), nullable=False),
        sa.Column("conversation", sa.JSON(), nullable=False),
        sa.Column("status", sa.String(16), nullable=False),
        sa.Column("webhook", sa.String(16), nullable=True),
        sa.Column("created_at", sa.DateTime(timezone=True), nullable=False),
        sa.PrimaryKeyConstraint("id", name="pk_kb_handoffs"),
    )
    op.create_index("ix_kb_handoffs_session_id", "kb_handoffs", ["session_id"])
    op.create_index("ix_kb_handoffs_created_at", "kb_handoffs", ["created_at"])


def downgrade() -> None:
    """Drop them again."""
    for table in ("kb_handoffs", "kb_sessions", "kb_chunks", "kb_documents", "kb_bases"):
        op.drop_table(table)
