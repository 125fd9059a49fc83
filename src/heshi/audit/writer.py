"""Audit entries written off the request path, in batches, by one background thread.

``submit`` only appends to a queue; the thread appends batches to the hash chain
(``AuditLog.append_many``: one transaction per batch). While the database is down the
entries wait in memory (up to ``buffer_entries``; past that new entries are dropped and
counted — logged as an error, reported in ``stats``), and ``close`` writes what it can.
"""

from __future__ import annotations

import logging
import threading
import time
from collections import deque
from dataclasses import dataclass

from heshi.audit.log import AuditLog
from heshi.audit.records import AuditEntry
from heshi.errors import HeshiError

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
        self._thread = threading.Thread(target=self._run, name="heshi-audit", daemon=True)

    def start(self) -> None:
        if not self._thread.is_alive():
            self._thread.start()

    def submit(self, entry: AuditEntry) -> None:
        """Queue one entry; never blocks on I/O, never raises."""
        with self._lock:
            if len(self._queue) >= self._limit:
                self._dropped += 1
                if self._dropped == 1 or self._dropped % 1000 == 0:
                    log.error(
                        "审计队列已满，记录被丢弃 / audit queue full: %d dropped", self._dropped
                    )
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
        self.flush(timeout)
        self._stop.set()
        self._wake.set()
        if self._thread.is_alive():
            self._thread.join(timeout)

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
                    backoff = min(_MAX_BACKOFF, (backoff or 0.1) * 2)
                    continue
                with self._lock:
                    for _ in batch:
                        self._queue.popleft()
                    self._written += len(batch)
                self._healthy, backoff = True, 0.0
                if self._queue:
                    self._wake.set()
                    continue
            with self._idle:
                self._idle.notify_all()
            if self._stop.is_set() and not self._queue:
                return
