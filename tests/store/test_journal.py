"""The ledger journal: rows queued in memory survive ``kill -9`` of their process."""

from __future__ import annotations

import subprocess
import sys
import textwrap
from pathlib import Path

from heshi.store.db import Database
from heshi.store.journal import JOURNAL_GLOB
from heshi.store.ledger import LedgerWriter
from tests.store.records import ledger_ids, record

_KILLED_WRITER = """
import os, signal, sys
from heshi.store.db import Database
from heshi.store.ledger import LedgerWriter
from tests.store.records import record

writer = LedgerWriter(Database(sys.argv[1]), flush_seconds=3600, batch_rows=10_000,
                      buffer_rows=100_000, spool_dir=__import__("pathlib").Path(sys.argv[2]))
writer.start()
for n in range(40):
    writer.submit(record(n))
os.kill(os.getpid(), signal.SIGKILL)  # nothing was written: all 40 rows are in memory
"""


def test_rows_queued_by_a_killed_process_are_written_by_the_next(
    database: Database, tmp_path: Path
) -> None:
    spool = tmp_path / "spool"
    url = database.url.render_as_string(hide_password=False)
    script = textwrap.dedent(_KILLED_WRITER)
    root = Path(__file__).parents[2]  # so the child imports tests.store.records
    command = [sys.executable, "-c", script, url, str(spool)]
    done = subprocess.run(command, cwd=root, check=False)
    assert done.returncode == -9
    assert ledger_ids(database) == []
    assert list(spool.glob(JOURNAL_GLOB))

    writer = LedgerWriter(
        database, flush_seconds=0.05, batch_rows=7, buffer_rows=1000, spool_dir=spool
    )
    writer.start()
    try:
        assert writer.flush(30)
        assert ledger_ids(database) == [f"req_{n:06d}" for n in range(40)]
        # the dead process's journal is gone; only this writer's own (empty) segment is left
        assert [p.stat().st_size for p in spool.glob(JOURNAL_GLOB)] == [0]
    finally:
        writer.close()
    assert not list(spool.glob(JOURNAL_GLOB))


def test_journal_segments_are_deleted_once_their_rows_are_committed(
    database: Database, tmp_path: Path
) -> None:
    spool = tmp_path / "spool"
    writer = LedgerWriter(
        database, flush_seconds=0.05, batch_rows=5, buffer_rows=1000, spool_dir=spool
    )
    writer.start()
    try:
        for round_ in range(3):
            for n in range(12):
                writer.submit(record(100 * round_ + n))
            assert writer.flush(30)
            assert writer.flush(30)  # a second pass: the segment rotated by the first is gone
            sizes = [p.stat().st_size for p in spool.glob(JOURNAL_GLOB)]
            assert sizes == [0], sizes
    finally:
        writer.close()
    assert len(ledger_ids(database)) == 36
    assert not list(spool.glob(JOURNAL_GLOB))
