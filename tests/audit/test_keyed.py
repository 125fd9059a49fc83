"""The keyed chain: an attacker with SQL access but without the audit key can neither
rewrite, append nor truncate without ``verify`` naming it."""

from __future__ import annotations

import json
import os
import stat
from dataclasses import replace
from datetime import UTC, datetime
from pathlib import Path

import pytest
from sqlalchemy import insert, select, update

from heshi.audit import AuditKeyMissing, AuditLog
from heshi.audit.head import KEY_ENV, Head, audit_key, read_head, write_head
from heshi.audit.records import new_record, record_hash
from heshi.store.db import Database
from heshi.store.tables import audit_log
from tests.audit.helpers import KEY, OTHER_KEY, delete_row, entry, filled


def rewrite_and_rehash(db: Database, seq: int, **values: str) -> None:
    """Change record ``seq`` and recompute its hash and every later one (keeping their
    signatures: the attacker has no key to make new ones)."""
    c = audit_log.c
    with db.begin() as conn:
        rows = conn.execute(select(audit_log).where(c.seq >= seq).order_by(c.seq)).mappings()
        prev = conn.execute(select(c.hash).where(c.seq == seq - 1)).scalar_one()
        for row in list(rows):
            fields = {k: row[k] for k in row if k not in {"hash", "signature"}}
            fields.update(values if row["seq"] == seq else {})
            fields["prev_hash"] = prev
            fields["ts"] = row["ts"].astimezone(UTC).isoformat(timespec="microseconds")
            if fields["produce_id"] is None:
                del fields["produce_id"]
            digest = record_hash(fields)
            changes = {**(values if row["seq"] == seq else {}), "prev_hash": prev, "hash": digest}
            conn.execute(update(audit_log).where(c.seq == row["seq"]).values(**changes))
            prev = digest


def test_a_record_rewritten_with_every_later_hash_recomputed_is_caught(
    database: Database,
) -> None:
    log = filled(database, 6)
    rewrite_and_rehash(database, 3, output="从未说过的话")
    report = AuditLog(database, key=KEY).verify()
    assert {i.kind for i in report.issues} == {"bad_signature"}
    assert [i.seq for i in report.issues] == [3, 4, 5, 6]
    # Without the key the chain of hashes alone looks whole: that was the hole.
    assert not [i for i in report.issues if i.kind in {"hash_mismatch", "broken_link"}]
    assert log.verify().issue_count == 4


def test_appended_forgeries_are_caught_signed_or_not(database: Database) -> None:
    filled(database, 3)
    c = audit_log.c
    with database.begin() as conn:
        tail = conn.execute(select(c.hash).where(c.seq == 3)).scalar_one()
        unsigned = new_record(entry(98), seq=4, prev_hash=tail, now=datetime.now(UTC))
        wrong = new_record(entry(99), seq=5, prev_hash=unsigned.hash, now=datetime.now(UTC),
                           key=OTHER_KEY)  # fmt: skip
        for record in (unsigned, wrong):
            row = record.as_json() | {"ts": record.ts}
            conn.execute(insert(audit_log).values(**row))
    report = AuditLog(database, key=KEY).verify()
    assert [(i.seq, i.kind) for i in report.issues] == [(4, "unsigned"), (5, "bad_signature")]


def test_deleting_the_newest_records_is_caught_by_the_head_file(
    database: Database, tmp_path: Path
) -> None:
    head = tmp_path / "audit-head.json"
    filled(database, 5, head=head)
    noted = read_head(head, KEY)
    assert noted is not None and noted.seq == 5
    assert AuditLog(database, key=KEY, head=head).verify().intact

    delete_row(database, 5)
    delete_row(database, 4)
    report = AuditLog(database, key=KEY, head=head).verify()
    assert [(i.seq, i.kind) for i in report.issues] == [(5, "truncated")]
    assert "the log ends at seq 3" in str(report.issues[0])
    # Without the head file the shorter chain is whole: the file is what catches it.
    assert AuditLog(database, key=KEY).verify().intact


def test_a_head_file_that_is_missing_forged_or_contradicted_is_named(
    database: Database, tmp_path: Path
) -> None:
    head = tmp_path / "audit-head.json"
    filled(database, 3, head=head)
    body = json.loads(head.read_text())

    head.write_text(json.dumps(body | {"seq": 2}))  # moved back without the key
    [issue] = AuditLog(database, key=KEY, head=head).verify().issues
    assert issue.kind == "bad_head" and "signature" in str(issue)

    head.unlink()
    [issue] = AuditLog(database, key=KEY, head=head).verify().issues
    assert issue.kind == "bad_head" and "missing" in str(issue)

    # a signed head whose record was replaced: the record at seq 4 is another one now
    head.write_text(json.dumps(body))
    AuditLog(database, key=KEY, head=head).append(entry(4))
    with database.begin() as conn:
        conn.execute(update(audit_log).where(audit_log.c.seq == 4).values(hash="f" * 64))
    kinds = [i.kind for i in AuditLog(database, key=KEY, head=head).verify().issues]
    assert "head_mismatch" in kinds


def test_the_head_file_only_moves_forward(database: Database, tmp_path: Path) -> None:
    head = tmp_path / "audit-head.json"
    filled(database, 4, head=head)
    newest = read_head(head, KEY)
    write_head(head, KEY, Head(2, "0" * 64))  # a slower replica noting an older record
    assert newest is not None and newest.seq == 4 and read_head(head, KEY) == newest


def test_signed_records_need_the_key_to_be_checked(database: Database) -> None:
    filled(database, 2)
    with pytest.raises(AuditKeyMissing, match="HESHI_AUDIT_KEY"):
        AuditLog(database).verify()


def test_produce_id_is_kept_hashed_and_exported(database: Database) -> None:
    log = AuditLog(database, key=KEY)
    plain = log.append(entry(1))
    labelled = log.append(replace(entry(2), produce_id="0190A1B2C3D4E5F60718293A4B5C6D7E"))
    assert plain.produce_id is None and "produce_id" not in plain.hashed_fields()
    assert labelled.hashed_fields()["produce_id"] == "0190A1B2C3D4E5F60718293A4B5C6D7E"
    [_, stored] = log.records()
    assert stored.produce_id == labelled.produce_id
    [line] = [json.loads(x) for x in log.export() if "req-2" in x]
    assert line["produce_id"] == labelled.produce_id
    with database.begin() as conn:  # stripping it is an edit like any other
        conn.execute(update(audit_log).where(audit_log.c.seq == 2).values(produce_id=None))
    assert [(i.seq, i.kind) for i in log.verify().issues] == [(2, "hash_mismatch")]


def test_the_key_comes_from_the_environment_or_a_private_file_in_home(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.delenv(KEY_ENV, raising=False)
    home = tmp_path / "home"
    assert audit_key(home) is None  # reading never creates one
    assert not home.exists()
    made = audit_key(home, create=True)
    assert made is not None and len(made) == 64
    assert stat.S_IMODE(os.stat(home / "audit.key").st_mode) == 0o600
    assert audit_key(home, create=True) == made == audit_key(home)

    monkeypatch.setenv(KEY_ENV, "s" * 40)
    assert audit_key(home) == b"s" * 40
    monkeypatch.setenv(KEY_ENV, "short")
    with pytest.raises(AuditKeyMissing, match="32"):
        audit_key(home)


def test_an_upgraded_log_keeps_its_unsigned_records_and_signs_from_then_on(
    database: Database,
) -> None:
    old = AuditLog(database)  # Heshi before records were signed
    for n in range(1, 4):
        old.append(entry(n))
    keyed = AuditLog(database, key=KEY)
    keyed.append(entry(4))
    report = keyed.verify()
    assert report.intact and report.unsigned_before_keying == 3
    assert "3 written before records were signed" in report.summary()

    old.append(entry(5))  # someone without the key appends after signing began
    assert [(i.seq, i.kind) for i in keyed.verify().issues] == [(5, "unsigned")]
    delete_row(database, 5)
    rewrite_and_rehash(database, 2, output="改写的旧记录")  # the old part rewritten
    assert [(i.seq, i.kind) for i in keyed.verify().issues] == [(4, "bad_signature")]


def test_the_head_noted_at_start_makes_a_missing_file_mean_a_deleted_one(
    database: Database, tmp_path: Path
) -> None:
    head = tmp_path / "audit-head.json"
    log = AuditLog(database, key=KEY, head=head)
    log.note_tail()  # a gateway starting on an empty log
    assert read_head(head, KEY) == Head(0, "0" * 64)
    assert log.verify().intact
    log.append(entry(1))
    log.append(entry(2))
    log.note_tail()  # the next start: the file only moves forward
    noted = read_head(head, KEY)
    assert noted is not None and noted.seq == 2


def test_later_writes_do_not_erase_the_evidence_of_a_deletion(
    database: Database, tmp_path: Path
) -> None:
    head = tmp_path / "audit-head.json"
    log = filled(database, 10, head=head)
    for seq in (10, 9, 8):
        delete_row(database, seq)
    for n in range(11, 15):  # the gateway goes on writing
        log.append(entry(n))
    report = AuditLog(database, key=KEY, head=head).verify()
    assert "head_mismatch" in [i.kind for i in report.issues]  # seq 10 is another record now
    noted = read_head(head, KEY)
    assert noted is not None and noted.seq == 10  # the head did not move past the loss

    head.unlink()  # deleted as well (no key needed for that)
    log.append(entry(15))
    assert not head.exists()  # not made again over signed records
    assert "bad_head" in [i.kind for i in AuditLog(database, key=KEY, head=head).verify().issues]


def test_a_head_file_holding_garbage_loses_no_record(database: Database, tmp_path: Path) -> None:
    head = tmp_path / "audit-head.json"
    log = filled(database, 2, head=head)
    head.write_text('{"seq": 1e999, "hash": "x", "signature": "y"}')  # int() overflows
    log.append(entry(3))  # committed; the head is left alone, nothing raised
    assert [r.seq for r in log.records()] == [1, 2, 3]
