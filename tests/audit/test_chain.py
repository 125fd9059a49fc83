"""Appending and verifying: an intact chain, and each kind of tampering named."""

from __future__ import annotations

import hashlib
import json
from datetime import UTC, datetime

import pytest
from sqlalchemy import select

from heshi.audit import GENESIS_HASH, AuditEntry, AuditKeyMissing, AuditLog, record_hash
from heshi.store.db import Database
from heshi.store.tables import audit_log
from tests.audit.helpers import delete_row, entry, filled, insert_forged, set_row


def test_append_links_records_and_verifies(database: Database) -> None:
    log = AuditLog(database)
    first = log.append(entry(1))
    second, third = log.append_many([entry(2), entry(3)])
    assert [first.seq, second.seq, third.seq] == [1, 2, 3]
    assert first.prev_hash == GENESIS_HASH
    assert second.prev_hash == first.hash and third.prev_hash == second.hash

    report = log.verify()
    assert report.intact, report.issues
    assert (report.records, report.first_seq, report.last_seq) == (3, 1, 3)
    assert report.head_hash == third.hash and report.anchor_seq is None
    assert "intact" in report.summary() and "完整" in report.summary()


def test_hash_is_sha256_of_canonical_json(database: Database) -> None:
    ts = datetime(2026, 12, 1, 8, 30, 0, 123456, tzinfo=UTC)
    record = AuditLog(database).append(entry(1, ts=ts))
    fields = {
        "seq": 1,
        "kind": "record",
        "ts": "2026-12-01T08:30:00.123456+00:00",
        "tenant": "acme",
        "key_id": "key_0123456789ab",
        "request_id": "req-1",
        "client_ip": "10.0.0.7",
        "input": "我的手机是138****8000，第1问",
        "output": "回答 1",
        "verdicts": [{"action": "flag", "category": "pii", "level": "low", "risk": "A8"}],
        "lexicon_version": "lex-2026.11",
        "policy_version": "policy-3",
        "model_version": "qwen3-8b-q4",
        "prev_hash": GENESIS_HASH,
    }
    canonical = json.dumps(fields, sort_keys=True, ensure_ascii=False, separators=(",", ":"))
    assert record.hash == hashlib.sha256(canonical.encode("utf-8")).hexdigest()
    # What was stored comes back exactly (times, JSON verdicts, Chinese text).
    [stored] = AuditLog(database).records()
    assert stored == record


def test_empty_log_is_intact(database: Database) -> None:
    report = AuditLog(database).verify()
    assert report.intact and report.first_seq is None
    assert "empty" in report.summary()


def test_edited_output_is_named(database: Database) -> None:
    log = filled(database, 5)
    set_row(database, 3, output="回答已被改写")
    report = log.verify()
    assert [(i.seq, i.kind) for i in report.issues] == [(3, "hash_mismatch")]
    assert "seq 3" in str(report.issues[0]) and "edited" in str(report.issues[0])


def test_edit_with_a_recomputed_hash_breaks_the_next_link(database: Database) -> None:
    log = filled(database, 5)
    [victim] = [r for r in log.records() if r.seq == 3]
    forged = victim.hashed_fields() | {"output": "改写"}

    set_row(database, 3, output="改写", hash=record_hash(forged))
    report = log.verify()  # the signature was over the old hash
    assert [(i.seq, i.kind) for i in report.issues] == [(3, "bad_signature"), (4, "broken_link")]


def test_inserted_record_is_named(database: Database) -> None:
    log = filled(database, 5)
    insert_forged(database, at=3)
    report = log.verify()
    forged, inserted = report.issues[:2]
    assert (forged.seq, forged.kind) == (3, "unsigned")  # written without the key
    assert (inserted.seq, inserted.kind) == (3, "inserted")
    assert "seq 4 links to seq 2" in str(inserted)
    # The renumbered originals no longer match their hashes or signatures (seq is in both).
    assert {(i.seq, i.kind) for i in report.issues[2:]} == {
        (n, kind) for n in (4, 5, 6) for kind in ("hash_mismatch", "bad_signature")
    }


def test_deleted_record_is_a_named_gap(database: Database) -> None:
    log = filled(database, 5)
    delete_row(database, 3)
    report = log.verify()
    assert [(i.seq, i.kind) for i in report.issues] == [(3, "gap")]
    assert "seq 3 missing" in str(report.issues[0])


def test_deleted_run_and_deleted_head_are_gaps(database: Database) -> None:
    log = filled(database, 6)
    delete_row(database, 1)
    delete_row(database, 4)
    delete_row(database, 5)
    report = log.verify()
    assert [(i.seq, i.kind) for i in report.issues] == [(2, "gap"), (4, "gap")]
    assert "seq 1–1 missing" in str(report.issues[0])
    assert "seq 4–5 missing" in str(report.issues[1])


def test_first_record_must_link_to_genesis(database: Database) -> None:
    log = filled(database, 2)
    set_row(database, 1, prev_hash="f" * 64)
    kinds = [(i.seq, i.kind) for i in log.verify().issues]
    assert kinds[0] == (1, "broken_link")


def test_verdicts_must_have_the_four_fields() -> None:
    with pytest.raises(ValueError, match="category, risk, level, action"):
        AuditEntry(tenant="t", request_id="r", verdicts=[{"category": "x"}])
    with pytest.raises(ValueError, match="naive"):
        AuditEntry(tenant="t", request_id="r", ts=datetime(2026, 1, 1))


def test_short_key_is_refused(database: Database) -> None:
    with pytest.raises(AuditKeyMissing, match="too short"):
        AuditLog(database, key=b"short").prune(1)


def test_append_keeps_caller_timestamps(database: Database) -> None:
    ts = datetime(2025, 1, 2, 3, 4, 5, tzinfo=UTC)
    AuditLog(database).append(entry(1, ts=ts))
    with database.read() as conn:
        assert conn.execute(select(audit_log.c.ts)).scalar_one() == ts
