"""AuditWriter: batches off the request path, rides out an outage, bounded memory."""

from __future__ import annotations

from pathlib import Path

from heshi.audit import AuditEntry, AuditLog
from heshi.audit.writer import AuditWriter
from heshi.store.db import Database
from tests.store.databases import outage


def _entry(n: int) -> AuditEntry:
    return AuditEntry(tenant="acme", request_id=f"req_{n:04d}", input="hi", output="ok")


def test_entries_survive_an_outage_and_are_written_in_order(database: Database) -> None:
    log = AuditLog(database)
    writer = AuditWriter(log, flush_seconds=0.02, batch_entries=50)
    writer.start()
    try:
        for n in range(30):
            writer.submit(_entry(n))
        assert writer.flush(10)
        with outage(database):
            for n in range(30, 80):
                writer.submit(_entry(n))
            assert not writer.flush(0.5)  # cannot be written while the database is away
            assert writer.stats().queued == 50
        assert writer.flush(20)
    finally:
        writer.close()
    ids = [r.request_id for r in log.records(kinds=("record",))]
    assert ids == [f"req_{n:04d}" for n in range(80)]
    assert log.verify().intact
    assert writer.stats().written == 80


def test_a_full_queue_spills_to_the_spool_and_the_next_start_writes_it(
    database: Database, tmp_path: Path
) -> None:
    spool = tmp_path / "audit-spool.jsonl"
    log = AuditLog(database)
    first = AuditWriter(log, buffer_entries=5, spool=spool)  # not started: nothing drains
    for n in range(8):
        first.submit(_entry(n))
    assert (first.stats().queued, first.stats().dropped) == (5, 0)
    assert len(spool.read_text(encoding="utf-8").splitlines()) == 3  # 5, 6, 7
    with outage(database):
        first.close(timeout=0.3)  # the database is away: the queue goes to the spool too
    assert len(spool.read_text(encoding="utf-8").splitlines()) == 8
    second = AuditWriter(log, flush_seconds=0.02, spool=spool)
    second.start()
    try:
        assert second.flush(20)
    finally:
        second.close()
    assert not spool.exists()
    ids = sorted(r.request_id for r in log.records(kinds=("record",)))
    assert ids == [f"req_{n:04d}" for n in range(8)]  # none lost, none twice


def test_without_a_spool_a_full_queue_counts_what_it_drops(database: Database) -> None:
    writer = AuditWriter(AuditLog(database), buffer_entries=5)
    for n in range(8):
        writer.submit(_entry(n))
    assert (writer.stats().queued, writer.stats().dropped) == (5, 3)
