"""`heshi audit verify|export|prune` through Typer's CliRunner, on both databases."""

from __future__ import annotations

import csv
import io
import json
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest
import yaml
from typer.testing import CliRunner

from heshi.audit import AuditLog
from heshi.audit.head import audit_key, head_path
from heshi.store.db import Database
from tests.audit.helpers import KEY, delete_row, entry, filled, set_row

WIDE = {"COLUMNS": "200"}
WITH_KEY = {**WIDE, "HESHI_AUDIT_KEY": KEY.decode()}


@pytest.fixture
def config(database: Database, tmp_path: Path) -> Path:
    path = tmp_path / "heshi.yaml"
    url = database.url.render_as_string(hide_password=False)
    path.write_text(yaml.safe_dump({"home": str(tmp_path / "home"), "store": {"url": url}}))
    return path


def heshi(*args: str, env: dict[str, str] | None = None) -> tuple[int, str, str]:
    from heshi.cli.main import app

    result = CliRunner().invoke(app, list(args), env={"HESHI_AUDIT_KEY": "", **(env or WIDE)})
    return result.exit_code, result.stdout, result.stderr


def test_verify_intact_exits_0_with_a_summary(config: Path, database: Database) -> None:
    filled(database, 3)
    code, out, _ = heshi("audit", "verify", "--no-head", "--config", str(config), env=WITH_KEY)
    assert code == 0, out
    assert "intact" in out and "3 records" in out and "seq 1–3" in out


def test_verify_on_a_home_without_a_database_says_so_and_creates_none(tmp_path: Path) -> None:
    """A mistyped HESHI_HOME left an empty heshi.db behind and reported 0 records."""
    home = tmp_path / "mistyped"
    config = tmp_path / "heshi.yaml"
    config.write_text(yaml.safe_dump({"home": str(home)}))
    for command in (["verify"], ["export", "--out", str(tmp_path / "a.jsonl")]):
        code, _, err = heshi("audit", *command, "--config", str(config), env=WITH_KEY)
        assert code == 1 and "no database, so no audit records" in err and str(home) in err
    assert not (home / "heshi.db").exists()


def test_verify_names_the_first_broken_record(config: Path, database: Database) -> None:
    filled(database, 6)
    set_row(database, 2, output="改写")
    delete_row(database, 5)
    code, out, err = heshi("audit", "verify", "--no-head", "--config", str(config), env=WITH_KEY)
    assert code == 1
    assert "2 issues" in out
    first, second = err.strip().splitlines()
    assert "seq 2" in first and "hash mismatch" in first and "篡改" in first
    assert "seq 5" in second and "gap" in second


def test_verify_after_prune_needs_the_key(config: Path, database: Database) -> None:
    log = AuditLog(database, key=KEY)
    log.append(entry(1, ts=datetime.now(UTC) - timedelta(days=400)))
    log.append(entry(2))
    code, out, _ = heshi("audit", "prune", "--config", str(config), env=WITH_KEY)
    assert code == 0, out
    assert "removed 1 records" in out and "checkpoint at seq 1" in out

    code, _, err = heshi("audit", "verify", "--no-head", "--config", str(config))
    assert code == 1 and "HESHI_AUDIT_KEY" in err
    args = ("audit", "verify", "--no-head", "--config", str(config))
    code, out, _ = heshi(*args, env=WITH_KEY)
    assert code == 0 and "checkpoint seq 1" in out

    set_row(database, 1, signature="0" * 64)
    code, _, err = heshi(*args, env=WITH_KEY)
    assert code == 1 and "seq 1" in err and "bad signature" in err


def test_prune_guards_retention_and_key(config: Path, database: Database) -> None:
    filled(database, 1)
    code, _, err = heshi("audit", "prune", "--config", str(config))
    assert code == 1 and "HESHI_AUDIT_KEY" in err
    code, _, err = heshi("audit", "prune", "--days", "30", "--config", str(config), env=WITH_KEY)
    assert code == 1 and "180" in err and "--force" in err
    args = ("audit", "prune", "--days", "30", "--force", "--config", str(config))
    code, out, _ = heshi(*args, env=WITH_KEY)
    assert code == 0 and "nothing older" in out


def test_export_jsonl_and_csv_to_file(config: Path, database: Database, tmp_path: Path) -> None:
    log = AuditLog(database)
    log.append(entry(1, ts=datetime(2026, 10, 1, tzinfo=UTC)))
    log.append(entry(2, ts=datetime(2026, 11, 1, tzinfo=UTC)))
    since = ("--since", "2026-10-15", "--until", "2026-12-01")
    code, out, _ = heshi("audit", "export", *since, "--config", str(config))
    assert code == 0
    [row] = [json.loads(line) for line in out.splitlines()]
    assert row["request_id"] == "req-2"

    target = tmp_path / "out" / "audit.csv"
    args = ("audit", "export", "--since", "2026-01-01", "--format", "csv", "--out", str(target))
    code, out, _ = heshi(*args, "--config", str(config))
    assert code == 0 and out == ""
    rows = list(csv.DictReader(io.StringIO(target.read_text("utf-8"))))
    assert [r["request_id"] for r in rows] == ["req-1", "req-2"]
    assert target.stat().st_mode & 0o777 == 0o600
    assert [p.name for p in target.parent.iterdir()] == ["audit.csv"]


def test_export_rejects_a_bad_time(config: Path) -> None:
    code, _, err = heshi("audit", "export", "--since", "yesterday", "--config", str(config))
    assert code == 1 and "--since" in err


def test_verify_reads_the_home_key_and_head_file(
    config: Path, database: Database, tmp_path: Path
) -> None:
    home = tmp_path / "home"
    key = audit_key(home, create=True)  # as the gateway makes it on its first start
    log = AuditLog(database, key=key, head=head_path(home, database.url))
    for n in range(1, 5):
        log.append(entry(n))
    code, out, _ = heshi("audit", "verify", "--config", str(config))
    assert code == 0 and "intact" in out and "4 records" in out

    delete_row(database, 4)  # the newest record, deleted by someone with SQL access
    code, out, err = heshi("audit", "verify", "--config", str(config))
    assert code == 1 and "seq 4" in err and "truncated" in err
    code, _, _ = heshi("audit", "verify", "--no-head", "--config", str(config))
    assert code == 0  # skipping the head file knowingly: the deletion goes unnoticed

    head_path(home, database.url).unlink()
    code, _, err = heshi("audit", "verify", "--config", str(config))
    assert code == 1 and "missing" in err and "head file" in err


def test_verify_without_a_key_says_what_it_could_not_check(
    config: Path, database: Database
) -> None:
    old = AuditLog(database)  # records of a log that never had a key
    old.append(entry(1))
    code, out, err = heshi("audit", "verify", "--config", str(config))
    assert code == 1 and "only the hash chain was checked" in err and "--unkeyed" in err
    code, out, _ = heshi("audit", "verify", "--unkeyed", "--config", str(config))
    assert code == 0 and "intact" in out


def test_rehead_after_a_database_replaced_on_purpose(
    config: Path, database: Database, tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    """docs/audit.md, "Starting over with a new database"."""
    home = tmp_path / "home"
    key = audit_key(home, create=True)
    path = head_path(home, database.url)
    log = AuditLog(database, key=key, head=path)
    for n in range(1, 4):
        log.append(entry(n))
    for seq in (1, 2, 3):  # the old chain is gone: an empty database in its place
        delete_row(database, seq)
    fresh = AuditLog(database, key=key, head=path)
    fresh.append(entry(1))  # the gateway goes on writing; the head cannot move
    alarms = [r.getMessage() for r in caplog.records if "no longer holds" in r.getMessage()]
    assert alarms and "heshi audit rehead --yes" in alarms[0]
    code, _, err = heshi("audit", "verify", "--config", str(config))
    assert code == 1 and "truncated" in err and "heshi audit rehead --yes" in err
    before = path.read_bytes()

    code, _, err = heshi("audit", "rehead", "--config", str(config))
    assert code != 0 and "--yes" in err and path.read_bytes() == before  # nothing done

    code, out, err = heshi("audit", "rehead", "--yes", "--config", str(config))
    assert code == 0, err
    kept = list(path.parent.glob(path.name + ".*.old"))
    assert len(kept) == 1 and kept[0].read_bytes() == before  # the evidence is kept
    assert str(kept[0]) in out and "new head from seq 1" in out
    code, out, _ = heshi("audit", "verify", "--config", str(config))
    assert code == 0 and "intact" in out
    records = list(AuditLog(database, key=key).records())
    assert json.loads(records[-1].input)["admin_action"] == "audit.rehead"
    caplog.clear()
    AuditLog(database, key=key, head=path).append(entry(2))  # and the head moves on again
    assert not [r for r in caplog.records if "no longer holds" in r.getMessage()]
    code, _, _ = heshi("audit", "verify", "--config", str(config))
    assert code == 0
