"""LedgerSpool: files owned by live writers are left alone; torn lines are skipped."""

from __future__ import annotations

import logging
from pathlib import Path
from typing import Any

import pytest

from heshi.store.spool import LedgerSpool


def test_live_writers_file_is_not_replayed_but_an_exited_ones_is(tmp_path: Path) -> None:
    live, other = LedgerSpool(tmp_path), LedgerSpool(tmp_path)
    live.append([{"n": 1}, {"n": 2}])
    seen: list[dict[str, Any]] = []
    assert other.replay(seen.extend, batch_rows=10) == 0  # flock held by a live writer
    assert seen == []

    live.close()  # the writer exits with rows still spooled: its file stays
    other.recheck_orphans()
    assert other.replay(seen.extend, batch_rows=1) == 2
    assert seen == [{"n": 1}, {"n": 2}]
    assert list(tmp_path.iterdir()) == []


def test_a_failed_replay_keeps_the_rows(tmp_path: Path) -> None:
    spool = LedgerSpool(tmp_path)
    spool.append([{"n": n} for n in range(5)])

    def refuse(_rows: list[dict[str, Any]]) -> None:
        raise ConnectionError("database down")

    with pytest.raises(ConnectionError):
        spool.replay(refuse, batch_rows=2)
    assert spool.pending_rows == 5
    seen: list[dict[str, Any]] = []
    assert spool.replay(seen.extend, batch_rows=2) == 5
    assert spool.pending_rows == 0
    spool.close()
    assert list(tmp_path.iterdir()) == []


def test_a_torn_last_line_is_skipped(tmp_path: Path, caplog: pytest.LogCaptureFixture) -> None:
    (tmp_path / "ledger-spool-1-dead.jsonl").write_bytes(b'{"n": 1}\n\n{"n": 2}\n{"n": ')
    seen: list[dict[str, Any]] = []
    with caplog.at_level(logging.WARNING, logger="heshi.store.spool"):
        assert LedgerSpool(tmp_path).replay(seen.extend, batch_rows=10) == 2
    assert seen == [{"n": 1}, {"n": 2}]
    assert "unreadable line 4" in caplog.text
