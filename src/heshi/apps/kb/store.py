"""Knowledge bases in the SQL store: bases, their documents and chunks (with vectors).

Everything a replica needs to answer lives in the database (SQLite by default,
PostgreSQL for several replicas); the keyword and vector indexes are rebuilt in memory
from it, and ``revision`` tells a replica when its copy is stale. A document's chunks are
replaced in one transaction, so a reader sees the old chunks or the new ones, never a mix.
"""

from __future__ import annotations

import hashlib
import re
import secrets
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any

import numpy as np
from sqlalchemy import Connection, delete, func, insert, select, update

from heshi.apps.kb.chunk import Chunk
from heshi.errors import HeshiError, InvalidRequest
from heshi.store.db import Database
from heshi.store.tables import kb_bases, kb_chunks, kb_documents, kb_handoffs, kb_sessions

_NAME = re.compile(r"^[A-Za-z0-9\u4e00-\u9fff][A-Za-z0-9_.\-\u4e00-\u9fff]{0,63}$")
DIM = 384  # multilingual-e5-small


class KnowledgeBaseNotFound(HeshiError):
    status_code = 404
    error_type = "invalid_request_error"
    code = "kb_not_found"


@dataclass(frozen=True)
class KnowledgeBase:
    name: str
    tenant: str | None
    settings: dict[str, Any]
    revision: int
    created_at: datetime
    updated_at: datetime

    @property
    def user_words(self) -> list[str]:
        return list(self.settings.get("user_words") or [])


@dataclass(frozen=True)
class DocumentRow:
    id: str
    kb: str
    source: str
    name: str
    sha256: str
    size: int
    pages: int
    chunks: int
    ingested_at: datetime


@dataclass(frozen=True)
class StoredChunk:
    id: str
    doc: str  # the document's file name
    doc_id: str
    seq: int
    headings: tuple[str, ...]
    kind: str
    page: int | None
    text: str

    @property
    def indexed(self) -> str:
        return f"{' > '.join(self.headings)}\n{self.text}" if self.headings else self.text


def check_name(name: str) -> str:
    if not _NAME.fullmatch(name):
        raise InvalidRequest(
            f"知识库名称无效 / invalid knowledge-base name {name!r}: 1-64 letters, digits, "
            "Chinese characters, '_', '-' or '.', starting with a letter, digit or character",
            param="name",
        )
    return name


def _not_found(name: str) -> KnowledgeBaseNotFound:
    return KnowledgeBaseNotFound(
        f"没有名为 {name!r} 的知识库 / no knowledge base named {name!r} (heshi kb list shows them)"
    )


def _now() -> datetime:
    return datetime.now(UTC)


class KnowledgeBaseStore:
    def __init__(self, db: Database) -> None:
        self.db = db

    # ------------------------------------------------------------------ bases

    def create(
        self,
        name: str,
        tenant: str | None = None,
        user_words: list[str] | None = None,
        conn: Connection | None = None,
    ) -> KnowledgeBase:
        """A new empty base; with ``conn``, inside that transaction (an admin change
        commits with its audit record)."""
        check_name(name)
        now = _now()
        base = KnowledgeBase(
            name, tenant, {"user_words": sorted(set(user_words or []))}, 0, now, now
        )
        with self.db.writing(conn) as tx:
            if tx.execute(select(kb_bases.c.name).where(kb_bases.c.name == name)).first():
                raise InvalidRequest(
                    f"知识库已存在 / knowledge base {name!r} already exists", param="name"
                )
            tx.execute(
                insert(kb_bases).values(
                    name=name,
                    tenant=tenant,
                    settings=base.settings,
                    revision=0,
                    created_at=now,
                    updated_at=now,
                )
            )
        return base

    def get(self, name: str) -> KnowledgeBase:
        with self.db.read() as conn:
            row = conn.execute(select(kb_bases).where(kb_bases.c.name == name)).mappings().first()
        if row is None:
            raise _not_found(name)
        return KnowledgeBase(**dict(row))

    def bases(self, tenant: str | None = None) -> list[KnowledgeBase]:
        query = select(kb_bases).order_by(kb_bases.c.name)
        if tenant is not None:
            query = query.where((kb_bases.c.tenant == tenant) | kb_bases.c.tenant.is_(None))
        with self.db.read() as conn:
            return [KnowledgeBase(**dict(r)) for r in conn.execute(query).mappings()]

    def add_words(self, name: str, words: list[str]) -> KnowledgeBase:
        """Add terms to the base's user dictionary (segmented as one word each)."""
        base = self.get(name)
        merged = sorted(set(base.user_words) | {w.strip() for w in words if w.strip()})
        with self.db.begin() as conn:
            conn.execute(
                update(kb_bases)
                .where(kb_bases.c.name == name)
                .values(
                    settings={**base.settings, "user_words": merged},
                    revision=kb_bases.c.revision + 1,
                    updated_at=_now(),
                )
            )
        return self.get(name)

    def remove(self, name: str, conn: Connection | None = None) -> None:
        """The base and everything in it: documents, chunks, sessions and handoffs (with
        ``conn``, inside that transaction)."""
        with self.db.writing(conn) as tx:
            if tx.execute(select(kb_bases.c.name).where(kb_bases.c.name == name)).first() is None:
                raise _not_found(name)
            for table in (kb_chunks, kb_documents, kb_sessions, kb_handoffs):
                tx.execute(delete(table).where(table.c.kb == name))
            tx.execute(delete(kb_bases).where(kb_bases.c.name == name))

    # ------------------------------------------------------------------ documents

    def documents(self, name: str) -> list[DocumentRow]:
        query = select(kb_documents).where(kb_documents.c.kb == name)
        with self.db.read() as conn:
            rows = conn.execute(query.order_by(kb_documents.c.source)).mappings()
            return [DocumentRow(**dict(r)) for r in rows]

    def document_digest(self, name: str, source: str) -> str | None:
        query = select(kb_documents.c.sha256).where(
            (kb_documents.c.kb == name) & (kb_documents.c.source == source)
        )
        with self.db.read() as conn:
            return conn.execute(query).scalar_one_or_none()

    def put_document(
        self,
        name: str,
        *,
        source: str,
        file_name: str,
        sha256: str,
        size: int,
        pages: int,
        chunks: list[Chunk],
        vectors: np.ndarray | None,
        conn: Connection | None = None,
    ) -> DocumentRow:
        """Store a document's chunks, replacing those of an earlier version of it (with
        ``conn``, inside that transaction)."""
        if vectors is not None and vectors.shape != (len(chunks), DIM):
            raise ValueError(f"vectors {vectors.shape} for {len(chunks)} chunks")
        now = _now()
        doc_id = "doc_" + hashlib.sha256(f"{name}\0{source}".encode()).hexdigest()[:24]
        rows = [
            {
                "id": f"{doc_id[4:16]}-{chunk.seq:05d}-{chunk.digest()[:8]}",
                "kb": name,
                "doc_id": doc_id,
                "seq": chunk.seq,
                "headings": list(chunk.headings),
                "kind": chunk.kind,
                "page": chunk.page,
                "text": chunk.text,
                "vector": None if vectors is None else vectors[i].astype("<f4").tobytes(),
            }
            for i, chunk in enumerate(chunks)
        ]
        document = DocumentRow(
            id=doc_id, kb=name, source=source, name=file_name, sha256=sha256, size=size,
            pages=pages, chunks=len(chunks), ingested_at=now,
        )  # fmt: skip
        with self.db.writing(conn) as tx:
            if tx.execute(select(kb_bases.c.name).where(kb_bases.c.name == name)).first() is None:
                raise _not_found(name)
            tx.execute(delete(kb_chunks).where(kb_chunks.c.doc_id == doc_id))
            tx.execute(delete(kb_documents).where(kb_documents.c.id == doc_id))
            tx.execute(insert(kb_documents).values(**document.__dict__))
            if rows:
                tx.execute(insert(kb_chunks), rows)
            tx.execute(
                update(kb_bases)
                .where(kb_bases.c.name == name)
                .values(revision=kb_bases.c.revision + 1, updated_at=now)
            )
        return document

    def remove_document(self, name: str, source: str) -> bool:
        with self.db.begin() as conn:
            doc_id = conn.execute(
                select(kb_documents.c.id).where(
                    (kb_documents.c.kb == name) & (kb_documents.c.source == source)
                )
            ).scalar_one_or_none()
            if doc_id is None:
                return False
            conn.execute(delete(kb_chunks).where(kb_chunks.c.doc_id == doc_id))
            conn.execute(delete(kb_documents).where(kb_documents.c.id == doc_id))
            conn.execute(
                update(kb_bases)
                .where(kb_bases.c.name == name)
                .values(revision=kb_bases.c.revision + 1, updated_at=_now())
            )
        return True

    def chunks(self, name: str) -> tuple[int, list[StoredChunk], np.ndarray]:
        """The base's revision, its chunks in document order, and their vectors (rows of
        zeros where a chunk has none) — read in one snapshot."""
        query = (
            select(kb_chunks, kb_documents.c.name.label("doc"))
            .join(kb_documents, kb_documents.c.id == kb_chunks.c.doc_id)
            .where(kb_chunks.c.kb == name)
            .order_by(kb_documents.c.source, kb_chunks.c.seq)
        )
        with self.db.read() as conn:
            revision = conn.execute(
                select(kb_bases.c.revision).where(kb_bases.c.name == name)
            ).scalar_one_or_none()
            if revision is None:
                raise _not_found(name)
            rows = list(conn.execute(query).mappings())
        chunks = [
            StoredChunk(
                id=r["id"], doc=r["doc"], doc_id=r["doc_id"], seq=r["seq"],
                headings=tuple(r["headings"]), kind=r["kind"], page=r["page"], text=r["text"],
            )
            for r in rows
        ]  # fmt: skip
        vectors = np.zeros((len(rows), DIM), dtype=np.float32)
        for i, r in enumerate(rows):
            if r["vector"] is not None:
                vectors[i] = np.frombuffer(r["vector"], dtype="<f4")
        return int(revision), chunks, vectors

    def counts(self, name: str) -> tuple[int, int]:
        """(documents, chunks) in the base."""
        with self.db.read() as conn:
            docs = conn.execute(
                select(func.count()).select_from(kb_documents).where(kb_documents.c.kb == name)
            ).scalar_one()
            chunks = conn.execute(
                select(func.count()).select_from(kb_chunks).where(kb_chunks.c.kb == name)
            ).scalar_one()
        return int(docs), int(chunks)


def new_id(prefix: str) -> str:
    return prefix + secrets.token_hex(12)
