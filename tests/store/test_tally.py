"""SpendTally: the incremental lifetime totals equal a full recount at every step —
across new rows, duplicates, pruning, and a transaction that commits late."""

from __future__ import annotations

import json
import random
import subprocess
import sys
from datetime import timedelta
from pathlib import Path

import pytest
from sqlalchemy import event
from sqlalchemy.exc import OperationalError

from heshi.store.db import Database, StoreUnavailable
from heshi.store.ledger import UsageRecord
from heshi.store.tables import usage_ledger
from heshi.store.tally import SpendTally
from heshi.store.usage import ledger_totals_query, prune, spent_tokens
from tests.store.records import T0, ledger_count, record
from tests.store.test_usage import write


class Clock:
    def __init__(self) -> None:
        self.now = 1000.0

    def __call__(self) -> float:
        return self.now


def batch(rng: random.Random, start: int, count: int) -> list[UsageRecord]:
    """Rows of three tenants and five keys (some keyless, some unpriced)."""
    rows = []
    for n in range(start, start + count):
        key = rng.choice(["key_a", "key_b", "key_c", "key_d", None])
        rows.append(
            record(
                n,
                tenant=rng.choice(["acme", "beta", "gamma"]),
                key_id=key,
                prompt_tokens=rng.randrange(0, 500),
                completion_tokens=rng.randrange(0, 300),
                cost_micro=rng.choice([None, 0, rng.randrange(1, 90_000)]),
                ts=T0 - timedelta(days=rng.choice([0, 0, 200])),
            )
        )
    return rows


def test_incremental_totals_equal_a_full_recount(database: Database, tmp_path: Path) -> None:
    rng = random.Random(7)
    clock = Clock()
    tally = SpendTally(database, settle_seconds=120, recount_seconds=3600, clock=clock)
    assert tally.refresh() == spent_tokens(database)  # an empty ledger
    n = 0
    for step in range(12):
        rows = batch(rng, n, rng.randrange(1, 40))
        n += len(rows)
        write(database, rows, tmp_path / f"spool{step}")
        if step == 5:  # the same rows again: the ledger keeps one of each
            write(database, rows, tmp_path / "again")
        clock.now += 60
        assert tally.refresh() == spent_tokens(database), step
    assert tally.recounts == 1
    # settled rows are not read again: the last refresh read only the unsettled tail
    assert 0 < tally.last_rows_read < n


def test_pruning_between_refreshes_counts_nothing_twice(database: Database, tmp_path: Path) -> None:
    rng = random.Random(11)
    clock = Clock()
    tally = SpendTally(database, settle_seconds=0, clock=clock)
    write(database, batch(rng, 0, 60), tmp_path / "a")
    before = tally.refresh()
    clock.now += 60
    assert tally.refresh() == before  # rows settled into the base
    assert prune(database, 90, now=T0) > 0  # the 200-day-old rows move to pruned totals
    clock.now += 60
    assert tally.refresh() == spent_tokens(database) == before
    assert tally.recounts == 2


@pytest.mark.parametrize("database", ["postgresql"], indirect=True)
def test_a_row_committed_late_is_counted_until_settled_and_at_the_next_recount(
    database: Database, tmp_path: Path
) -> None:
    """A transaction holding a low id commits after a higher id was seen (PostgreSQL
    hands out ids at insert; on SQLite the second writer waits, so ids follow commits)."""
    clock = Clock()
    tally = SpendTally(database, settle_seconds=120, recount_seconds=3600, clock=clock)
    write(database, [record(1)], tmp_path / "a")
    assert tally.refresh().by_tenant == {"acme": 15}

    def held_open(n: int, settle_first: bool) -> None:
        with database.begin() as late:  # takes its id now, commits at the end
            late.execute(usage_ledger.insert().values(**record(n, tenant="late").values()))
            write(database, [record(n + 1)], tmp_path / f"b{n}")
            clock.now += 60
            tally.refresh()  # sees the higher id, not the open transaction's
            clock.now += 30
            tally.refresh()  # the higher id is not settled yet: read again
            if settle_first:
                clock.now += 120
                tally.refresh()  # the higher id settles

    held_open(10, settle_first=False)  # commits within the settling time: counted
    clock.now += 60
    assert tally.refresh() == spent_tokens(database)
    assert tally.refresh().by_tenant["late"] == 15

    held_open(20, settle_first=True)  # stays open past it: missed until the recount
    clock.now += 60
    assert tally.refresh().by_tenant["late"] == 15
    clock.now += 3600
    assert tally.refresh() == spent_tokens(database)
    assert tally.refresh().by_tenant["late"] == 30


def test_a_failed_refresh_keeps_the_tally_for_the_next(database: Database, tmp_path: Path) -> None:
    from tests.store.databases import outage

    clock = Clock()
    tally = SpendTally(database, settle_seconds=0, clock=clock)
    write(database, batch(random.Random(3), 0, 20), tmp_path / "a")
    tally.refresh()
    with outage(database), pytest.raises(StoreUnavailable):
        clock.now += 60
        tally.refresh()
    write(database, batch(random.Random(4), 100, 20), tmp_path / "b")
    clock.now += 60
    assert tally.refresh() == spent_tokens(database)
    assert tally.recounts == 1


@pytest.mark.parametrize("database", ["sqlite"], indirect=True)
def test_the_refresh_reads_new_rows_by_their_ids_not_the_whole_ledger(
    database: Database, tmp_path: Path
) -> None:
    """Both the bounded and the open-ended range are rowid ranges: with only ``id > N``
    SQLite's planner walked the whole (tenant, ts) index for the GROUP BY. (PostgreSQL
    takes the primary key's range on a large table: benchmarks/spend_refresh.py.)"""
    write(database, batch(random.Random(5), 0, 300), tmp_path / "a")
    # with no bounds: spent_tokens (gateway start), which walked that index too
    for query in (
        ledger_totals_query("sqlite", 200, 250),
        ledger_totals_query("sqlite", 200),
        ledger_totals_query("sqlite"),
    ):
        sql = str(query.compile(database.engine, compile_kwargs={"literal_binds": True}))
        with database.read() as conn:
            plan = " ".join(
                str(row[3]) for row in conn.exec_driver_sql("EXPLAIN QUERY PLAN " + sql)
            )
        assert "INTEGER PRIMARY KEY (rowid>? AND rowid<?)" in plan, plan


def test_a_recount_reads_the_ledger_once(database: Database, tmp_path: Path) -> None:
    clock = Clock()
    tally = SpendTally(database, settle_seconds=120, clock=clock)
    rng = random.Random(9)
    for step in range(4):
        write(database, batch(rng, step * 50, 50), tmp_path / f"s{step}")
        clock.now += 60
        tally.refresh()
    assert tally.last_rows_read == 150  # the minute settling now and the two after it
    prune(database, 90, now=T0)
    clock.now += 60
    assert tally.refresh() == spent_tokens(database)
    assert tally.recounts == 2
    left = ledger_count(database)
    assert tally.last_rows_read == left  # the whole ledger, once
    clock.now += 60
    tally.refresh()
    assert tally.last_rows_read < left


def test_a_prune_of_rows_that_cost_nothing_is_noticed(database: Database, tmp_path: Path) -> None:
    """Pruned rows of 0 tokens leave the pruned totals' sums as they were, and on SQLite
    the deleted highest id is handed out again: the next row must still be counted."""
    clock = Clock()
    tally = SpendTally(database, settle_seconds=120, clock=clock)
    old = T0 - timedelta(days=200)
    write(database, [record(1, ts=old), record(2)], tmp_path / "a")
    prune(database, 90, now=T0)  # pruned totals now hold acme/key_a
    write(database, [record(3, prompt_tokens=0, completion_tokens=0, ts=old)], tmp_path / "b")
    tally.refresh()  # sees the zero row's id as the highest
    prune(database, 90, now=T0)  # deletes that id; the pruned sums stay as they were
    for _ in range(2):  # a recount, then the time the zero row's id would have settled
        clock.now += 60
        tally.refresh()
    write(database, [record(4, tenant="beta")], tmp_path / "c")  # SQLite: the same id
    for _ in range(4):
        clock.now += 60
        assert tally.refresh() == spent_tokens(database)
    assert tally.refresh().by_tenant["beta"] == 15


def test_a_prune_between_the_statements_of_one_read_counts_nothing_twice(
    database: Database, tmp_path: Path
) -> None:
    """A refresh and ``spent_tokens`` each read the ledger and the pruned totals in one
    snapshot (REPEATABLE READ on PostgreSQL): a prune committing between their statements
    neither hides the rows nor counts them twice."""
    readers = {
        "spent_tokens": lambda: spent_tokens(database),
        "tally": SpendTally(database).refresh,
    }
    for n, (name, read) in enumerate(readers.items()):
        write(database, batch(random.Random(n), n * 100, 80), tmp_path / name)
        before = spent_tokens(database)
        fired: list[bool] = []

        def prune_once(*_args: object, fired: list[bool] = fired) -> None:
            if not fired:
                fired.append(True)
                assert prune(database, 90, now=T0) > 0  # another connection, committed

        event.listen(database.engine, "after_cursor_execute", prune_once)
        try:
            got = read()
        finally:
            event.remove(database.engine, "after_cursor_execute", prune_once)
        assert fired, name
        assert got == before, name


def test_a_refresh_failing_midway_changes_nothing(database: Database, tmp_path: Path) -> None:
    clock = Clock()
    tally = SpendTally(database, settle_seconds=60, clock=clock)
    write(database, batch(random.Random(17), 0, 40), tmp_path / "a")
    tally.refresh()
    write(database, batch(random.Random(18), 40, 40), tmp_path / "b")
    clock.now += 60
    statements: list[str] = []

    def fail_third(_conn: object, _cursor: object, sql: str, *_rest: object) -> None:
        statements.append(sql)
        if len(statements) == 3:  # pruned totals, the settling range, then the tail
            raise OperationalError(sql, None, Exception("the database went away"))

    event.listen(database.engine, "before_cursor_execute", fail_third)
    try:
        with pytest.raises(StoreUnavailable):
            tally.refresh()
    finally:
        event.remove(database.engine, "before_cursor_execute", fail_third)
    assert tally.refresh() == spent_tokens(database)
    assert tally.recounts == 1
    assert tally.last_rows_read == 80  # the 40 rows settling and the 40 after them


def test_the_documented_benchmark_runs_and_compares(tmp_path: Path) -> None:
    """``benchmarks/spend_refresh.py`` (docs/benchmarks.md) at a small size: it checks
    the tally against a full recount every round and exits non-zero if they differ."""
    out = tmp_path / "spend.json"
    script = Path(__file__).parents[2] / "benchmarks" / "spend_refresh.py"
    argv = [sys.executable, str(script), "--rows", "500", "--new", "40", "--rounds", "2"]
    done = subprocess.run(
        [*argv, "--json", str(out)], check=False, capture_output=True, text=True, timeout=300
    )
    assert done.returncode == 0, done.stderr
    results = json.loads(out.read_text("utf-8"))["results"]
    assert [r["db"] for r in results] == ["sqlite", "postgresql"]
    # after the warm-up only the unsettled tail is read: three rounds of 40 rows
    assert [r["tally_rows_read_median"] for r in results] == [120, 120]
