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


def test_a_running_writer_spools_at_close_when_the_database_is_away(
    database: Database, tmp_path: Path
) -> None:
    spool = tmp_path / "audit-spool.jsonl"
    log = AuditLog(database)
    writer = AuditWriter(log, flush_seconds=0.02, spool=spool)
    writer.start()
    with outage(database):
        for n in range(5):
            writer.submit(_entry(n))
        writer.close(timeout=0.5)
    assert len(spool.read_text(encoding="utf-8").splitlines()) == 5
    again = AuditWriter(log, flush_seconds=0.02, spool=spool)
    again.start()
    try:
        assert again.flush(20)
    finally:
        again.close()
    assert sorted(r.request_id for r in log.records(kinds=("record",))) == [
        f"req_{n:04d}" for n in range(5)
    ]


def test_spills_during_a_replay_are_kept_and_a_torn_line_is_skipped(
    database: Database, tmp_path: Path
) -> None:
    spool = tmp_path / "audit-spool.jsonl"
    log = AuditLog(database)
    earlier = AuditWriter(log, buffer_entries=1, spool=spool)  # never started
    for n in range(3):
        earlier.submit(_entry(n))  # 0 queued, 1 and 2 spilled
    earlier.close(timeout=0.1)  # 0 spilled too
    with spool.open("a", encoding="utf-8") as handle:
        handle.write('{"tenant": "acme", "request_id": "req_torn"')  # killed mid-write
    with outage(database):
        writer = AuditWriter(log, flush_seconds=0.02, buffer_entries=3, spool=spool)
        writer.start()  # replays 3 entries into a full queue
        for n in range(3, 6):
            writer.submit(_entry(n))  # spilled to a fresh spool while replaying
    try:
        assert writer.flush(20)
    finally:
        writer.close()
    restart = AuditWriter(log, flush_seconds=0.02, spool=spool)
    restart.start()
    try:
        assert restart.flush(20)
    finally:
        restart.close()
    ids = sorted(r.request_id for r in log.records(kinds=("record",)))
    assert ids == [f"req_{n:04d}" for n in range(6)]  # none lost, the torn line skipped
