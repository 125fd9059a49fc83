"""Many documents, one results file: each file extracted once, its row appended to a JSON
Lines file as soon as it is done (flushed to disk), a failure recorded as a row and the
batch going on. Run again, it skips every file whose content (SHA-256) already has a
successful row for the same schema — a batch stopped halfway resumes where it was."""

from __future__ import annotations

import asyncio
import hashlib
import json
import os
import time
from collections.abc import Callable, Iterable
from dataclasses import dataclass
from pathlib import Path
from typing import IO, Any

from heshi.apps.docs.classify import AUTO, NotBuiltIn, classify_and_extract
from heshi.apps.docs.extract import Ask
from heshi.apps.docs.pool import Readers
from heshi.apps.docs.read import document_text
from heshi.apps.docs.schema import BUILT_IN, Schema, load_schema
from heshi.apps.kb.documents import load_bytes
from heshi.errors import HeshiError, InvalidRequest


@dataclass
class BatchReport:
    done: int = 0
    failed: int = 0
    skipped: int = 0
    seconds: float = 0.0


class BatchError(InvalidRequest):
    code = "batch_output"


def finished(out: Path, schema_digest: str) -> set[str]:
    """The content hashes with a successful row for this exact schema (by its content) in
    ``out``; a line that is not a row — torn by a kill mid-write, even mid-character — is
    ignored."""
    if out.is_dir():
        raise BatchError(f"--out 是目录 / --out is a directory: {out}")
    if not out.exists():
        return set()
    done: set[str] = set()
    try:
        with out.open(encoding="utf-8", errors="replace") as rows:
            for line in rows:
                try:
                    row = json.loads(line)
                except json.JSONDecodeError:
                    continue
                if (
                    isinstance(row, dict)
                    and row.get("status") == "ok"
                    and row.get("schema_sha256") == schema_digest
                ):
                    done.add(str(row.get("sha256")))
    except OSError as exc:
        raise BatchError(f"无法读取 / cannot read {out}: {exc.strerror or exc}") from exc
    return done


def auto_digest() -> str:
    """``--schema auto``'s identity: the built-in schemas it may choose."""
    parts = "".join(load_schema(name).digest for name in BUILT_IN)
    return hashlib.sha256(f"auto:{parts}".encode()).hexdigest()


async def run_batch(
    ask: Ask, schema: Schema | None, files: Iterable[Path], out: Path, *, model: str,
    max_chars: int, workers: int = 1, reader: Readers | None = None,
    on_row: Callable[[dict[str, Any]], None] | None = None,
) -> BatchReport:  # fmt: skip
    """Extract every file of ``files`` not yet done into ``out``; ``workers`` at a time.
    ``schema`` None: each file's kind is classified and its built-in schema used.
    ``reader`` reads the files (a process pool, Ray: :mod:`heshi.apps.docs.pool`); by
    default a thread of this process."""
    start = time.perf_counter()
    report = BatchReport()
    digest_of_schema, done, unique = await asyncio.to_thread(_prepare, out, list(files), schema)
    limit = asyncio.Semaphore(max(1, workers))
    try:
        sink = out.open("a", encoding="utf-8")
    except OSError as exc:
        raise BatchError(f"无法写入 / cannot write {out}: {exc.strerror or exc}") from exc
    with sink:
        _end_torn_line(out, sink)

        async def one(path: Path) -> None:
            async with limit:  # a file's bytes are held only while it is worked on
                row = await _extract_row(ask, schema, path, done, model, max_chars, reader)
            if row is None:  # its content is done (in an earlier run, or as a twin)
                report.skipped += 1
                row = {"file": str(path), "status": "skipped"}
            else:
                row["schema_sha256"] = digest_of_schema
                _append(sink, row)
                if row["status"] == "ok":
                    report.done += 1
                    done.add(str(row["sha256"]))
                else:
                    report.failed += 1
            if on_row is not None:
                on_row(row)

        await asyncio.gather(*(one(p) for p in unique))
    report.seconds = time.perf_counter() - start
    return report


def _prepare(
    out: Path, files: list[Path], schema: Schema | None
) -> tuple[str, set[str], list[Path]]:
    """The schema's identity, the contents already done, and the files to go through:
    each once (a directory and a file in it may both be given), never the output itself."""
    digest = schema.digest if schema is not None else auto_digest()
    done = finished(out, digest)
    target = out.resolve()
    unique = list(dict.fromkeys(r for p in files if (r := p.resolve()) != target))
    try:
        out.parent.mkdir(parents=True, exist_ok=True)
    except OSError as exc:
        raise BatchError(f"无法写入 / cannot write {out}: {exc.strerror or exc}") from exc
    return digest, done, unique


async def _extract_row(
    ask: Ask, schema: Schema | None, path: Path, done: set[str], model: str, max_chars: int,
    reader: Readers | None,
) -> dict[str, Any] | None:  # fmt: skip
    """The file's row, its bytes read once (hashed, then parsed); None when its content is
    already in ``done``."""
    started = time.perf_counter()
    row: dict[str, Any] = {
        "file": str(path), "sha256": None, "schema": schema.name if schema else AUTO,
    }  # fmt: skip
    try:
        data = await asyncio.to_thread(load_bytes, path)
        row["sha256"] = hashlib.sha256(data).hexdigest()
        if row["sha256"] in done:
            return None
        if reader is None:
            document = await asyncio.to_thread(document_text, path, data)
        else:
            document = await reader.read(path, data)
        kind, _, result = await classify_and_extract(ask, schema, document.text, model, max_chars)
        if kind is not None:
            row["type"] = kind
    except NotBuiltIn as exc:
        row.update(type="other", status="failed", fields=None, problems=[], error=exc.message)
    except HeshiError as exc:
        row.update(status="failed", fields=None, problems=[], error=exc.message)
    except Exception as exc:  # a reader's own failure on a broken file: recorded, go on
        row.update(status="failed", fields=None, problems=[], error=f"{type(exc).__name__}: {exc}")
    else:
        row.update(
            status="ok", fields=result.values, problems=[p.as_json() for p in result.problems],
            error=None, pages=document.pages,
        )  # fmt: skip
    row["seconds"] = round(time.perf_counter() - started, 3)
    return row


def _append(sink: IO[str], row: dict[str, Any]) -> None:
    sink.write(json.dumps(row, ensure_ascii=False) + "\n")
    sink.flush()
    os.fsync(sink.fileno())


def _end_torn_line(out: Path, sink: IO[str]) -> None:
    """A file whose last line was cut (a kill mid-write) gets its newline, so the next row
    starts on a line of its own."""
    size = out.stat().st_size
    if size:
        with out.open("rb") as raw:
            raw.seek(size - 1)
            if raw.read(1) != b"\n":
                sink.write("\n")
                sink.flush()
