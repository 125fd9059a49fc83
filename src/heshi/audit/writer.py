"""Audit entries written off the request path, in batches, by one background thread.

``submit`` only appends to a queue; the thread appends batches to the hash chain
(``AuditLog.append_many``: one transaction per batch). While the database is down the
entries wait in memory up to ``buffer_entries``; past that, and whatever is still queued
at ``close``, they go to an fsync'd spool file (JSON Lines) that the next start writes
first. Only a killed process can lose the entries still in memory.
"""

from __future__ import annotations

import logging
import threading
import time
from collections import deque
from dataclasses import dataclass, fields
from datetime import datetime
from pathlib import Path
from typing import Any

from heshi.audit.log import AuditLog
from heshi.audit.records import AuditEntry, AuditVerdict
from heshi.errors import HeshiError
from heshi.store.spool import append_jsonl, read_jsonl

log = logging.getLogger(__name__)

_MAX_BACKOFF = 5.0


@dataclass(frozen=True)
class AuditStats:
    queued: int
    written: int
    dropped: int
    healthy: bool


class AuditWriter:
    def __init__(
        self,
        audit: AuditLog,
        *,
        flush_seconds: float = 0.2,
        batch_entries: int = 200,
        buffer_entries: int = 100_000,
        spool: Path | None = None,
    ) -> None:
        self._audit = audit
        self._flush_seconds = flush_seconds
        self._batch = batch_entries
        self._limit = buffer_entries
        self._queue: deque[AuditEntry] = deque()
        self._lock = threading.Lock()
        self._wake = threading.Event()
        self._stop = threading.Event()
        self._idle = threading.Condition()
        self._written = 0
        self._dropped = 0
        self._healthy = True
        self._spool = spool
        self._replaying = 0  # spooled entries queued at start; the file goes once written
        self._thread = threading.Thread(target=self._run, name="heshi-audit", daemon=True)

    def start(self) -> None:
        """Queue what an earlier run spooled (first), then start writing."""
        if self._thread.is_alive():
            return
        if self._spool is not None:
            replay_file = self._spool.with_suffix(".replay")
            if self._spool.exists() and not replay_file.exists():
                # New spills go to a fresh spool file while this one is being written.
                self._spool.rename(replay_file)
            if replay_file.exists():
                replay = _read_spool(replay_file)
                with self._lock:
                    self._queue.extendleft(reversed(replay))
                    self._replaying = len(replay)
                if not replay:
                    replay_file.unlink()
        self._thread.start()

    def submit(self, entry: AuditEntry) -> None:
        """Queue one entry; never blocks on I/O, never raises."""
        with self._lock:
            if len(self._queue) >= self._limit:
                self._spill([entry])
                return
            self._queue.append(entry)
            if len(self._queue) >= self._batch:
                self._wake.set()

    def flush(self, timeout: float = 10.0) -> bool:
        """True once everything queued so far is written."""
        deadline = time.monotonic() + timeout
        self._wake.set()
        with self._idle:
            while self._queue and self._thread.is_alive():
                remaining = deadline - time.monotonic()
                if remaining <= 0:
                    return False
                self._idle.wait(min(remaining, 0.05))
                self._wake.set()
        return not self._queue

    def close(self, timeout: float = 10.0) -> None:
        """Write what the database takes within ``timeout``; spool the rest."""
        self.flush(timeout)
        self._stop.set()
        self._wake.set()
        if self._thread.is_alive():
            self._thread.join(timeout)
        with self._lock:
            # A thread still stuck in a database call may yet write its batch: then those
            # entries are in both places (a duplicate beats a loss).
            if self._queue:
                self._spill(list(self._queue))
                self._queue.clear()

    def _spill(self, entries: list[AuditEntry]) -> None:
        """Append entries to the spool file (fsync'd); without one, count them as dropped."""
        if self._spool is None:
            self._dropped += len(entries)
            log.error("审计记录丢弃 / audit entries dropped: %d so far", self._dropped)
            return
        append_jsonl(self._spool, (_to_json(e) for e in entries))

    def stats(self) -> AuditStats:
        with self._lock:
            return AuditStats(len(self._queue), self._written, self._dropped, self._healthy)

    def _take(self) -> list[AuditEntry]:
        with self._lock:
            return [self._queue[i] for i in range(min(self._batch, len(self._queue)))]

    def _run(self) -> None:
        backoff = 0.0
        while True:
            self._wake.wait(backoff or self._flush_seconds)
            self._wake.clear()
            batch = self._take()
            if batch:
                try:
                    self._audit.append_many(batch)
                except (HeshiError, OSError) as exc:
                    if self._healthy:
                        log.warning(
                            "审计写入失败，稍后重试 / audit write failed, retrying: %s", exc
                        )
                    self._healthy = False
                    if self._stop.is_set():
                        return  # closing: close() spools what is left
                    backoff = min(_MAX_BACKOFF, (backoff or 0.1) * 2)
                    continue
                with self._lock:
                    for _ in batch:
                        self._queue.popleft()
                    self._written += len(batch)
                    if self._replaying and self._written >= self._replaying:
                        self._replaying = 0
                        if self._spool is not None:
                            self._spool.with_suffix(".replay").unlink(missing_ok=True)
                self._healthy, backoff = True, 0.0
                if self._queue:
                    self._wake.set()
                    continue
            with self._idle:
                self._idle.notify_all()
            if self._stop.is_set() and not self._queue:
                return


def _to_json(entry: AuditEntry) -> dict[str, Any]:
    out: dict[str, Any] = {f.name: getattr(entry, f.name) for f in fields(entry)}
    out["verdicts"] = [AuditVerdict.of(v).as_dict() for v in entry.verdicts]
    out["ts"] = entry.ts.isoformat() if entry.ts else None
    return out


def _read_spool(path: Path) -> list[AuditEntry]:
    """The entries of a spool file; unreadable lines (a torn last line) are skipped."""
    entries = []
    for row in read_jsonl(path):
        try:
            row["ts"] = datetime.fromisoformat(row["ts"]) if row.get("ts") else None
            entries.append(AuditEntry(**row))
        except (ValueError, TypeError, KeyError) as exc:
            log.error("审计暂存记录无法读取，已跳过 / unreadable audit spool entry: %s", exc)
    return entries
