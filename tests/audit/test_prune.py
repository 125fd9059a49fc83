"""Retention pruning behind signed checkpoints, and checkpoint tampering."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import pytest

from heshi.audit import AuditChainBroken, AuditKeyMissing, AuditLog
from heshi.audit.records import CHECKPOINT
from heshi.store.db import Database
from tests.audit.helpers import KEY, OTHER_KEY, delete_row, entry, set_row

NOW = datetime(2027, 6, 1, tzinfo=UTC)


def aged(db: Database, ages_in_days: list[int]) -> AuditLog:
    """A log whose records are ``ages_in_days`` old, in that (seq) order."""
    log = AuditLog(db, key=KEY)
    log.append_many([entry(n, ts=NOW - timedelta(days=d)) for n, d in enumerate(ages_in_days)])
    return log


def test_prune_writes_a_signed_checkpoint_and_the_rest_verifies(database: Database) -> None:
    log = aged(database, [400, 300, 200, 100, 10])
    old = {r.seq: r for r in log.records()}
    result = log.prune(180, now=NOW)
    assert (result.removed, result.checkpoint_seq) == (3, 3)
    assert result.cutoff == NOW - timedelta(days=180)

    rows = list(log.records())
    assert [(r.seq, r.kind) for r in rows] == [(3, CHECKPOINT), (4, "record"), (5, "record")]
    checkpoint = rows[0]
    assert checkpoint.hash == old[3].hash  # the hash of the last pruned record
    assert checkpoint.signature and checkpoint.ts == NOW
    assert rows[1].prev_hash == checkpoint.hash

    report = log.verify()
    assert report.intact, report.issues
    assert (report.anchor_seq, report.records, report.checkpoints) == (3, 2, 1)

    log.append(entry(9))  # the chain goes on after the checkpoint
    assert log.verify().intact
    assert log.prune(180, now=NOW).checkpoint_seq is None  # nothing more to do


def test_prune_default_is_180_days(database: Database) -> None:
    log = aged(database, [181, 179])
    assert log.retention_days == 180
    assert log.prune(now=NOW).removed == 1


def test_prune_only_removes_an_old_prefix(database: Database) -> None:
    # A young record (written with a late clock) keeps the older ones after it.
    log = aged(database, [400, 10, 400, 400])
    assert log.prune(180, now=NOW).removed == 1
    assert [r.seq for r in log.records()] == [1, 2, 3, 4]
    assert log.verify().intact


def test_prune_everything_then_append(database: Database) -> None:
    log = aged(database, [400, 300])
    assert log.prune(180, now=NOW).checkpoint_seq == 2
    assert [r.kind for r in log.records()] == [CHECKPOINT]
    assert log.verify().intact
    record = log.append(entry(3))
    assert record.seq == 3
    assert log.verify().intact


def test_repeated_and_chunked_prunes_stay_verifiable(database: Database) -> None:
    log = aged(database, [500, 450, 400, 350, 300, 250, 200, 100])
    first = log.prune(400, now=NOW)
    assert (first.removed, first.checkpoint_seq) == (2, 2)
    second = log.prune(180, now=NOW, chunk_rows=2)  # three transactions, checkpoints 4, 6, 7
    assert (second.removed, second.checkpoint_seq) == (5, 7)
    assert [r.seq for r in log.records()] == [7, 8]
    assert log.verify().intact


def test_tampered_checkpoint_signature_is_named(database: Database) -> None:
    log = aged(database, [400, 300, 10, 5])
    log.prune(180, now=NOW)
    set_row(database, 2, signature="0" * 64)
    report = log.verify()
    assert [(i.seq, i.kind) for i in report.issues] == [(2, "bad_signature")]
    assert "signature" in str(report.issues[0])


def test_moved_checkpoint_anchor_is_named(database: Database) -> None:
    log = aged(database, [400, 300, 10, 5])
    log.prune(180, now=NOW)
    set_row(database, 2, hash="a" * 64)
    assert [(i.seq, i.kind) for i in log.verify().issues] == [
        (2, "bad_signature"),
        (3, "broken_link"),
    ]


def test_checkpoint_under_another_key_is_named(database: Database) -> None:
    log = aged(database, [400, 10])
    log.prune(180, now=NOW)
    report = AuditLog(database, key=OTHER_KEY).verify()  # the checkpoint and the record
    assert [(i.seq, i.kind) for i in report.issues] == [(1, "bad_signature"), (2, "bad_signature")]


def test_deleted_checkpoint_is_a_gap(database: Database) -> None:
    log = aged(database, [400, 300, 10])
    log.prune(180, now=NOW)
    delete_row(database, 2)
    assert [(i.seq, i.kind) for i in log.verify().issues] == [(3, "gap")]


def test_checkpoint_needs_the_key(database: Database) -> None:
    aged(database, [400, 10]).prune(180, now=NOW)
    with pytest.raises(AuditKeyMissing, match="HESHI_AUDIT_KEY"):
        AuditLog(database).verify()
    with pytest.raises(AuditKeyMissing, match="HESHI_AUDIT_KEY"):
        AuditLog(database).prune(180, now=NOW)


def test_prune_refuses_to_sign_over_tampering(database: Database) -> None:
    log = aged(database, [400, 300, 10])
    set_row(database, 1, output="改写")
    with pytest.raises(AuditChainBroken, match="seq 1"):
        log.prune(180, now=NOW)
    assert len(list(log.records())) == 3  # nothing removed

    delete_row(database, 2)
    set_row(database, 1, output="回答 0")  # undo the edit; seq 2 is still missing
    with pytest.raises(AuditChainBroken, match="seq 2"):
        log.prune(180, now=NOW)


def test_prune_rejects_days_below_one(database: Database) -> None:
    with pytest.raises(ValueError, match="≥ 1"):
        AuditLog(database, key=KEY).prune(0)
