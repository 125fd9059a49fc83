"""Exports: JSON Lines and CSV content, time filtering, checkpoints left out."""

from __future__ import annotations

import csv
import io
import json
from datetime import UTC, datetime, timedelta

import pytest

from heshi.audit import AuditLog, record_hash
from heshi.store.db import Database
from tests.audit.helpers import KEY, entry

T0 = datetime(2026, 11, 1, tzinfo=UTC)


@pytest.fixture
def log(database: Database) -> AuditLog:
    log = AuditLog(database, key=KEY)
    log.append_many([entry(n, ts=T0 + timedelta(days=n)) for n in range(5)])
    return log


def test_jsonl_rows_and_time_window(log: AuditLog) -> None:
    lines = list(log.export(T0 + timedelta(days=1), T0 + timedelta(days=3), "jsonl"))
    assert all(line.endswith("\n") for line in lines)
    rows = [json.loads(line) for line in lines]
    assert [r["request_id"] for r in rows] == ["req-1", "req-2"]  # until is exclusive
    first = rows[0]
    assert first["ts"] == "2026-11-02T00:00:00.000000+00:00"
    assert first["input"] == "我的手机是138****8000，第1问"
    assert first["verdicts"] == [
        {"category": "pii", "risk": "A8", "level": "low", "action": "flag"}
    ]
    assert first["seq"] == 2 and "kind" not in first and "signature" not in first
    # An export carries what is needed to recompute each record's hash.
    assert (
        record_hash({k: v for k, v in first.items() if k != "hash"} | {"kind": "record"})
        == (first["hash"])
    )
    assert rows[1]["prev_hash"] == first["hash"]


def test_jsonl_without_bounds_is_everything(log: AuditLog) -> None:
    assert len(list(log.export())) == 5
    assert list(log.export(T0 + timedelta(days=30))) == []


def test_csv_header_and_cells(log: AuditLog) -> None:
    text = "".join(log.export(T0 + timedelta(days=4), None, "csv"))
    rows = list(csv.DictReader(io.StringIO(text)))
    assert len(rows) == 1
    row = rows[0]
    assert list(row)[:3] == ["seq", "ts", "tenant"]
    assert row["seq"] == "5" and row["tenant"] == "acme" and row["output"] == "回答 4"
    assert json.loads(row["verdicts"])[0]["category"] == "pii"
    assert "," in text.splitlines()[0] and text.endswith("\n")


def test_csv_empty_values_and_special_text(database: Database) -> None:
    log = AuditLog(database)
    from heshi.audit import AuditEntry

    log.append(AuditEntry(tenant="t", request_id="r", output='第一行\n"引号", 逗号'))
    [row] = list(csv.DictReader(io.StringIO("".join(log.export(fmt="csv")))))
    assert row["output"] == '第一行\n"引号", 逗号'
    assert row["input"] == "" and row["key_id"] == "" and row["verdicts"] == "[]"


def test_checkpoints_are_not_exported(log: AuditLog) -> None:
    log.prune(1, now=T0 + timedelta(days=3, hours=12))  # seq 1–3 go; checkpoint at 3
    rows = [json.loads(line) for line in log.export()]
    assert [r["seq"] for r in rows] == [4, 5]


def test_unknown_format_is_refused(log: AuditLog) -> None:
    with pytest.raises(ValueError, match="jsonl or csv"):
        list(log.export(fmt="xml"))  # type: ignore[arg-type]
