"""An append-only, fsync'd JSONL spool for ledger rows the database cannot take yet.

Each writer appends to its own file, held under an exclusive ``flock`` for the writer's
lifetime, so replicas sharing a home never interleave lines. A file whose lock can be
taken belongs to a process that has exited: its rows are replayed and the file removed.
Replays may repeat rows after a crash; the ledger's unique ``request_id`` absorbs that.
The segments of a killed process's ledger journal (:mod:`heshi.store.journal`) are
replayed the same way.
"""

from __future__ import annotations

import fcntl
import json
import logging
import os
import secrets
import threading
from collections.abc import Callable, Iterable, Iterator
from pathlib import Path
from typing import IO, Any

from heshi.store.journal import JOURNAL_GLOB

log = logging.getLogger(__name__)

SPOOL_GLOB = "ledger-spool-*.jsonl"
ORPHAN_GLOBS = (SPOOL_GLOB, JOURNAL_GLOB)  # files of other processes, replayed once unlocked
REJECTED_NAME = "ledger-rejected.jsonl"  # rows the database refused as invalid; kept for people

Row = dict[str, Any]


class LedgerSpool:
    """Rows on disk, waiting for the database: ``append`` now, ``replay`` later."""

    def __init__(self, directory: Path) -> None:
        self.directory = directory
        self._lock = threading.Lock()  # the writer thread and close() may both append
        self._file: IO[bytes] | None = None
        self._own_path = directory / f"ledger-spool-{os.getpid()}-{secrets.token_hex(4)}.jsonl"
        self._own_rows = 0
        self._orphans_checked = False

    @property
    def pending_rows(self) -> int:
        """Rows this writer has spooled and not yet replayed."""
        return self._own_rows

    def needs_replay(self) -> bool:
        """True when there are own rows, or other processes' files not looked at yet."""
        return self._own_rows > 0 or not self._orphans_checked

    def append(self, rows: Iterable[Row]) -> int:
        """Append rows and fsync before returning; returns how many were written."""
        data = b"".join(json.dumps(r, ensure_ascii=False).encode() + b"\n" for r in rows)
        if not data:
            return 0
        count = data.count(b"\n")
        with self._lock:
            handle = self._open_own()
            handle.write(data)
            handle.flush()
            os.fsync(handle.fileno())
            self._own_rows += count
        return count

    def replay(self, consume: Callable[[list[Row]], None], batch_rows: int) -> int:
        """Feed spooled rows to ``consume`` in batches; returns how many were replayed.

        A file is emptied (own) or deleted (orphan) only after all its rows were consumed;
        if ``consume`` raises, the rest stays on disk for the next attempt.
        """
        replayed = 0
        with self._lock:
            if not self._orphans_checked:
                orphans = [p for g in ORPHAN_GLOBS for p in self.directory.glob(g)]
                for path in sorted(orphans):
                    if path != self._own_path:
                        replayed += _replay_orphan(path, consume, batch_rows)
                self._orphans_checked = True
            if self._own_rows and self._file is not None:
                self._file.seek(0)
                replayed += _feed(_read_lines(self._file, self._own_path), consume, batch_rows)
                self._file.truncate(0)
                self._file.seek(0)
                os.fsync(self._file.fileno())
                self._own_rows = 0
        return replayed

    def recheck_orphans(self) -> None:
        """Look for other processes' spool files again at the next ``replay``."""
        self._orphans_checked = False

    def reject(self, rows: Iterable[Row]) -> None:
        """Keep rows the database refused in a side file an operator can inspect."""
        with self._lock:
            append_jsonl(self.directory / REJECTED_NAME, rows)

    def close(self) -> None:
        """Release the file; an empty own file is removed, a non-empty one stays for replay."""
        with self._lock:
            if self._file is None:
                return
            if self._own_rows == 0:
                self._own_path.unlink(missing_ok=True)
            self._file.close()  # closing releases the flock
            self._file = None

    def _open_own(self) -> IO[bytes]:
        if self._file is None:
            self.directory.mkdir(parents=True, exist_ok=True)
            handle = self._own_path.open("a+b")
            fcntl.flock(handle.fileno(), fcntl.LOCK_EX | fcntl.LOCK_NB)
            self._file = handle
        return self._file


def append_jsonl(path: Path, rows: Iterable[Row]) -> None:
    """Append rows to a JSON Lines file (its folder created) and fsync before returning."""
    data = b"".join(json.dumps(r, ensure_ascii=False).encode() + b"\n" for r in rows)
    path.parent.mkdir(parents=True, exist_ok=True)
    with path.open("ab") as handle:
        handle.write(data)
        handle.flush()
        os.fsync(handle.fileno())


def read_jsonl(path: Path) -> list[Row]:
    """The objects of a JSON Lines file; a torn line (a crash mid-append) is skipped."""
    with path.open("rb") as handle:
        return list(_read_lines(handle, path))


def _replay_orphan(path: Path, consume: Callable[[list[Row]], None], batch_rows: int) -> int:
    try:
        handle = path.open("r+b")
    except FileNotFoundError:
        return 0  # another process replayed and removed it just now
    with handle:
        try:
            fcntl.flock(handle.fileno(), fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            return 0  # a live writer owns it
        count = _feed(_read_lines(handle, path), consume, batch_rows)
        path.unlink(missing_ok=True)
    if count:
        log.info("replayed %d ledger rows left in %s by an earlier process", count, path)
    return count


def _feed(rows: Iterator[Row], consume: Callable[[list[Row]], None], batch_rows: int) -> int:
    total = 0
    batch: list[Row] = []
    for row in rows:
        batch.append(row)
        if len(batch) >= batch_rows:
            consume(batch)
            total += len(batch)
            batch = []
    if batch:
        consume(batch)
        total += len(batch)
    return total


def _read_lines(handle: IO[bytes], path: Path) -> Iterator[Row]:
    for number, line in enumerate(handle, start=1):
        if not line.strip():
            continue
        try:
            row = json.loads(line)
        except ValueError:
            # Only a crash in the middle of an append leaves a torn line, and only the last.
            log.warning("skipping unreadable line %d of spool %s", number, path)
            continue
        if isinstance(row, dict):
            yield row
