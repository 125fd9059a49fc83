"""Files into a knowledge base: read, chunk, embed, store — one file at a time.

A file that fails (unreadable, unsupported, empty) is reported and skipped; the batch goes
on. A file whose bytes have not changed since it was ingested is skipped; a changed one
has its chunks replaced in one transaction.
"""

from __future__ import annotations

import hashlib
import time
from collections.abc import Callable, Iterable, Iterator
from dataclasses import dataclass, field
from pathlib import Path

from sqlalchemy import Connection

from heshi.apps.kb.chunk import chunk_blocks
from heshi.apps.kb.documents import load_bytes, read_document, supported
from heshi.apps.kb.index import Vectors
from heshi.apps.kb.parse import UnreadableDocument
from heshi.apps.kb.store import DocumentRow, KnowledgeBaseStore
from heshi.errors import HeshiError

_EMBED_BATCH = 32
# Runs a document's write: given the write as a function of a transaction (or None).
Save = Callable[[Callable[[Connection | None], DocumentRow]], object]


@dataclass(frozen=True)
class FileResult:
    path: Path
    status: str  # added | replaced | unchanged | failed
    chunks: int = 0
    pages: int = 0
    error: str = ""


@dataclass
class IngestReport:
    files: list[FileResult] = field(default_factory=list)
    seconds: float = 0.0

    def count(self, status: str) -> int:
        return sum(1 for f in self.files if f.status == status)

    @property
    def pages(self) -> int:
        return sum(f.pages for f in self.files if f.status in ("added", "replaced"))


def expand(paths: Iterable[Path], skipped: list[Path] | None = None) -> Iterator[Path]:
    """Files named, and every supported file below directories named (sorted, hidden
    files and directories skipped). A file of a type no reader takes, found in a
    directory, is not yielded but added to ``skipped`` (when given) for the caller to say;
    a link to nothing is yielded, so that reading it fails and is reported."""
    for path in paths:
        if path.is_dir():
            for found in sorted(path.rglob("*")):
                if any(p.startswith(".") for p in found.relative_to(path).parts):
                    continue
                if (found.is_symlink() and not found.exists()) or (
                    found.is_file() and supported(found)
                ):
                    yield found
                elif not found.is_dir() and skipped is not None:
                    skipped.append(found)
        else:
            yield path


def ingest(
    store: KnowledgeBaseStore,
    kb: str,
    paths: Iterable[Path],
    embed: Vectors | None,
    *,
    on_file: Callable[[FileResult], None] | None = None,
    one: Callable[[Path, bytes], FileResult] | None = None,
) -> IngestReport:
    """Ingest ``paths`` (files or directories) into ``kb``; see the module docstring.
    ``one`` ingests one file's bytes (the audited service's, for the CLI); by default
    :func:`ingest_bytes` with the file's absolute path as its identity."""
    store.get(kb)  # an unknown base fails before any work
    report = IngestReport()
    started = time.perf_counter()
    for path in expand(paths):
        result = _one(store, kb, path, embed, one)
        report.files.append(result)
        if on_file is not None:
            on_file(result)
    report.seconds = time.perf_counter() - started
    return report


def _one(
    store: KnowledgeBaseStore,
    kb: str,
    path: Path,
    embed: Vectors | None,
    one: Callable[[Path, bytes], FileResult] | None,
) -> FileResult:
    try:
        data = load_bytes(path)
    except UnreadableDocument as exc:
        return FileResult(path, "failed", error=exc.message)
    if one is not None:
        return one(path, data)
    return ingest_bytes(store, kb, path, data, embed, source=str(path.resolve()))


def ingest_bytes(
    store: KnowledgeBaseStore,
    kb: str,
    path: Path,
    data: bytes,
    embed: Vectors | None,
    *,
    source: str,
    save: Save | None = None,
) -> FileResult:
    """One document already in memory (an upload): ``path`` gives its name and type (it is
    never opened), ``source`` identifies it in the base, so sending the same source again
    replaces its chunks, or changes nothing when its bytes are the same. ``save`` runs the
    one write, given a function of the transaction to make it in (the admin API's: the
    write commits with its audit record); by default a transaction of its own."""
    digest = hashlib.sha256(data).hexdigest()
    before = store.document_digest(kb, source)
    if before == digest:
        return FileResult(path, "unchanged")
    try:
        parsed = read_document(path, data)
        chunks = chunk_blocks(parsed.blocks)
        vectors = None
        if embed is not None:
            texts = [c.indexed for c in chunks]
            parts = [
                embed.passages(texts[i : i + _EMBED_BATCH])
                for i in range(0, len(texts), _EMBED_BATCH)
            ]
            import numpy as np

            vectors = np.concatenate(parts) if parts else np.zeros((0, 384), dtype=np.float32)
    except HeshiError as exc:
        return FileResult(path, "failed", error=str(exc))
    except Exception as exc:  # a parser's own failure on a broken file: report, go on
        return FileResult(path, "failed", error=f"{type(exc).__name__}: {exc}")

    def put(conn: Connection | None) -> DocumentRow:
        return store.put_document(
            kb, source=source, file_name=path.name, sha256=digest, size=len(data),
            pages=parsed.pages, chunks=chunks, vectors=vectors, conn=conn,
        )  # fmt: skip

    if save is None:
        put(None)
    else:
        save(put)
    status = "added" if before is None else "replaced"
    return FileResult(path, status, chunks=len(chunks), pages=parsed.pages)
