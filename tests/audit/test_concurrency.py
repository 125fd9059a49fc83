"""Concurrent writers: one process's threads (the lock) and separate engines (as processes)."""

from __future__ import annotations

import threading
from collections.abc import Callable
from datetime import UTC, datetime, timedelta

from heshi.audit import AuditLog
from heshi.store.db import Database
from tests.audit.helpers import KEY, entry


def run_threads(count: int, work: Callable[[int], None]) -> None:
    errors: list[BaseException] = []
    start = threading.Barrier(count)

    def target(n: int) -> None:
        try:
            start.wait()
            work(n)
        except BaseException as exc:
            errors.append(exc)

    threads = [threading.Thread(target=target, args=(n,)) for n in range(count)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(timeout=120)
    assert not errors, errors


def assert_gapless(db: Database, expected: int) -> None:
    log = AuditLog(db, key=KEY)
    report = log.verify()
    assert report.intact, report.issues[:5]
    rows = [r for r in log.records() if r.kind == "record"]
    assert len(rows) == expected
    assert len({r.request_id for r in rows}) == expected  # nothing lost, nothing doubled


def test_threads_sharing_one_database(database: Database) -> None:
    log = AuditLog(database, key=KEY)

    def work(n: int) -> None:
        for i in range(20):
            log.append(entry(n * 100 + i))

    run_threads(6, work)
    assert_gapless(database, 120)
    assert [r.seq for r in AuditLog(database).records()] == list(range(1, 121))


def test_separate_engines_like_separate_processes(database: Database) -> None:
    # Each writer has its own Database (engine and lock), as gateway replicas would:
    # only the database's primary key on seq keeps them apart.
    url = database.url.render_as_string(hide_password=False)
    writers = [Database(url) for _ in range(4)]
    try:

        def work(n: int) -> None:
            log = AuditLog(writers[n], key=KEY)
            for i in range(15):
                if i % 5 == 0:
                    log.append_many([entry(n * 100 + i + j) for j in range(50, 53)])
                log.append(entry(n * 100 + i))

        run_threads(4, work)
    finally:
        for db in writers:
            db.dispose()
    assert_gapless(database, 4 * (15 + 9))


def test_appends_while_pruning(database: Database) -> None:
    old = datetime.now(UTC) - timedelta(days=400)
    AuditLog(database, key=KEY).append_many([entry(1000 + i, ts=old) for i in range(40)])
    url = database.url.render_as_string(hide_password=False)
    other = Database(url)
    try:

        def work(n: int) -> None:
            if n == 0:
                log = AuditLog(other, key=KEY)
                for _ in range(3):
                    log.prune(180, chunk_rows=7)
            else:
                log = AuditLog(database, key=KEY)
                for i in range(15):
                    log.append(entry(n * 100 + i))

        run_threads(3, work)
        AuditLog(other, key=KEY).prune(180)
    finally:
        other.dispose()
    log = AuditLog(database, key=KEY)
    report = log.verify()
    assert report.intact, report.issues[:5]
    assert report.anchor_seq == 40  # the last old record, whatever the interleaving
    assert report.records == 30
