"""LedgerWriter: batching, idempotency, outages, the spool, bad rows, shutdown."""

from __future__ import annotations

import logging
import time
from collections.abc import Iterator
from pathlib import Path

import pytest
from sqlalchemy import event

from heshi.store.db import Database
from heshi.store.ledger import LedgerWriter, UsageRecord
from heshi.store.spool import REJECTED_NAME
from tests.fakes.waiting import wait_until
from tests.store.databases import outage
from tests.store.records import ledger_count, ledger_ids, record


@pytest.fixture
def spool_dir(tmp_path: Path) -> Path:
    return tmp_path / "spool"


@pytest.fixture
def writer(database: Database, spool_dir: Path) -> Iterator[LedgerWriter]:
    w = LedgerWriter(
        database, flush_seconds=0.05, batch_rows=500, buffer_rows=10_000, spool_dir=spool_dir
    )
    w.start()
    yield w
    w.close()


def _commits(db: Database) -> list[int]:
    counter = [0]

    def on_commit(_conn: object) -> None:
        counter[0] += 1

    event.listen(db.engine, "commit", on_commit)
    return counter


def _spooled_lines(spool_dir: Path) -> int:
    return sum(len(p.read_text().splitlines()) for p in spool_dir.glob("ledger-spool-*.jsonl"))


def test_many_submits_become_few_transactions(database: Database, writer: LedgerWriter) -> None:
    commits = _commits(database)
    for n in range(1200):
        writer.submit(record(n))
    assert writer.flush(5)
    assert ledger_count(database) == 1200
    # Batches, not 1200 transactions (how many depends on how fast the rows arrive
    # relative to the 50 ms flush window, so only the order of magnitude is asserted).
    assert commits[0] <= 60
    assert writer.stats().written == 1200


def test_request_id_is_idempotent(database: Database, writer: LedgerWriter) -> None:
    writer.submit(record(1))
    writer.submit(record(1, prompt_tokens=999))  # a retry of the same request
    assert writer.flush(5)
    writer.submit(record(1))  # and again in a later batch
    writer.submit(record(2))
    assert writer.flush(5)
    assert ledger_ids(database) == ["req_000001", "req_000002"]


def test_outage_buffers_rows_and_writes_all_once_back(
    database: Database, writer: LedgerWriter, caplog: pytest.LogCaptureFixture
) -> None:
    for n in range(100):
        writer.submit(record(n))
    assert writer.flush(5)
    with outage(database), caplog.at_level(logging.WARNING, logger="heshi.store.ledger"):
        for n in range(100, 1300):
            writer.submit(record(n))
        assert not writer.flush(0.6)  # cannot finish while the database is away
        stats = writer.stats()
        assert not stats.healthy
        assert stats.buffered == 1200
    warnings = [r for r in caplog.records if "database unavailable" in r.message]
    assert len(warnings) == 1  # once per outage, not once per retry
    assert writer.flush(10)
    assert ledger_ids(database) == [f"req_{n:06d}" for n in range(1300)]
    assert writer.stats().healthy


def test_overflow_spills_to_disk_and_is_replayed(database: Database, spool_dir: Path) -> None:
    writer = LedgerWriter(
        database, flush_seconds=0.02, batch_rows=10, buffer_rows=25, spool_dir=spool_dir
    )
    writer.start()
    try:
        with outage(database):
            for n in range(200):
                writer.submit(record(n))
            wait_until(
                lambda: writer.stats().buffered <= 25,
                timeout=5,
                interval=0.01,
                message=writer.stats,
            )
            assert _spooled_lines(spool_dir) >= 175  # fsync'd before leaving memory
            assert writer.stats().spooled >= 175
        assert writer.flush(10)
        assert ledger_ids(database) == [f"req_{n:06d}" for n in range(200)]
        assert _spooled_lines(spool_dir) == 0
        assert writer.stats().spooled == 0
    finally:
        writer.close()
    assert list(spool_dir.glob("ledger-spool-*.jsonl")) == []


def test_shutdown_during_outage_spools_everything_for_the_next_start(
    database: Database, spool_dir: Path
) -> None:
    first = LedgerWriter(
        database, flush_seconds=0.02, batch_rows=50, buffer_rows=10_000, spool_dir=spool_dir
    )
    first.start()
    with outage(database):
        for n in range(120):
            first.submit(record(n))
        started = time.monotonic()
        first.close(timeout=10)
        assert time.monotonic() - started < 8  # does not wait out the 10 s timeout
        first.submit(record(120))  # a straggler after close is spooled too
        assert _spooled_lines(spool_dir) == 121
    assert ledger_count(database) == 0

    second = LedgerWriter(
        database, flush_seconds=0.02, batch_rows=50, buffer_rows=10_000, spool_dir=spool_dir
    )
    second.start()
    try:
        assert second.flush(10)
    finally:
        second.close()
    assert ledger_ids(database) == [f"req_{n:06d}" for n in range(121)]
    assert list(spool_dir.glob("ledger-spool-*.jsonl")) == []


def test_replay_after_partial_write_adds_no_duplicates(database: Database, spool_dir: Path) -> None:
    first = LedgerWriter(
        database, flush_seconds=0.02, batch_rows=50, buffer_rows=10_000, spool_dir=spool_dir
    )
    with outage(database):  # never started: close() spools what it holds
        for n in range(60):
            first.submit(record(n))
        first.close()
    second = LedgerWriter(
        database, flush_seconds=0.02, batch_rows=50, buffer_rows=10_000, spool_dir=spool_dir
    )
    for n in range(30):  # half of them already arrived another way
        second.submit(record(n))
    second.start()
    try:
        assert second.flush(10)
    finally:
        second.close()
    assert ledger_ids(database) == [f"req_{n:06d}" for n in range(60)]


def test_a_row_the_database_refuses_is_set_aside_not_blocking_others(
    database: Database, writer: LedgerWriter, spool_dir: Path
) -> None:
    bad = record(5, model=None)  # NOT NULL violation: retrying can never help
    for n in range(10):
        writer.submit(bad if n == 5 else record(n))
    assert writer.flush(5)
    assert ledger_ids(database) == [f"req_{n:06d}" for n in range(10) if n != 5]
    assert writer.stats().rejected == 1
    rejected = (spool_dir / REJECTED_NAME).read_text().splitlines()
    assert len(rejected) == 1 and "req_000005" in rejected[0]


def test_a_value_the_driver_cannot_bind_is_set_aside_not_retried(
    database: Database, writer: LedgerWriter, spool_dir: Path
) -> None:
    unbindable = record(3, route={"not": "text"})  # neither driver can bind a dict to TEXT
    for n in range(6):
        writer.submit(unbindable if n == 3 else record(n))
    assert writer.flush(5)
    assert ledger_ids(database) == [f"req_{n:06d}" for n in range(6) if n != 3]
    assert writer.stats().rejected == 1 and writer.stats().healthy


def test_naive_timestamp_is_refused_when_the_record_is_made() -> None:
    with pytest.raises(ValueError, match="timezone-aware"):
        record(1, ts=record(1).ts.replace(tzinfo=None))


def test_record_json_round_trip() -> None:
    original = record(7, ttft_ms=12, key_id=None, route="auto→large (cues: 证明)")
    assert UsageRecord.from_json(original.to_json()) == original
