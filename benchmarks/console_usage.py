"""The console's usage overview on a large ledger: PostgreSQL with 1,000,000 rows.

Creates a scratch database on the local PostgreSQL (``--pg`` admin URL), migrates it,
loads ``--rows`` ledger rows spread over 90 days (12 tenants, 60 keys, 6 models) with
COPY, then times the admin API's usage queries (the same ``usage_report`` the API runs;
aggregation in the database) — each ``--repeat`` times — and, through a gateway on
loopback, ``GET /admin/v1/usage`` end to end. Prints p50 / p95 per query and the plan
PostgreSQL chose, and drops the database afterwards.
"""

from __future__ import annotations

import argparse
import json
import random
import statistics
import sys
import time
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[1]
MODELS = ["qwen2.5-7b", "qwen3-8b", "qwen3-32b", "qwen-max", "qwen2.5-1.5b", "kb:faq"]


def load(url: str, rows: int, now: datetime) -> None:
    import psycopg

    rng = random.Random(7)
    tenants = [f"tenant{i:02d}" for i in range(12)]
    keys = [(tenants[i % 12], f"key_{i:012x}") for i in range(60)]
    with psycopg.connect(url) as conn, conn.cursor() as cur:
        columns = (
            "request_id, ts, tenant, key_id, model, backend, prompt_tokens, completion_tokens, "
            "latency_ms, ttft_ms, status, route, endpoint, reason"
        )
        with cur.copy(f"COPY usage_ledger ({columns}) FROM STDIN") as copy:
            for i in range(rows):
                tenant, key = keys[rng.randrange(60)]
                ts = now - timedelta(seconds=rng.uniform(0, 90 * 86400))
                status = 200 if rng.random() > 0.03 else 429
                copy.write_row(
                    (f"req-{i}", ts, tenant, key, MODELS[rng.randrange(6)], "local",
                     rng.randrange(50, 3000), rng.randrange(1, 800), rng.randrange(80, 9000),
                     rng.randrange(30, 2000), status, "local", "chat",
                     "ok" if status == 200 else "quota.key.rpm")
                )  # fmt: skip
        conn.commit()
        cur.execute("ANALYZE usage_ledger")


def timed(fn: Any, repeat: int) -> dict[str, float]:
    fn()  # warm
    times = []
    for _ in range(repeat):
        started = time.perf_counter()
        fn()
        times.append((time.perf_counter() - started) * 1000)
    times.sort()
    return {
        "p50_ms": round(statistics.median(times), 1),
        "p95_ms": round(times[max(0, int(len(times) * 0.95) - 1)], 1),
        "max_ms": round(times[-1], 1),
    }


def over_http(sa_url: str, name: str, now: datetime, repeat: int) -> dict[str, Any]:
    """``GET /admin/v1/usage`` through a gateway on loopback, and the console's first load."""
    import httpx

    from heshi.config import HeshiConfig, LocalEngineConfig, StoreConfig
    from heshi.gateway.app import create_app
    from tests.loopback import serve_app

    result: dict[str, Any] = {}
    config = HeshiConfig(
        home=Path("/tmp") / name,
        engine=LocalEngineConfig(enabled=False),
        store=StoreConfig(url=sa_url),
    )
    with serve_app(create_app(config, {})) as base, httpx.Client(base_url=base) as client:
        headers = {"Authorization": "Bearer bench-token"}
        since = (now - timedelta(days=30)).isoformat()

        def http() -> None:
            r = client.get("/admin/v1/usage", params={"since": since, "by": "day"}, headers=headers)
            assert r.status_code == 200, r.text

        result["http_30_days_by_day"] = timed(http, repeat)
        print(f"{'GET /admin/v1/usage, 30 days by day':36s} {result['http_30_days_by_day']}")
        # what a browser downloads to show the console's first page
        page = client.get("/console")
        files = ["/console/static/console.css", "/console/static/console.js"]
        first_load = len(page.content) + sum(len(client.get(f).content) for f in files)
        result["console_first_load_bytes"] = first_load
        print(f"console first load: {first_load} bytes (page, stylesheet, script)")
    return result


def main() -> int:
    sys.path.insert(0, str(ROOT))
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--pg", default="postgresql+psycopg://postgres@127.0.0.1:5432/postgres")
    parser.add_argument("--rows", type=int, default=1_000_000)
    parser.add_argument("--repeat", type=int, default=20)
    parser.add_argument("--json", type=Path)
    args = parser.parse_args()

    from sqlalchemy import create_engine, make_url, text

    from heshi.store.db import Database
    from heshi.store.usage import usage_report

    name = f"heshi_usage_bench_{int(time.time())}"
    admin = create_engine(args.pg, isolation_level="AUTOCOMMIT")
    with admin.connect() as conn:
        conn.execute(text(f'CREATE DATABASE "{name}"'))
    url = make_url(args.pg).set(database=name)
    sa_url = url.render_as_string(hide_password=False)
    result: dict[str, Any] = {"rows": args.rows}
    try:
        db = Database(sa_url)
        db.migrate()
        now = datetime.now(UTC)
        started = time.perf_counter()
        load(sa_url.replace("+psycopg", ""), args.rows, now)
        result["load_s"] = round(time.perf_counter() - started, 1)
        queries = {
            "all tenants, 30 days, by day": {"tenant": None, "days": 30, "by": "day"},
            "all tenants, 30 days, by model": {"tenant": None, "days": 30, "by": "model"},
            "all tenants, 90 days, by tenant": {"tenant": None, "days": 90, "by": "tenant"},
            "one tenant, 30 days, by day": {"tenant": "tenant03", "days": 30, "by": "day"},
            "one tenant, 7 days, by key": {"tenant": "tenant03", "days": 7, "by": "key"},
        }
        timings: dict[str, Any] = {}
        for label, q in queries.items():
            since = now - timedelta(days=q["days"])

            def run(q: dict[str, Any] = q, since: datetime = since) -> Any:
                return usage_report(db, tenant=q["tenant"], since=since, by=q["by"])

            timings[label] = timed(run, args.repeat)
            print(f"{label:36s} {timings[label]}", flush=True)
        result["store"] = timings
        with db.engine.connect() as conn:
            baseline_sql = text(
                "SELECT to_char(timezone('UTC', ts), 'YYYY-MM-DD') AS d, count(*), "
                "sum(prompt_tokens), sum(completion_tokens) FROM usage_ledger "
                "WHERE ts >= :since GROUP BY d ORDER BY d"
            )
            since30 = now - timedelta(days=30)
            result["baseline_to_char_30_days_by_day"] = timed(
                lambda: conn.execute(baseline_sql, {"since": since30}).all(), args.repeat
            )
        print(
            f"{'baseline: to_char per row, 30 days':36s} "
            f"{result['baseline_to_char_30_days_by_day']}"
        )
        result |= over_http(sa_url, name, now, args.repeat)
        with db.read() as conn:
            since = now - timedelta(days=30)
            plan = conn.execute(
                text(
                    "EXPLAIN SELECT date(timezone('UTC', ts)), count(*), "
                    "sum(prompt_tokens) FROM usage_ledger WHERE ts >= :since GROUP BY 1"
                ),
                {"since": since},
            ).scalars()
            result["plan"] = list(plan)
        print("\n".join(result["plan"]))
        db.dispose()
    finally:
        with admin.connect() as conn:
            conn.execute(text(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)'))
        admin.dispose()
    if args.json:
        args.json.write_text(json.dumps(result, indent=1), encoding="utf-8")
    return 0


if __name__ == "__main__":
    import os

    os.environ.setdefault("HESHI_ADMIN_TOKEN", "bench-token")
    sys.exit(main())
