"""Lifetime spend per tenant and key, kept up to date without re-reading the ledger.

:func:`heshi.store.usage.spent_tokens` sums every ledger row; on a ledger of tens of
millions of rows that is seconds of database time, and ``/metrics`` (every replica,
every minute) and ``GET /admin/v1/tenants`` (every call) asked for it. A
:class:`SpendTally` sums the whole ledger once, then only the rows added since, found by
their ``id`` (the primary key, so the query is a range scan of new rows).

Ids are handed out when a row is inserted, not when its transaction commits, so on
PostgreSQL a row can become visible after a row with a higher id. Rows past the last
settled id are therefore summed afresh on every refresh, and an id is settled only
``settle_seconds`` after it was seen — by then the transaction that held a lower id has
long committed (the ledger writes batches in short transactions). A row whose
transaction stays open longer than that is counted at the next full recount, which
happens every ``recount_seconds`` and whenever ``usage_pruned_totals`` changes (pruning
moves rows' totals there, so rows already summed would otherwise count twice). A recount
reads the whole ledger once: the ids seen before still settle it. SQLite has one writer
at a time and commits in id order, but hands a deleted highest id out again; a prune
that deletes it is a recount, which forgets what it saw above the new highest id.

Each refresh reads, besides what has settled since the last one, the rows of the last
``settle_seconds``: at one refresh a minute, about three minutes of traffic.

Budgets are not counted from this: the gateway restores them at start-up with
``spent_tokens`` and counts requests as they finish.
"""

from __future__ import annotations

import threading
import time
from collections import deque
from collections.abc import Callable, Iterable
from typing import Any

from sqlalchemy import Connection, func, select

from heshi.store.db import Database
from heshi.store.tables import usage_ledger
from heshi.store.usage import (
    SpentTokens,
    ledger_totals_query,
    pruned_totals_query,
    spent_from,
)

SETTLE_SECONDS = 120.0
RECOUNT_SECONDS = 3600.0

Totals = dict[tuple[str, str | None], tuple[int, int]]  # (tenant, key id) → (tokens, µ¥)


class SpendTally:
    """Lifetime tokens and spend per tenant and key, refreshed incrementally.

    Thread-safe: concurrent ``refresh`` calls run one at a time.
    """

    def __init__(
        self,
        db: Database,
        *,
        settle_seconds: float = SETTLE_SECONDS,
        recount_seconds: float = RECOUNT_SECONDS,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self._db = db
        self._settle = settle_seconds
        self._recount = recount_seconds
        self._clock = clock
        self._lock = threading.Lock()
        self._base: Totals = {}  # ledger rows with id ≤ self._settled
        self._settled = 0
        self._seen: deque[tuple[int, float]] = deque()  # (highest id seen, when)
        self._pruned: tuple[Any, ...] | None = None  # usage_pruned_totals at the last recount
        self._counted_at = float("-inf")
        self.recounts = 0  # full passes over the ledger so far
        self.last_rows_read = 0  # ledger rows the last refresh summed

    def refresh(self) -> SpentTokens:
        """Read what changed and return the lifetime totals (blocking: call from a thread).

        Raises ``StoreUnavailable`` when the database fails; the tally is then as it
        was before the call.
        """
        with self._lock:
            with self._db.outage_as_unavailable(), self._db.read() as conn:
                now = self._clock()
                pruned = _pruned_rows(conn)
                base, settled, seen = self._base, self._settled, list(self._seen)
                recount = pruned != self._pruned or now - self._counted_at >= self._recount
                if recount:
                    base, settled = {}, 0
                    # What was seen still holds, except ids above today's highest: SQLite
                    # hands a deleted highest id out again.
                    top = _highest_id(conn)
                    seen = [(id_, at) for id_, at in seen if id_ <= top]
                target = max((id_ for id_, at in seen if now - at >= self._settle), default=0)
                rows_read = 0
                if target > settled:
                    delta, _, rows_read = _sum_ids(conn, settled, target)
                    base, settled = _added(base, delta), target
                tail, highest, tail_rows = _sum_ids(conn, settled, None)
            # the snapshot was read in full: only now does the tally move on
            self._base, self._settled = base, settled
            self._seen = deque((id_, at) for id_, at in seen if id_ > settled)
            if highest > max([settled, *(id_ for id_, _ in self._seen)]):
                self._seen.append((highest, now))
            if recount:
                self._pruned, self._counted_at = pruned, now
                self.recounts += 1
            self.last_rows_read = rows_read + tail_rows
            return _spent(_added(base, tail), pruned)


def _pruned_rows(conn: Connection) -> tuple[Any, ...]:
    """``usage_pruned_totals`` in a comparable form: every pruned row adds a request, so
    any prune changes it, even of rows that cost nothing."""
    rows = conn.execute(pruned_totals_query())
    return tuple(sorted((tuple(row) for row in rows), key=repr))


def _highest_id(conn: Connection) -> int:
    return int(conn.execute(select(func.max(usage_ledger.c.id))).scalar() or 0)


def _sum_ids(conn: Connection, above: int, upto: int | None) -> tuple[Totals, int, int]:
    """Totals of the ledger rows with ``above < id ≤ upto`` (no upper end when None),
    the highest id among them (``above`` if none) and how many rows they were."""
    totals: Totals = {}
    highest, rows = above, 0
    query = ledger_totals_query(conn.dialect.name, above, upto)
    for tenant, key_id, tokens, cost, top, count in conn.execute(query):
        totals[(tenant, key_id)] = (int(tokens or 0), int(cost or 0))
        highest, rows = max(highest, int(top)), rows + int(count)
    return totals, highest, rows


def _added(base: Totals, more: Totals) -> Totals:
    if not more:
        return base
    out = dict(base)
    for group, (tokens, cost) in more.items():
        had_tokens, had_cost = out.get(group, (0, 0))
        out[group] = (had_tokens + tokens, had_cost + cost)
    return out


def _spent(ledger: Totals, pruned: Iterable[tuple[Any, ...]]) -> SpentTokens:
    rows = [(tenant, key, tokens, cost) for (tenant, key), (tokens, cost) in ledger.items()]
    return spent_from([*rows, *(row[:4] for row in pruned)])
