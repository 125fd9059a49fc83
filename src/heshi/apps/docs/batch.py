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

from heshi.apps.docs.classify import AUTO, NotBuiltIn, classify
from heshi.apps.docs.extract import Ask, extract
from heshi.apps.docs.read import document_text
from heshi.apps.docs.schema import Schema, load_schema
from heshi.apps.kb.documents import MAX_FILE_BYTES
from heshi.errors import HeshiError


@dataclass
class BatchReport:
    done: int = 0
    failed: int = 0
    skipped: int = 0
    seconds: float = 0.0


def finished(out: Path, schema: str) -> set[str]:
    """The content hashes with a successful row for ``schema`` in ``out`` (a torn last
    line — the process killed mid-write — is ignored)."""
    if not out.exists():
        return set()
    done: set[str] = set()
    with out.open(encoding="utf-8") as rows:
        for line in rows:
            try:
                row = json.loads(line)
            except json.JSONDecodeError:
                continue
            if isinstance(row, dict) and row.get("status") == "ok" and row.get("schema") == schema:
                done.add(str(row.get("sha256")))
    return done


def _digest(path: Path) -> str | None:
    try:
        if path.stat().st_size > MAX_FILE_BYTES:
            return None
        return hashlib.sha256(path.read_bytes()).hexdigest()
    except OSError:
        return None


async def run_batch(
    ask: Ask, schema: Schema | None, files: Iterable[Path], out: Path, *, model: str,
    max_chars: int, workers: int = 1,
    on_row: Callable[[dict[str, Any]], None] | None = None,
) -> BatchReport:  # fmt: skip
    """Extract every file of ``files`` not yet done into ``out``; ``workers`` at a time.
    ``schema`` None: each file's kind is classified and its built-in schema used."""
    start = time.perf_counter()
    report = BatchReport()
    done = finished(out, schema.name if schema is not None else AUTO)
    out.parent.mkdir(parents=True, exist_ok=True)
    limit = asyncio.Semaphore(max(1, workers))
    lock = asyncio.Lock()
    with out.open("a", encoding="utf-8") as sink:
        _end_torn_line(out, sink)

        async def one(path: Path) -> None:
            digest = await asyncio.to_thread(_digest, path)
            if digest is not None and digest in done:
                report.skipped += 1
                row: dict[str, Any] = {"file": str(path), "status": "skipped"}
                if on_row is not None:
                    on_row(row)
                return
            async with limit:
                row = await _extract_row(ask, schema, path, digest, model, max_chars)
            async with lock:
                _append(sink, row)
                if row["status"] == "ok":
                    report.done += 1
                    done.add(str(digest))
                else:
                    report.failed += 1
            if on_row is not None:
                on_row(row)

        await asyncio.gather(*(one(p) for p in files))
    report.seconds = time.perf_counter() - start
    return report


async def _extract_row(
    ask: Ask, schema: Schema | None, path: Path, digest: str | None, model: str, max_chars: int
) -> dict[str, Any]:
    started = time.perf_counter()
    name = schema.name if schema is not None else AUTO
    row: dict[str, Any] = {"file": str(path), "sha256": digest, "schema": name}
    try:
        document = await asyncio.to_thread(document_text, path)
        chosen = schema
        if chosen is None:
            kind = await classify(ask, document.text, model)
            row["type"] = kind
            if kind == "other":
                raise NotBuiltIn(kind)
            chosen = load_schema(kind)
        result = await extract(ask, chosen, document.text, model, max_chars)
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
