"""``AuditLog``: append, verify and prune the hash-chained audit log in SQL.

Appending reads the tail and inserts at ``tail + 1`` in one transaction. Within a process
a lock per ``Database`` orders writers; across processes (gateway replicas) the primary
key on ``seq`` lets only one writer take a position, and the other retries on the new
tail. SQLite's ``BEGIN IMMEDIATE`` already serialises whole transactions.
"""

from __future__ import annotations

import logging
import random
import threading
import time
import weakref
from collections.abc import Callable, Generator, Sequence
from contextlib import closing
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any, TypeVar

from sqlalchemy import Connection, func, insert, select
from sqlalchemy.exc import IntegrityError

from heshi.audit.chain import ChainChecker, VerifyReport
from heshi.audit.export import ExportFormat, export_lines
from heshi.audit.head import Head, HeadInvalid, read_head, store_identity, write_head
from heshi.audit.prune import PRUNE_CHUNK_ROWS, PruneResult, prune_before
from heshi.audit.records import (
    CHECKPOINT,
    GENESIS_HASH,
    RECORD,
    AuditEntry,
    AuditRecord,
    checked_key,
    new_record,
)
from heshi.store.db import Database
from heshi.store.tables import audit_log

DEFAULT_RETENTION_DAYS = 180  # Cybersecurity Law art. 21: network logs kept ≥ 6 months
READ_BATCH_ROWS = 1000
MAX_APPEND_RETRIES = 50

T = TypeVar("T")
log = logging.getLogger("heshi.audit")
_locks: weakref.WeakKeyDictionary[Database, threading.Lock] = weakref.WeakKeyDictionary()
_locks_guard = threading.Lock()


class AuditLog:
    """The audit log in ``db``.

    ``key`` (≥ 32 bytes) signs every record appended and every checkpoint pruning
    writes, and checks them all when verifying. ``head``, a file outside the database
    (:mod:`heshi.audit.head`), notes the newest record appended — with the key only —
    so that ``verify`` finds newest records deleted.
    """

    def __init__(
        self,
        db: Database,
        *,
        key: bytes | str | None = None,
        head: Path | None = None,
        retention_days: int = DEFAULT_RETENTION_DAYS,
    ) -> None:
        self.db = db
        self._signing = (
            None if key is None else checked_key(key, zh="签名审计记录", en="signing audit records")
        )
        self.head = head
        self.retention_days = retention_days
        self._head_stuck_logged = False  # the head-stuck alarm, once per log
        self._store = store_identity(db.url)  # named in the head file, for people
        with _locks_guard:
            self._lock = _locks.setdefault(db, threading.Lock())

    @property
    def keyed(self) -> bool:
        """Whether this log signs and checks signatures (it was given the key)."""
        return self._signing is not None

    def append(self, entry: AuditEntry) -> AuditRecord:
        """Add one record at the end of the chain; returns it with its seq and hash."""
        return self.append_many([entry])[0]

    def append_many(self, entries: Sequence[AuditEntry]) -> list[AuditRecord]:
        """Add ``entries`` in order, in one transaction (how a batching writer flushes).

        Raises ``StoreUnavailable`` when the database is down or the retries run out.
        """
        if not entries:
            return []
        return self._in_chain(lambda conn: None, lambda _: entries)[1]

    def append_with(
        self, change: Callable[[Connection], T], entry_of: Callable[[T], AuditEntry]
    ) -> T:
        """Make ``change`` and append the record ``entry_of(its result)`` in one
        transaction: the change is saved only with its record, never without (the admin
        service's guarantee)."""
        return self._in_chain(change, lambda result: [entry_of(result)])[0]

    def _in_chain(
        self,
        change: Callable[[Connection], T],
        entries_of: Callable[[T], Sequence[AuditEntry]],
    ) -> tuple[T, list[AuditRecord]]:
        """``change`` and the records after it in one transaction, retried whole when
        another writer took the chain's next seq."""
        with self._lock, self.db.outage_as_unavailable():
            known = self._known_head()  # read once per batch, outside the transaction
            attempt = 0
            while True:
                try:
                    with self.db.begin(bounded=True) as conn:
                        holds = self._head_still_holds(conn, known)
                        result = change(conn)
                        records = self._append(conn, entries_of(result))
                    self._note_head(Head(records[-1].seq, records[-1].hash), holds)
                    return result, records
                except IntegrityError as exc:
                    attempt += 1
                    if not _is_unique_violation(exc) or attempt > MAX_APPEND_RETRIES:
                        raise
                    # Another process took this seq; back off a little and read the new tail.
                    time.sleep(random.uniform(0, 0.002 * min(attempt, 10)))

    def note_tail(self) -> None:
        """Note the log's newest record (or its empty start) in the head file: a gateway
        does it when it starts, so that from then on a missing file means a deleted one."""
        if self.head is None or self._signing is None:
            return
        with self._lock, self.db.outage_as_unavailable():
            known = self._known_head()
            with self.db.read() as conn:
                tail = self._tail(conn)
                holds = self._head_still_holds(conn, known)
            self._note_head(tail, holds)

    def rehead(self) -> tuple[Head, Path | None]:
        """Start the head file again at the log's newest record, whatever the old file
        names — for a database replaced on purpose, which only an administrator can tell
        from a truncated one (``heshi audit rehead``). The old file is kept, renamed
        ``<name>.<UTC time>.old``; returns the new head and where the old file went."""
        if self.head is None or self._signing is None:
            raise ValueError("rehead needs a head file and the audit key")
        kept = None
        with self._lock, self.db.outage_as_unavailable():
            if self.head.exists():
                stamp = datetime.now(UTC).strftime("%Y%m%dT%H%M%SZ")
                kept = self.head.with_name(f"{self.head.name}.{stamp}.old")
                self.head.rename(kept)
            with self.db.read() as conn:
                start = self._tail(conn)
            write_head(self.head, self._signing, start, store=self._store)
        return start, kept

    @staticmethod
    def _tail(conn: Connection) -> Head:
        """The newest record's seq and hash (the genesis when the log is empty)."""
        c = audit_log.c
        tail = conn.execute(select(c.seq, c.hash).order_by(c.seq.desc()).limit(1)).first()
        return Head(int(tail.seq), str(tail.hash)) if tail else Head(0, GENESIS_HASH)

    def _known_head(self) -> Head | None:
        """What the head file names (``None``: no file, or no head kept); ``_UNREADABLE``
        when it cannot be read or its signature does not verify."""
        if self.head is None or self._signing is None:
            return None
        try:
            return read_head(self.head, self._signing)
        except HeadInvalid:
            return _UNREADABLE

    def _head_still_holds(self, conn: Connection, known: Head | None) -> bool:
        """Whether the database still holds the record the head file names, as it was —
        and, when there is no head file, whether no signed record exists (none was
        noted yet). When not, the head must not move on: moving it would erase the
        evidence of the deletion ``verify`` reports."""
        if self.head is None or self._signing is None:
            return True
        c = audit_log.c
        if known is _UNREADABLE:
            return False
        if known is None:
            signed = select(c.seq).where(c.kind == RECORD, c.signature.is_not(None)).limit(1)
            return conn.execute(signed).first() is None
        if known.seq == 0:
            return True
        stored = conn.execute(select(c.hash).where(c.seq == known.seq)).scalar_one_or_none()
        return stored == known.hash or (stored is None and self._pruned_past(conn, known.seq))

    @staticmethod
    def _pruned_past(conn: Connection, seq: int) -> bool:
        """Whether ``seq`` lies before the log's first row (removed by pruning)."""
        first = conn.execute(select(func.min(audit_log.c.seq))).scalar()
        return first is not None and int(first) > seq

    def _note_head(self, head: Head, holds: bool) -> None:
        """The head file moves to ``head`` — unless the database lost what the file
        names (``holds`` false: then it stays, and the error is logged). Never raises:
        the records are committed already."""
        if self.head is None or self._signing is None:
            return
        if not holds:
            if not self._head_stuck_logged:  # every batch after would repeat it
                self._head_stuck_logged = True
                log.critical(
                    "审计链头文件 %s 所指记录已不在数据库中，链头不再前移；若是有意换了新数据库，"
                    "请运行 heshi audit rehead --yes / the audit head file %s names a record "
                    "the database no longer holds: the head is not moved (heshi audit verify). "
                    "If you replaced the database on purpose, run heshi audit rehead --yes",
                    self.head, self.head,
                )  # fmt: skip
            return
        try:
            write_head(self.head, self._signing, head, store=self._store)
        except Exception as exc:
            log.error("无法写入审计链头文件 / cannot write the audit head file %s: %s",
                      self.head, exc)  # fmt: skip

    def _append(self, conn: Connection, entries: Sequence[AuditEntry]) -> list[AuditRecord]:
        c = audit_log.c
        tail = conn.execute(select(c.seq, c.hash).order_by(c.seq.desc()).limit(1)).first()
        seq, prev = (int(tail.seq), str(tail.hash)) if tail else (0, GENESIS_HASH)
        now = datetime.now(UTC)
        records = []
        for entry in entries:
            seq += 1
            record = new_record(entry, seq=seq, prev_hash=prev, now=now, key=self._signing)
            records.append(record)
            prev = record.hash
        conn.execute(insert(audit_log), [_row(r) for r in records])
        return records

    def records(
        self,
        *,
        since: datetime | None = None,
        until: datetime | None = None,
        kinds: Sequence[str] = (RECORD, CHECKPOINT),
    ) -> Generator[AuditRecord]:
        """Rows in ``seq`` order from one consistent snapshot, fetched in batches.

        ``since``/``until`` filter on ``ts`` (``[since, until)``).
        """
        c = audit_log.c
        query = select(audit_log).where(c.kind.in_(list(kinds))).order_by(c.seq)
        if since is not None:
            query = query.where(c.ts >= since)
        if until is not None:
            query = query.where(c.ts < until)
        with (
            self.db.outage_as_unavailable(),
            self.db.read() as conn,
            conn.execution_options(yield_per=READ_BATCH_ROWS).execute(query) as result,
        ):
            for row in result.mappings():
                yield AuditRecord.from_row(row)

    def page(
        self, *, limit: int, before_seq: int | None = None, tenant: str | None = None
    ) -> list[AuditRecord]:
        """Up to ``limit`` records (not checkpoints), newest first, below ``before_seq``,
        of ``tenant`` when given: what a log viewer shows a page at a time."""
        c = audit_log.c
        query = select(audit_log).where(c.kind == RECORD).order_by(c.seq.desc()).limit(limit)
        if before_seq is not None:
            query = query.where(c.seq < before_seq)
        if tenant is not None:
            query = query.where(c.tenant == tenant)
        with self.db.outage_as_unavailable(), self.db.read() as conn:
            return [AuditRecord.from_row(row) for row in conn.execute(query).mappings()]

    def export(
        self,
        since: datetime | None = None,
        until: datetime | None = None,
        fmt: ExportFormat = "jsonl",
    ) -> Generator[str]:
        """Records (not checkpoints) with ``since <= ts < until`` as JSONL or CSV lines."""
        return export_lines(self.records(since=since, until=until, kinds=(RECORD,)), fmt)

    def verify(self) -> VerifyReport:
        """Check the whole chain; the report names every edited, inserted, forged or
        missing record — with the key, every signature too, and with a head file the
        newest records.

        Raises ``AuditKeyMissing`` when the log holds signed rows and no key was given
        (they cannot be trusted unchecked).
        """
        checker = ChainChecker(self._signing)
        head: Head | None = None
        problem: str | None = None  # why the head file cannot be checked
        if self.head is not None and self._signing is not None:
            try:
                head = read_head(self.head, self._signing)
            except HeadInvalid as exc:
                problem = str(exc)
        at_head: str | None = None
        with closing(self.records()) as records:  # an error must not leave a cursor open
            for record in records:
                checker.feed(record)
                if head is not None and record.seq == head.seq:
                    at_head = record.hash
        report = checker.report
        if problem is not None:
            checker.issue(report.last_seq or 0, "bad_head", problem)
        elif head is not None:
            _check_head(checker, head, at_head)
        elif self.head is not None and self._signing is not None and report.signed_records:
            # signed records exist, so a gateway with this key noted one: the file is gone
            checker.issue(report.last_seq or 0, "bad_head", f"{self.head}: missing / 缺失")
        return report

    def prune(
        self,
        days: int | None = None,
        *,
        now: datetime | None = None,
        chunk_rows: int = PRUNE_CHUNK_ROWS,
    ) -> PruneResult:
        """Remove records older than ``days`` (default: the retention) from the head.

        Only a prefix is removed: a record younger than the cutoff keeps everything after
        it. Each chunk checks the rows it removes (refusing, with ``AuditChainBroken``,
        to sign over tampering), deletes them and writes a signed checkpoint in place of
        the last one, in one transaction. Requires the key (``AuditKeyMissing``).
        """
        key = checked_key(self._signing, zh="剪除审计日志", en="pruning the audit log")
        days = self.retention_days if days is None else days
        if days < 1:
            raise ValueError("days must be ≥ 1")
        now = now or datetime.now(UTC)
        cutoff = now - timedelta(days=days)
        return prune_before(self.db, key, cutoff, now, chunk_rows)


_UNREADABLE = Head(-1, "")  # a head file that cannot be read or does not verify


def _check_head(checker: ChainChecker, head: Head, at_head: str | None) -> None:
    """The record the head file names must still be there, unchanged."""
    report = checker.report
    if head.seq == 0:  # noted before anything was written: nothing to vouch for
        return
    if report.last_seq is None or report.last_seq < head.seq:
        ends = "empty" if report.last_seq is None else f"ends at seq {report.last_seq}"
        checker.issue(head.seq, "truncated", f"the head file names seq {head.seq}; the log {ends}")
    elif at_head is not None and at_head != head.hash:
        checker.issue(head.seq, "head_mismatch", f"hash {at_head[:12]}…, head {head.hash[:12]}…")


def _row(record: AuditRecord) -> dict[str, Any]:
    row = record.as_json()
    row["ts"] = record.ts
    return row


def _is_unique_violation(exc: IntegrityError) -> bool:
    sqlstate = getattr(exc.orig, "sqlstate", None)
    return sqlstate == "23505" or "UNIQUE constraint failed" in str(exc.orig)
