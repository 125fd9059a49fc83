"""Questions asked of the usage ledger: reports, spent tokens, and retention pruning.

Every report filters by tenant in SQL, so one tenant's rows never leave the database in
answer to another tenant's question.
"""

from __future__ import annotations

from collections import defaultdict
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from typing import Any, Literal

from sqlalchemy import ColumnElement, Select, case, delete, func, literal_column, select

from heshi.store.db import Database
from heshi.store.tables import usage_ledger, usage_pruned_totals

GroupBy = Literal["model", "key", "day", "endpoint", "reason", "tenant"]
MAX_ID = (1 << 63) - 1  # BIGINT's largest: a condition that keeps every ledger row
PRUNE_CHUNK_ROWS = 5000  # rows deleted per transaction: short locks, bounded WAL growth


@dataclass(frozen=True)
class UsageRow:
    """Totals for one group (a model, a key id, or a UTC day ``YYYY-MM-DD``)."""

    group: str | None  # None: requests made without a key (open mode)
    requests: int
    prompt_tokens: int
    completion_tokens: int
    total_tokens: int
    errors: int  # responses with HTTP status ≥ 400 (499 = client went away)
    mean_latency_ms: float | None
    mean_ttft_ms: float | None  # None when no request in the group streamed
    cost: float | None = None  # in the pricing currency; None when no request was priced


@dataclass(frozen=True)
class SpentTokens:
    """Lifetime tokens (prompt + completion) and spend (micro-yuan) per key id and tenant."""

    by_key: dict[str, int] = field(default_factory=dict)
    by_tenant: dict[str, int] = field(default_factory=dict)
    cost_by_key: dict[str, int] = field(default_factory=dict)
    cost_by_tenant: dict[str, int] = field(default_factory=dict)

    def as_scopes(self) -> dict[tuple[str, str], int]:
        """The same totals keyed as quotas count them: ``("key", id)`` / ``("tenant",
        name)`` in tokens, ``("key.cny", id)`` / ``("tenant.cny", name)`` in micro-yuan."""
        spent = {("key", k): v for k, v in self.by_key.items()}
        spent.update({("tenant", t): v for t, v in self.by_tenant.items()})
        spent.update({("key.cny", k): v for k, v in self.cost_by_key.items()})
        spent.update({("tenant.cny", t): v for t, v in self.cost_by_tenant.items()})
        return spent


def usage_report(
    db: Database,
    *,
    tenant: str | None,
    since: datetime,
    until: datetime | None = None,
    by: GroupBy,
    model: str | None = None,
    key_id: str | None = None,
) -> list[UsageRow]:
    """``tenant``'s usage (every tenant's when None) in ``[since, until)``, of ``model``
    and ``key_id`` when given, grouped ``by`` model, key, UTC day, endpoint, reason (why
    requests ended as they did: ok, quota.key.rpm, …) or tenant.

    Groups come in ascending order. Raises ``StoreUnavailable`` on database errors.
    """
    t = usage_ledger.c
    group = _group_column(db, by).label("grp")
    query = (
        select(
            group,
            func.count().label("requests"),
            func.coalesce(func.sum(t.prompt_tokens), 0).label("prompt"),
            func.coalesce(func.sum(t.completion_tokens), 0).label("completion"),
            func.coalesce(func.sum(case((t.status >= 400, 1), else_=0)), 0).label("errors"),
            func.avg(t.latency_ms).label("latency"),
            func.avg(t.ttft_ms).label("ttft"),
            func.sum(t.cost_micro).label("cost"),
        )
        .where(t.ts >= since)
        .group_by(literal_column("grp"))
        .order_by(literal_column("grp"))
    )
    for column, value in ((t.tenant, tenant), (t.model, model), (t.key_id, key_id)):
        if value is not None:
            query = query.where(column == value)
    if until is not None:
        query = query.where(t.ts < until)
    with db.outage_as_unavailable(), db.read() as conn:
        rows = conn.execute(query).all()
    return [
        UsageRow(
            group=None if row.grp is None else str(row.grp),  # a date prints YYYY-MM-DD
            requests=int(row.requests),
            prompt_tokens=int(row.prompt),
            completion_tokens=int(row.completion),
            total_tokens=int(row.prompt) + int(row.completion),
            errors=int(row.errors),
            mean_latency_ms=None if row.latency is None else float(row.latency),
            mean_ttft_ms=None if row.ttft is None else float(row.ttft),
            cost=None if row.cost is None else int(row.cost) / 1e6,
        )
        for row in rows
    ]


def spent_tokens(db: Database) -> SpentTokens:
    """Tokens used so far per key and per tenant, including pruned rows' totals.

    The gateway calls this at start-up to restore lifetime budgets.
    """
    with db.outage_as_unavailable(), db.read() as conn:
        ledger = conn.execute(ledger_totals_query(db.dialect_name)).all()
        pruned = conn.execute(pruned_totals_query()).all()
    return spent_from([*(row[:4] for row in ledger), *(row[:4] for row in pruned)])


def ledger_totals_query(dialect: str, above: int = 0, upto: int | None = None) -> Select[Any]:
    """Per (tenant, key): tokens, micro-yuan, highest id and number of the ledger rows
    with ``above < id ≤ upto`` (no upper end when None)."""
    t = usage_ledger.c
    query = select(
        t.tenant,
        t.key_id,
        func.sum(t.prompt_tokens + t.completion_tokens),
        func.sum(t.cost_micro),
        func.max(t.id),
        func.count(),
    ).group_by(t.tenant, t.key_id)
    if upto is None and dialect == "sqlite":
        # Bounded at both ends: with ``id > above`` alone SQLite's planner walks the whole
        # (tenant, ts) index for the GROUP BY and fetches each row by its id (5.4 s
        # instead of 2.3 s over 2 million rows, and the same for a few new rows;
        # benchmarks/spend_refresh.py). PostgreSQL takes the id range as it is, and is
        # slower with the extra bound (105 → 202 ms over 300,000 rows).
        upto = MAX_ID
    query = query.where(t.id > above)
    return query if upto is None else query.where(t.id <= upto)


def pruned_totals_query() -> Select[Any]:
    """(tenant, key, tokens, micro-yuan, requests) of every ``usage_pruned_totals`` row:
    what pruned ledger rows carried over (key "" for rows that had no key)."""
    p = usage_pruned_totals.c
    return select(
        p.tenant, p.key_id, p.prompt_tokens + p.completion_tokens, p.cost_micro, p.requests
    )


def spent_from(rows: Iterable[tuple[str, str | None, Any, Any]]) -> SpentTokens:
    """``SpentTokens`` from (tenant, key id, tokens, micro-yuan) rows, summed; a tenant or
    key whose spend is 0 has no cost entry."""
    by_key: defaultdict[str, int] = defaultdict(int)
    by_tenant: defaultdict[str, int] = defaultdict(int)
    cost_by_key: defaultdict[str, int] = defaultdict(int)
    cost_by_tenant: defaultdict[str, int] = defaultdict(int)
    for tenant, key_id, tokens, cost in rows:
        by_tenant[tenant] += int(tokens or 0)
        cost_by_tenant[tenant] += int(cost or 0)
        if key_id:
            by_key[key_id] += int(tokens or 0)
            cost_by_key[key_id] += int(cost or 0)
    return SpentTokens(
        by_key=dict(by_key),
        by_tenant=dict(by_tenant),
        cost_by_key={k: v for k, v in cost_by_key.items() if v},
        cost_by_tenant={k: v for k, v in cost_by_tenant.items() if v},
    )


def prune(
    db: Database,
    older_than_days: int,
    *,
    now: datetime | None = None,
    chunk_rows: int = PRUNE_CHUNK_ROWS,
) -> int:
    """Delete ledger rows older than ``older_than_days``; returns how many were deleted.

    Works in chunks of ``chunk_rows``, each one transaction that also adds the chunk's
    totals to ``usage_pruned_totals`` so lifetime budgets stay right.
    """
    if older_than_days < 1:
        raise ValueError("older_than_days must be ≥ 1")
    cutoff = (now or datetime.now(UTC)) - timedelta(days=older_than_days)
    t = usage_ledger.c
    oldest = select(t.id).where(t.ts < cutoff).order_by(t.id).limit(chunk_rows)
    # DELETE … RETURNING: the totals carried over are exactly the rows removed, even if
    # a spool replay inserts old rows concurrently.
    chunk = (
        delete(usage_ledger)
        .where(t.id.in_(oldest.scalar_subquery()))
        .returning(t.tenant, t.key_id, t.prompt_tokens, t.completion_tokens, t.cost_micro)
    )
    deleted = 0
    with db.outage_as_unavailable():
        while True:
            with db.begin() as conn:
                removed = conn.execute(chunk).all()
                if removed:
                    conn.execute(_carry_over(db), _totals(removed))
            deleted += len(removed)
            if len(removed) < chunk_rows:
                return deleted


def _group_column(db: Database, by: GroupBy) -> ColumnElement[Any]:
    t = usage_ledger.c
    plain: dict[str, ColumnElement[Any]] = {
        "model": t.model, "key": t.key_id, "endpoint": t.endpoint, "reason": t.reason,
        "tenant": t.tenant,
    }  # fmt: skip
    if by in plain:
        return plain[by]
    if by != "day":
        raise ValueError(f"by must be model, key, day, endpoint, reason or tenant, not {by!r}")
    if db.dialect_name == "postgresql":
        # The UTC date, formatted once per group (to_char on every row made the query a
        # fifth slower: benchmarks/console_usage.py). Literals, not bound parameters: the same
        # expression is grouped on by name.
        return func.date(func.timezone(literal_column("'UTC'"), t.ts))
    return func.substr(t.ts, 1, 10)  # SQLite stores naive UTC text "YYYY-MM-DD HH:MM:SS…"


def _totals(removed: Sequence[Any]) -> list[dict[str, Any]]:
    sums: defaultdict[tuple[str, str], list[int]] = defaultdict(lambda: [0, 0, 0, 0])
    for row in removed:
        entry = sums[(row.tenant, row.key_id or "")]
        entry[0] += 1
        entry[1] += row.prompt_tokens
        entry[2] += row.completion_tokens
        entry[3] += row.cost_micro or 0
    return [
        dict(
            tenant=tenant,
            key_id=key,
            requests=r,
            prompt_tokens=p,
            completion_tokens=c,
            cost_micro=m,
        )
        for (tenant, key), (r, p, c, m) in sums.items()
    ]


def _carry_over(db: Database) -> Any:
    stmt = db.upsertable_insert(usage_pruned_totals)
    p = usage_pruned_totals.c
    return stmt.on_conflict_do_update(
        index_elements=[p.tenant, p.key_id],
        set_={
            "requests": p.requests + stmt.excluded.requests,
            "prompt_tokens": p.prompt_tokens + stmt.excluded.prompt_tokens,
            "completion_tokens": p.completion_tokens + stmt.excluded.completion_tokens,
            "cost_micro": p.cost_micro + stmt.excluded.cost_micro,
        },
    )
