"""The usage ledger: one row per request, written in batches by a background thread.

``LedgerWriter.submit`` only appends to an in-memory queue, so the request path never
waits for the database. A database outage is ridden out by keeping rows in memory and,
past ``buffer_rows``, in an fsync'd spool file that is replayed when the database returns.

A killed process (``kill -9``, the OOM killer) loses no queued row either: ``submit``
also appends the row to the ledger journal (:mod:`heshi.store.journal`) — one
``os.write`` of one JSON line, no fsync, so the request path pays a few microseconds and
no disk wait. The OS page cache keeps those bytes when the process dies, and the next
start replays the dead process's journal before budgets are read from the ledger. Only
an OS crash or power loss can still lose the rows of the last ``ledger_flush_seconds``.
"""

from __future__ import annotations

import logging
import threading
import time
from collections import deque
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import orjson
from sqlalchemy.exc import (
    DataError,
    DBAPIError,
    IntegrityError,
    ProgrammingError,
    StatementError,
)

from heshi.store.bulk import BulkInsert
from heshi.store.db import Database, driver_message
from heshi.store.journal import LedgerJournal
from heshi.store.spool import LedgerSpool
from heshi.store.tables import usage_ledger
from heshi.store.usage import SpentTokens, UsageRow, prune, spent_tokens, usage_report

log = logging.getLogger(__name__)

_MAX_BACKOFF = 5.0  # seconds between attempts while the database is down
_FIRST_BACKOFF = 0.1


@dataclass(frozen=True, slots=True)
class UsageRecord:
    """One request's usage, as stored in ``usage_ledger`` (``ts`` is aware UTC)."""

    request_id: str
    ts: datetime
    tenant: str
    key_id: str | None
    model: str
    backend: str
    prompt_tokens: int
    completion_tokens: int
    latency_ms: int
    ttft_ms: int | None
    status: int  # HTTP status; 499 = the client went away
    route: str
    endpoint: str = "chat"  # chat | completions | embeddings | rerank | guard | docs
    reason: str = "ok"  # why it ended so: "ok", "quota.key.rpm", "client_gone", …
    cost_micro: int | None = None  # micro-yuan at the prices of the moment; None: unpriced

    def __post_init__(self) -> None:
        if self.ts.tzinfo is None:
            raise ValueError("UsageRecord.ts must be timezone-aware (UTC)")

    def to_json(self) -> dict[str, Any]:
        """A JSON-ready dict (the spool's line format)."""
        return {**self.values(), "ts": self.ts.isoformat()}

    @classmethod
    def from_json(cls, data: dict[str, Any]) -> UsageRecord:
        """The inverse of ``to_json``."""
        return cls(**{**data, "ts": datetime.fromisoformat(data["ts"])})

    def values(self) -> dict[str, Any]:
        """The column values, keyed by column name."""
        return {name: getattr(self, name) for name in self.__slots__}


@dataclass(frozen=True)
class LedgerStats:
    """What the writer holds and has done, for metrics and health checks."""

    buffered: int  # rows in memory, not yet in the database
    spooled: int  # rows in this writer's spool file
    written: int  # rows the database accepted since start (replays included)
    rejected: int  # rows the database refused as invalid (kept in the rejected file)
    healthy: bool  # False while the database fails, or takes rows slower than it should
    lag_seconds: float  # how long the oldest unwritten row has waited (0: none waiting)


class LedgerWriter:
    """Batches ``UsageRecord``s into the database from one background thread.

    ``submit`` works from construction on (rows wait in memory); ``start()`` starts the
    writer thread. Call ``close()`` at shutdown: it drains what it can and spools the
    rest, so no accepted row is lost.
    """

    def __init__(
        self,
        db: Database,
        *,
        flush_seconds: float,
        batch_rows: int,
        buffer_rows: int,
        spool_dir: Path,
        stall_seconds: float = 5.0,
    ) -> None:
        self._db = db
        # Rows waiting longer than this make the writer unhealthy even while no statement
        # has failed yet: a frozen database (locked, hung, paused) fails nothing at first.
        self._stall_seconds = stall_seconds
        # Skips a ``request_id`` already there: a retried batch whose first attempt had an
        # unknown outcome (connection dropped during COMMIT) is harmless.
        self._insert = BulkInsert(db, usage_ledger, "request_id")
        self._flush_seconds = flush_seconds
        self._batch_rows = batch_rows
        self._buffer_rows = buffer_rows
        self._spool = LedgerSpool(spool_dir)
        self._journal = LedgerJournal(spool_dir)
        # Held while a row is journaled and queued, and while the writer decides whether
        # the journal can rotate: a row is in the current segment only if it is queued.
        self._journal_lock = threading.Lock()
        self._buffer: deque[UsageRecord] = deque()
        self._inflight: list[UsageRecord] = []  # taken from the buffer, not yet committed
        self._state = threading.Condition()  # guards moves between buffer, inflight, spool
        self._wake = threading.Event()
        self._closing = threading.Event()
        self._closed = False
        self._close_deadline = 0.0
        self._retry_at = 0.0
        self._backoff = 0.0
        self._outage_since: float | None = None
        self._written = 0
        self._rejected = 0
        # Daemon: a hung database call must not keep the process alive; close() drains.
        self._thread = threading.Thread(target=self._run, name="heshi-ledger", daemon=True)

    def start(self) -> None:
        """Start the writer thread (once) and the journal; spooled rows and journals of
        earlier runs are replayed first (``flush()`` waits for that)."""
        if not self._thread.is_alive() and not self._closed:
            self._journal.open()
            self._thread.start()

    def submit(self, record: UsageRecord) -> None:
        """Queue one row. O(1), never blocks on I/O, never raises; any thread may call it.

        Once started, the row is also journaled (one unsynced ``os.write``), so it is
        not lost if the process is killed before the writer commits it.
        """
        line = orjson.dumps(record) + b"\n"  # the spool's line format (``to_json``), faster
        with self._journal_lock:
            self._journal.append(line)
            self._buffer.append(record)
        if self._closed:
            self._rescue()
        elif len(self._buffer) % self._batch_rows == 0:
            # Once per full batch, not per row: bounded wake-ups even during an outage.
            self._wake.set()

    def flush(self, timeout: float = 10.0) -> bool:
        """Write everything queued or spooled now; True once all of it is in the database.

        Returns False if that did not happen within ``timeout`` seconds (database down).
        """
        deadline = time.monotonic() + timeout
        with self._state:
            self._retry_at = 0.0  # an explicit flush retries at once, even mid-backoff
            self._wake.set()
            while not self._idle():
                remaining = deadline - time.monotonic()
                if remaining <= 0 or not self._thread.is_alive():
                    return False
                self._state.wait(remaining)
        return True

    def close(self, timeout: float = 10.0) -> None:
        """Stop the thread after writing what the database takes within ``timeout``.

        Whatever remains (database down or too slow) goes to the spool for a later replay.
        """
        self._close_deadline = time.monotonic() + timeout
        self._retry_at = 0.0
        self._closing.set()
        self._wake.set()
        if self._thread.is_alive():
            self._thread.join(timeout + 1.0)
        self._closed = True
        self._rescue()
        with self._journal_lock:
            # Everything is committed or in the fsync'd spool, unless the thread is hung
            # in a database call: then its batch is only in the journal; keep that.
            self._journal.close(discard=not self._thread.is_alive())

    def stats(self) -> LedgerStats:
        """A consistent snapshot of the writer's counters (no row counted twice or missed)."""
        with self._state:
            waiting = self._inflight or self._buffer  # oldest first: by each row's request time
            lag = max(0.0, (datetime.now(UTC) - waiting[0].ts).total_seconds()) if waiting else 0.0
            return LedgerStats(
                buffered=len(self._buffer) + len(self._inflight),
                spooled=self._spool.pending_rows,
                written=self._written,
                rejected=self._rejected,
                healthy=self._outage_since is None and lag < self._stall_seconds,
                lag_seconds=round(lag, 3),
            )

    # -- the writer thread -------------------------------------------------------------

    def _run(self) -> None:
        while True:
            now = time.monotonic()
            waiting = self._retry_at - now
            self._wake.wait(self._flush_seconds if waiting <= 0 else min(waiting, 1.0))
            self._wake.clear()
            try:
                self._spill_overflow()
                if time.monotonic() >= self._retry_at:
                    self._write_pending()
            except Exception:  # the thread must survive anything; rows stay queued
                log.exception("ledger writer: unexpected error; will retry")
                self._schedule_retry()
            if self._closing.is_set() and self._finish_closing():
                return
            with self._state:
                self._state.notify_all()

    def _write_pending(self) -> None:
        try:
            if self._spool.needs_replay():
                self._spool.replay(self._store_json, self._batch_rows)
            while self._take_batch():
                self._store(self._inflight)
                with self._state:
                    self._inflight = []
            with self._journal_lock:
                self._journal.discard_retired()  # every row taken so far is committed
        except DBAPIError as exc:
            self._on_failure(exc)
        else:
            self._on_success()

    def _take_batch(self) -> bool:
        with self._state:
            if not self._inflight:
                take = min(self._batch_rows, len(self._buffer))
                self._inflight = [self._buffer.popleft() for _ in range(take)]
                with self._journal_lock:
                    if not self._buffer:
                        # Every journaled row is taken; its segment goes once they commit.
                        self._journal.rotate()
            return bool(self._inflight)

    def _store(self, records: Sequence[UsageRecord]) -> None:
        """Insert a batch in one transaction; a row the DB calls invalid is set aside.

        Raises ``DBAPIError`` when the database itself fails (the caller retries later).
        """
        try:
            # One transaction per batch: a crash leaves the whole batch or none of it.
            with self._db.begin(bounded=True) as conn:
                self._insert.execute(conn, [r.values() for r in records])
        except StatementError as exc:
            if not _is_bad_data(exc):
                raise
            if len(records) > 1:
                # Find the culprit without holding back the good rows around it.
                for record in records:
                    self._store([record])
                return
            self._reject([records[0].to_json()], exc)
            return
        self._written += len(records)

    def _store_json(self, rows: list[dict[str, Any]]) -> None:
        records = []
        for row in rows:
            try:
                records.append(UsageRecord.from_json(row))
            except (TypeError, ValueError, KeyError) as exc:
                self._reject([row], exc)
        if records:
            self._store(records)

    def _reject(self, rows: list[dict[str, Any]], exc: BaseException) -> None:
        self._spool.reject(rows)
        self._rejected += len(rows)
        log.error(
            "ledger writer: row %s refused as invalid, kept in %s: %s",
            rows[0].get("request_id"),
            self._spool.directory,
            exc,
        )

    def _spill_overflow(self) -> None:
        with self._state:
            excess = len(self._buffer) + len(self._inflight) - self._buffer_rows
            if excess <= 0:
                return
            rows = [self._buffer.popleft() for _ in range(min(excess, len(self._buffer)))]
            try:
                self._spool.append(r.to_json() for r in rows)
            except OSError:
                self._buffer.extendleft(reversed(rows))  # keep them in memory after all
                log.exception("ledger writer: cannot write the spool; holding rows in memory")

    def _finish_closing(self) -> bool:
        """True when the thread may stop: all written, the DB failing, or time is up."""
        with self._state:
            if self._idle():
                return True
            if self._outage_since is None and time.monotonic() < self._close_deadline:
                self._retry_at = 0.0
                self._wake.set()
                return False
            # The spool is durable: put everything there instead of waiting for the DB.
            rows = [*self._inflight, *self._buffer]
            self._spool.append(r.to_json() for r in rows)
            for _ in range(len(rows) - len(self._inflight)):
                self._buffer.popleft()
            self._inflight = []
            self._state.notify_all()
            return True

    def _idle(self) -> bool:
        return not self._buffer and not self._inflight and not self._spool.needs_replay()

    def _rescue(self) -> None:
        """After close: move rows still in memory (late submits) to the spool."""
        try:
            rows: list[UsageRecord] = []
            while self._buffer:
                rows.append(self._buffer.popleft())
            if not self._thread.is_alive() and self._inflight:
                rows.extend(self._inflight)
                self._inflight = []
            self._spool.append(r.to_json() for r in rows)
            if self._closed:
                # Release the file (and its lock) so the next run can replay it.
                self._spool.close()
        except Exception:  # submit() must never raise
            log.exception("ledger writer: could not spool rows submitted after close")

    def _on_failure(self, exc: BaseException) -> None:
        if self._outage_since is None:
            self._outage_since = time.monotonic()
            log.warning(
                "ledger writer: database unavailable, buffering usage rows (%s)",
                driver_message(exc),
            )
        self._schedule_retry()

    def _schedule_retry(self) -> None:
        self._backoff = min(_MAX_BACKOFF, max(_FIRST_BACKOFF, self._backoff * 2))
        self._retry_at = time.monotonic() + self._backoff

    def _on_success(self) -> None:
        if self._outage_since is not None:
            log.warning(
                "ledger writer: database back after %.1f s; buffered rows written",
                time.monotonic() - self._outage_since,
            )
            self._outage_since = None
            self._spool.recheck_orphans()
        self._backoff = 0.0
        self._retry_at = 0.0


def _is_bad_data(exc: StatementError) -> bool:
    """True when the rows, not the database, are at fault (retrying cannot help)."""
    if isinstance(exc, IntegrityError | DataError):
        return True
    if isinstance(exc, ProgrammingError):
        # Raised by the driver itself (no SQLSTATE from a server): it could not bind a
        # value. A server-side one (e.g. a missing table) is retried until fixed.
        return getattr(exc.orig, "sqlstate", None) is None
    return not isinstance(exc, DBAPIError)  # a value that could not even be bound


__all__ = [
    "LedgerStats",
    "LedgerWriter",
    "SpentTokens",
    "UsageRecord",
    "UsageRow",
    "prune",
    "spent_tokens",
    "usage_report",
]
