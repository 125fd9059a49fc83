"""One head file per database: work against another database never touches this one's."""

from __future__ import annotations

import json
import logging
from pathlib import Path

import pytest

from heshi.audit import AuditLog
from heshi.audit.head import HEAD_FILE, HEADS_DIR, head_path, read_head, store_identity
from heshi.store.db import Database
from tests.audit.helpers import KEY, delete_row, entry


def test_the_home_database_keeps_the_documented_file(tmp_path: Path) -> None:
    home = tmp_path / "home"
    assert head_path(home, f"sqlite:///{home / 'heshi.db'}") == home / HEAD_FILE
    other = head_path(home, f"sqlite:///{tmp_path / 'eval.db'}")
    assert other.parent == home / HEADS_DIR and other.suffix == ".json"
    assert other != head_path(home, f"sqlite:///{tmp_path / 'eval2.db'}")


def test_one_database_spelled_two_ways_has_one_head(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    home = tmp_path / "home"
    monkeypatch.chdir(tmp_path)
    assert head_path(home, "sqlite:///x.db") == head_path(home, f"sqlite:///{tmp_path}/x.db")
    plain = "postgresql://heshi:one@127.0.0.1:5432/heshi"
    assert head_path(home, plain) == head_path(
        home, "postgresql+psycopg://heshi:two@127.0.0.1:5432/heshi"
    )  # the driver and the password are not the database
    assert head_path(home, plain) != head_path(home, "postgresql://heshi@127.0.0.1:5432/other")
    assert "one" not in store_identity(plain)


def test_another_database_neither_moves_nor_poisons_this_ones_head(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    home = tmp_path / "home"
    main = Database(f"sqlite:///{home / 'heshi.db'}")
    scratch = Database(f"sqlite:///{tmp_path / 'eval.db'}")
    for db in (main, scratch):
        db.migrate()
    ours = AuditLog(main, key=KEY, head=head_path(home, main.url))
    theirs = AuditLog(scratch, key=KEY, head=head_path(home, scratch.url))
    for n in range(1, 4):
        ours.append(entry(n))
    for n in range(1, 9):  # an evaluation run against a scratch database, same home
        theirs.append(entry(n))
    noted = read_head(home / HEAD_FILE, KEY)
    assert noted is not None and noted.seq == 3  # not 8: the scratch chain is elsewhere
    with caplog.at_level(logging.CRITICAL, logger="heshi.audit"):
        ours.append(entry(4))  # before the fix: "names a record the database no longer holds"
    assert not [r for r in caplog.records if r.levelno >= logging.CRITICAL]
    assert ours.verify().intact and theirs.verify().intact
    stored = json.loads(head_path(home, scratch.url).read_text("utf-8"))
    assert stored["seq"] == 8 and stored["store"] == f"sqlite:///{tmp_path / 'eval.db'}"
    for db in (main, scratch):
        db.dispose()


def test_a_lost_record_is_reported_once_not_per_batch(
    database: Database, tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    log = AuditLog(database, key=KEY, head=tmp_path / "head.json")
    for n in range(1, 4):
        log.append(entry(n))
    delete_row(database, 3)
    with caplog.at_level(logging.CRITICAL, logger="heshi.audit"):
        for n in range(4, 9):
            log.append(entry(n))
    alarms = [r for r in caplog.records if "no longer holds" in r.getMessage()]
    assert len(alarms) == 1 and "head.json" in alarms[0].getMessage()
    assert "head_mismatch" in [i.kind for i in log.verify().issues]  # seq 3 is another now
