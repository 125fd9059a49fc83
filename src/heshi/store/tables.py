"""The SQL tables, as SQLAlchemy Core ``Table`` objects.

The first Alembic migration creates exactly these; a later schema change is a new
migration plus an edit here, never an edit of an applied migration.
"""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Any

from sqlalchemy import (
    JSON,
    BigInteger,
    Boolean,
    Column,
    DateTime,
    Dialect,
    Index,
    Integer,
    LargeBinary,
    MetaData,
    String,
    Table,
    Text,
    TypeDecorator,
)

# Stable constraint names make later Alembic migrations portable between dialects.
metadata = MetaData(
    naming_convention={
        "ix": "ix_%(table_name)s_%(column_0_N_name)s",
        "uq": "uq_%(table_name)s_%(column_0_N_name)s",
        "ck": "ck_%(table_name)s_%(constraint_name)s",
        "pk": "pk_%(table_name)s",
    }
)


class UtcDateTime(TypeDecorator[datetime]):
    """A timezone-aware UTC datetime on every dialect.

    PostgreSQL stores ``timestamptz``; SQLite has no time zones, so values are stored as
    naive UTC text (which also sorts and compares correctly) and made aware on the way out.
    """

    impl = DateTime(timezone=True)
    cache_ok = True

    def process_bind_param(self, value: datetime | None, dialect: Dialect) -> datetime | None:
        """Aware datetime → UTC (naive UTC on SQLite); a naive input raises ``ValueError``."""
        if value is None:
            return None
        if value.tzinfo is None:
            # A naive time is ambiguous; refusing it here catches the bug at its source.
            raise ValueError(f"naive datetime {value!r}: use an aware UTC datetime")
        value = value.astimezone(UTC)
        return value.replace(tzinfo=None) if dialect.name == "sqlite" else value

    def process_result_value(self, value: Any, dialect: Dialect) -> datetime | None:
        """Stored value → aware UTC datetime."""
        if value is None:
            return None
        assert isinstance(value, datetime)
        if value.tzinfo is None:
            return value.replace(tzinfo=UTC)
        return value.astimezone(UTC)


api_keys = Table(
    "api_keys",
    metadata,
    Column("id", String(32), primary_key=True),  # "key_" + 12 hex
    Column("tenant", String(64), nullable=False, index=True),
    Column("name", String(64), nullable=False),
    Column("prefix", String(16), nullable=False, index=True),  # shown in listings
    Column("key_hash", String(64), nullable=False, unique=True),  # sha256 hex of the key
    Column("models", JSON, nullable=True),  # list of model names; NULL = every model
    Column("rpm", BigInteger().with_variant(Integer, "sqlite"), nullable=True),
    Column("tpm", BigInteger().with_variant(Integer, "sqlite"), nullable=True),
    Column("budget_tokens", BigInteger, nullable=True),
    # lifetime spend limit in micro-yuan (CNY × 10⁻⁶); NULL = none (migration 0009)
    Column("budget_micro", BigInteger, nullable=True),
    Column("expires_at", UtcDateTime, nullable=True),
    Column("status", String(16), nullable=False),  # active | suspended | revoked
    Column("status_reason", Text, nullable=True),
    Column("created_at", UtcDateTime, nullable=False),
    Column("updated_at", UtcDateTime, nullable=False),
)

usage_ledger = Table(
    "usage_ledger",
    metadata,
    # BigInteger on PostgreSQL (a busy gateway passes 2**31 rows); SQLite needs INTEGER
    # for its rowid alias to autoincrement.
    Column(
        "id",
        BigInteger().with_variant(Integer, "sqlite"),
        primary_key=True,
        autoincrement=True,
    ),
    Column("request_id", String(128), nullable=False, unique=True),  # makes retries idempotent
    Column("ts", UtcDateTime, nullable=False),
    Column("tenant", String(64), nullable=False),
    Column("key_id", String(32), nullable=True),  # no FK: usage outlives deleted keys
    Column("model", String(128), nullable=False),
    Column("backend", String(128), nullable=False),
    Column("prompt_tokens", Integer, nullable=False),
    Column("completion_tokens", Integer, nullable=False),
    Column("latency_ms", Integer, nullable=False),
    Column("ttft_ms", Integer, nullable=True),
    Column("status", Integer, nullable=False),  # HTTP status; 499 = client went away
    Column("route", Text, nullable=False),
    # chat | completions | embeddings | guard (a guard-model call made for a request)
    Column("endpoint", String(16), nullable=False, server_default="chat"),
    # why it ended so: "ok", "quota.key.rpm", "client_gone", … (migration 0004)
    Column("reason", String(48), nullable=False, server_default=""),
    # what it cost at the prices of the moment, micro-yuan; NULL: no price (migration 0008)
    Column("cost_micro", BigInteger, nullable=True),
    Index("ix_usage_ledger_tenant_ts", "tenant", "ts"),
    Index("ix_usage_ledger_key_id_ts", "key_id", "ts"),
)

# Token totals of ledger rows removed by retention pruning, per (tenant, key). Lifetime
# budgets are restored as ledger sum + these, so pruning old rows never refills a budget.
usage_pruned_totals = Table(
    "usage_pruned_totals",
    metadata,
    Column("tenant", String(64), primary_key=True),
    Column("key_id", String(32), primary_key=True),  # "" for rows that had no key
    Column("requests", BigInteger, nullable=False),
    Column("prompt_tokens", BigInteger, nullable=False),
    Column("completion_tokens", BigInteger, nullable=False),
    # what those rows cost, micro-yuan, so pruning never refills a money budget (0009)
    Column("cost_micro", BigInteger, nullable=False, server_default="0"),
)

# The tamper-evident audit log (heshi.audit): one row per audited request, hash-chained
# by seq. A "checkpoint" row replaces the last record removed by retention pruning; it
# keeps that record's seq and hash and carries an HMAC signature instead of content.
audit_log = Table(
    "audit_log",
    metadata,
    # Assigned by the writer (tail + 1); the primary key stops two writers appending the
    # same position, and the loser retries.
    Column("seq", BigInteger, primary_key=True, autoincrement=False),
    Column("kind", String(16), nullable=False),  # record | checkpoint
    Column("ts", UtcDateTime, nullable=False, index=True),
    Column("tenant", String(64), nullable=True),  # NULL only on checkpoints
    Column("key_id", String(32), nullable=True),
    Column("request_id", String(128), nullable=True),
    Column("client_ip", String(45), nullable=True),  # longest IPv6 text form
    Column("input", Text, nullable=True),  # masked by the caller
    Column("output", Text, nullable=True),  # masked by the caller
    Column("verdicts", JSON, nullable=True),  # [{category, risk, level, action}]
    Column("lexicon_version", String(128), nullable=True),
    Column("policy_version", String(128), nullable=True),
    Column("model_version", String(128), nullable=True),
    Column("produce_id", String(64), nullable=True),  # the answer's AIGC label ProduceID
    Column("prev_hash", String(64), nullable=True),  # NULL only on checkpoints
    Column("hash", String(64), nullable=False),
    Column("signature", String(64), nullable=True),  # HMAC-SHA256 hex under the audit key
    Index("ix_audit_log_tenant_ts", "tenant", "ts"),
)


# Knowledge bases (heshi.apps.kb). ``revision`` grows with every change to a base's
# documents, so each replica knows when its in-memory index is stale.
kb_bases = Table(
    "kb_bases",
    metadata,
    Column("name", String(64), primary_key=True),
    Column("tenant", String(64), nullable=True),  # NULL: every tenant may use it
    Column("settings", JSON, nullable=False),  # user dictionary, retrieval settings
    Column("revision", BigInteger().with_variant(Integer, "sqlite"), nullable=False),
    Column("created_at", UtcDateTime, nullable=False),
    Column("updated_at", UtcDateTime, nullable=False),
)

kb_documents = Table(
    "kb_documents",
    metadata,
    Column("id", String(32), primary_key=True),
    Column("kb", String(64), nullable=False),
    Column("source", Text, nullable=False),  # the path it was ingested from (identity)
    Column("name", Text, nullable=False),  # the file name citations show
    Column("sha256", String(64), nullable=False),
    Column("size", BigInteger, nullable=False),
    Column("pages", Integer, nullable=False),
    Column("chunks", Integer, nullable=False),
    Column("ingested_at", UtcDateTime, nullable=False),
    Index("ix_kb_documents_kb_source", "kb", "source", unique=True),
)

kb_chunks = Table(
    "kb_chunks",
    metadata,
    Column("id", String(40), primary_key=True),
    Column("kb", String(64), nullable=False, index=True),
    Column("doc_id", String(32), nullable=False, index=True),
    Column("seq", Integer, nullable=False),
    Column("headings", JSON, nullable=False),
    Column("kind", String(8), nullable=False),  # text | faq | table
    Column("page", Integer, nullable=True),
    Column("text", Text, nullable=False),
    Column("vector", LargeBinary, nullable=True),  # float32 little-endian, unit length
)

# A conversation with a knowledge base (multi-turn by session id, shared by replicas).
kb_sessions = Table(
    "kb_sessions",
    metadata,
    Column("id", String(64), primary_key=True),
    Column("kb", String(64), nullable=False),
    Column("tenant", String(64), nullable=True),
    Column("messages", JSON, nullable=False),  # [{role, content}], the last turns
    Column("failures", Integer, nullable=False),  # answers in a row without grounding
    Column("handed_off", Boolean, nullable=False),
    Column("created_at", UtcDateTime, nullable=False),
    Column("updated_at", UtcDateTime, nullable=False, index=True),
)

kb_handoffs = Table(
    "kb_handoffs",
    metadata,
    Column("id", String(32), primary_key=True),
    Column("kb", String(64), nullable=False),
    Column("tenant", String(64), nullable=True),
    Column("session_id", String(64), nullable=False, index=True),
    Column("reason", String(32), nullable=False),  # asked | angry | failed
    Column("conversation", JSON, nullable=False),
    Column("status", String(16), nullable=False),  # open | taken | closed
    Column("webhook", String(16), nullable=True),  # sent | failed | NULL (no webhook)
    Column("created_at", UtcDateTime, nullable=False, index=True),
)

# Admin credentials (heshi.admin): a token per person or system, with a role — "admin"
# changes things, "auditor" only reads. Only sha256 hashes of the tokens are kept.
admin_tokens = Table(
    "admin_tokens",
    metadata,
    Column("id", String(32), primary_key=True),  # "adm_" + 12 hex
    Column("name", String(64), nullable=False),
    Column("role", String(16), nullable=False),  # admin | auditor
    Column("prefix", String(16), nullable=False),
    Column("token_hash", String(64), nullable=False, unique=True),
    Column("created_at", UtcDateTime, nullable=False),
    Column("revoked_at", UtcDateTime, nullable=True),
    Column("last_used_at", UtcDateTime, nullable=True),
)

# Console sign-ins: the cookie holds a random session id, the table its hash, so any
# replica on the database knows the session and signing out ends it everywhere.
admin_sessions = Table(
    "admin_sessions",
    metadata,
    Column("id_hash", String(64), primary_key=True),
    Column("token_id", String(32), nullable=False, index=True),
    Column("csrf", String(64), nullable=False),  # sent back in a header on every change
    Column("created_at", UtcDateTime, nullable=False),
    Column("expires_at", UtcDateTime, nullable=False, index=True),
)

# Document jobs (heshi.gateway.docjobs): files extracted one after another on the gateway,
# each by the job's API key; a file's bytes wait in its row and are dropped once it is done.
docs_jobs = Table(
    "docs_jobs",
    metadata,
    Column("id", String(32), primary_key=True),  # "job_" + 24 hex
    Column("tenant", String(64), nullable=False, index=True),  # "-" without keys
    Column("key_id", String(32), nullable=True),  # the key its model calls are charged to
    Column("name", String(200), nullable=False),
    Column("schema", String(64), nullable=False),  # a built-in schema or "auto"
    Column("model", String(128), nullable=False),
    Column("status", String(16), nullable=False),  # open | cancelled
    Column("created_at", UtcDateTime, nullable=False, index=True),
    Column("next_seq", Integer, nullable=False, server_default="0"),  # files numbered 1, 2, …
)

docs_job_files = Table(
    "docs_job_files",
    metadata,
    Column("id", String(40), primary_key=True),  # the job's id + "-" + seq
    Column("job_id", String(32), nullable=False, index=True),
    Column("seq", Integer, nullable=False),
    Column("key_id", String(32), nullable=True),  # who uploaded it: its calls are charged there
    Column("file_name", String(200), nullable=False),
    Column("size", BigInteger, nullable=False),
    Column("sha256", String(64), nullable=False),
    Column("data", LargeBinary, nullable=True),  # until it is extracted
    # queued | running | done | failed | cancelled
    Column("status", String(16), nullable=False, index=True),
    Column("type", String(32), nullable=True),  # the document's kind, once known
    Column("result", JSON, nullable=True),  # fields, problems, pages, truncated, usage
    Column("error", Text, nullable=True),
    Column("queued_at", UtcDateTime, nullable=False),
    Column("not_before", UtcDateTime, nullable=True),  # a rate limit said: not before then
    Column("attempts", Integer, nullable=False, server_default="0"),  # takes, for request ids
    Column("claim", String(32), nullable=True),  # the taker's token; refreshed while it works
    Column("started_at", UtcDateTime, nullable=True),  # taken, or last heard of the taker
    Column("finished_at", UtcDateTime, nullable=True),
)
