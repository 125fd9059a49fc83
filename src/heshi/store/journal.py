"""The ledger journal: a copy of every queued usage row that outlives a killed process.

Rows wait in memory for up to ``ledger_flush_seconds`` before the writer commits them;
``kill -9`` (or the OOM killer) in that window would lose them, and with them the tokens
they charged to budgets. So each row is also appended here when it is queued: one
``os.write`` to an ``O_APPEND`` file, no fsync. The write lands in the OS page cache,
which survives the death of the process (not of the machine: an OS crash or power loss
can lose the unsynced tail — the fsync'd spool is for rows that must survive those).

A journal is a series of segment files named ``ledger-journal-<pid>-<random>-<n>.jsonl``
in the spool directory, each held under ``flock`` while open. A segment whose lock can be
taken belongs to a process that died: :class:`~heshi.store.spool.LedgerSpool` replays it
like an orphaned spool file at the next start and deletes it. Replaying rows that were
already committed is harmless: the ledger skips a ``request_id`` it has.

Segments rotate so the journal never grows with the ledger: when the writer has taken
every queued row, the current segment is retired (a fresh one takes new rows) and a
retired segment is deleted once the rows taken with it are committed. While the database
is down nothing commits, so the current segment grows with every row (next to the spool,
which holds the overflow) until the database returns.

Not thread-safe on its own: :class:`~heshi.store.ledger.LedgerWriter` serialises
``append`` with its queue, and calls the other methods from its writer thread.
"""

from __future__ import annotations

import fcntl
import logging
import os
import secrets
from pathlib import Path

log = logging.getLogger(__name__)

JOURNAL_GLOB = "ledger-journal-*.jsonl"


class LedgerJournal:
    """Segment files of JSON lines, one per queued row; see the module docstring."""

    def __init__(self, directory: Path) -> None:
        self.directory = directory
        self._stem = f"ledger-journal-{os.getpid()}-{secrets.token_hex(4)}"
        self._serial = 0
        self._fd: int | None = None  # the current segment; None: not journaling
        self._path: Path | None = None
        self._dirty = False  # the current segment has rows
        self._retired: list[tuple[int, Path]] = []
        self._closed = False

    def open(self) -> None:
        """Begin the first segment. Without it (or after ``close``) ``append`` does nothing."""
        if self._fd is None and not self._closed:
            self._begin()

    def append(self, line: bytes) -> None:
        """Append one row (a JSON line ending in ``\\n``): a single ``os.write``. Never raises."""
        if self._fd is None:
            return
        try:
            os.write(self._fd, line)
            self._dirty = True
        except OSError as exc:
            # The row is still queued in memory; only its protection against a kill is gone.
            log.error("ledger journal: cannot append to %s (%s); journaling stops", self._path, exc)
            self._retire()

    def rotate(self) -> None:
        """Every row appended so far has been taken for writing: start a fresh segment."""
        if self._dirty and not self._closed:
            self._retire()
            self._begin()

    def discard_retired(self) -> None:
        """Every row taken so far is committed (or spooled): delete the retired segments."""
        for fd, path in self._retired:
            path.unlink(missing_ok=True)
            os.close(fd)
        self._retired = []

    def close(self, *, discard: bool) -> None:
        """Stop journaling. ``discard``: every row is committed or spooled, delete the files;
        otherwise they are left (unlocked) for the next start to replay."""
        self._closed = True
        self._retire()
        if discard:
            self.discard_retired()
            return
        for fd, _path in self._retired:
            os.close(fd)
        self._retired = []

    def _begin(self) -> None:
        self._serial += 1
        path = self.directory / f"{self._stem}-{self._serial}.jsonl"
        fd = -1
        try:
            self.directory.mkdir(parents=True, exist_ok=True)
            fd = os.open(path, os.O_WRONLY | os.O_APPEND | os.O_CREAT | os.O_CLOEXEC, 0o600)
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)  # a new, unique file: uncontended
        except OSError as exc:
            log.error("ledger journal: cannot create %s (%s); rows are not journaled", path, exc)
            if fd >= 0:
                os.close(fd)
                path.unlink(missing_ok=True)
            return
        self._fd, self._path, self._dirty = fd, path, False

    def _retire(self) -> None:
        if self._fd is not None and self._path is not None:
            self._retired.append((self._fd, self._path))
        self._fd, self._path, self._dirty = None, None, False
