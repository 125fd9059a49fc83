"""``kill -9`` of a real ``heshi serve`` process under load, then a restart.

What must hold afterwards:

- the SQLite database passes ``PRAGMA integrity_check``; every ledger row is complete
  and valid (a batch is one transaction: all of it or none of it), no request_id twice;
- no usage row is lost. Rows the writer had not yet written at the moment of the kill
  (up to ``ledger_flush_seconds`` worth) were each appended to the ledger journal with
  one ``os.write`` when they were submitted; the OS keeps that page cache across a
  process kill, and the restarted gateway writes them before it serves. (An OS crash or
  power loss can still lose the unsynced tail: see ``heshi.store.ledger``.) A request the
  client saw complete — a JSON answer, or a stream up to ``data: [DONE]`` — was
  submitted before its last byte was sent, so each one is in the ledger;
- the budget after restart is exactly the ledger's sum: admission refuses a request
  exactly when ledger sum + request > budget.
"""

from __future__ import annotations

import asyncio
import re
from pathlib import Path
from typing import Any

import httpx

from heshi.config import StoreConfig
from heshi.engines.sizing import estimate_prompt_tokens
from heshi.store.db import Database
from heshi.store.keys import ApiKey, KeyStore
from tests.conftest import ADMIN
from tests.fakes.waiting import wait_until_async
from tests.governance.conftest import (
    ALIAS,
    ProcessFactory,
    Upstream,
    bearer,
    chat_body,
    gateway_config,
    ledger_rows,
)

BUDGET = 1_000_000
WORKERS = 8
KILL_AFTER = 150  # completed requests before the kill
REQUEST_ID = re.compile(r"^req_[0-9a-f]{32}$")


def check_rows(db: Database, key: ApiKey) -> list[dict[str, Any]]:
    """Integrity of the file and of every row; returns the rows."""
    with db.read() as conn:
        assert conn.exec_driver_sql("PRAGMA integrity_check").scalar_one() == "ok"
    rows = ledger_rows(db)
    ids = [r["request_id"] for r in rows]
    assert len(ids) == len(set(ids)), "a request_id appears twice"
    for row in rows:
        assert REQUEST_ID.match(row["request_id"]), row
        assert (row["tenant"], row["key_id"], row["model"], row["backend"]) == (
            "acme",
            key.id,
            ALIAS,
            "up",
        ), row
        assert row["route"] == f"{ALIAS}->up(alias)" and row["status"] == 200, row
        assert row["prompt_tokens"] == 5 and 5 <= row["completion_tokens"] < 5 + WORKERS, row
        assert row["latency_ms"] >= 0 and row["ts"] is not None, row
    return rows


async def load_until_killed(base_url: str, key: str, kill: Any) -> list[str]:
    """Concurrent unary and streaming requests; ``kill()`` once KILL_AFTER completed and
    the ledger has written some rows (so the kill finds rows written and rows not yet).

    Returns the request ids of the responses that completed (before or during the kill).
    """
    url = base_url + "/v1/chat/completions"
    completed: list[str] = []

    async def worker(client: httpx.AsyncClient, n: int) -> None:
        for i in range(10_000):
            body = chat_body(max_tokens=5 + n, stream=(i + n) % 2 == 0)
            try:
                async with client.stream("POST", url, json=body, headers=bearer(key)) as r:
                    raw = await r.aread()
            except httpx.TransportError:
                return  # the gateway is gone
            assert r.status_code == 200, raw
            if not body["stream"] or (raw.endswith(b"data: [DONE]\n\n") and b"error" not in raw):
                completed.append(r.headers["x-request-id"])

    async with httpx.AsyncClient(timeout=60) as client:
        tasks = [asyncio.create_task(worker(client, n)) for n in range(WORKERS)]

        async def ready_to_kill() -> bool:
            if len(completed) >= KILL_AFTER and await written(client, base_url):
                return True
            assert not any(t.done() for t in tasks), "a worker stopped before the kill"
            return False

        await wait_until_async(
            ready_to_kill,
            timeout=120,
            interval=0.005,
            message=lambda: f"{len(completed)} answers, or no ledger row, after 120 s",
        )
        kill()
        await asyncio.gather(*tasks)
    return completed


async def written(client: httpx.AsyncClient, base_url: str) -> int:
    """Rows the gateway's ledger writer has committed so far."""
    return int((await client.get(base_url + "/healthz", headers=ADMIN)).json()["ledger"]["written"])


async def test_kill_9_under_load_loses_no_row_and_budgets_match_the_ledger(
    upstream: Upstream,
    spawn_gateway: ProcessFactory,
    keys: KeyStore,
    store_db: Database,
    home: Path,
) -> None:
    plaintext, key = keys.create("acme", "load", budget_tokens=BUDGET)
    # A long flush interval: at the kill, up to half a second of rows is not yet written.
    store = StoreConfig(ledger_flush_seconds=0.5)
    config = gateway_config(home, upstream.base_url).model_copy(update={"store": store})
    upstream.state.delay = 0.002
    first = spawn_gateway(config)
    first.start()
    completed = await load_until_killed(first.url, plaintext, first.kill)
    journals = list((home / "ledger-spool").glob("*.jsonl"))
    assert journals, "the killed gateway left no journal: nothing to recover from"
    unwritten = set(completed) - {r["request_id"] for r in check_rows(store_db, key)}

    second = spawn_gateway(config)
    second.start()  # replays the journal before it serves
    rows = check_rows(store_db, key)
    ledger_ids = {r["request_id"] for r in rows}
    assert set(completed) <= ledger_ids, f"{len(set(completed) - ledger_ids)} rows lost"
    assert unwritten <= ledger_ids
    spent = sum(r["prompt_tokens"] + r["completion_tokens"] for r in rows)

    url = second.url + "/v1/chat/completions"
    prompt = estimate_prompt_tokens(chat_body())
    left = BUDGET - spent
    async with httpx.AsyncClient(timeout=60) as client:
        over = chat_body(max_tokens=left - prompt + 1)
        r = await client.post(url, json=over, headers=bearer(plaintext))
        assert r.status_code == 429, r.text
        assert f"({spent} spent + 0 reserved" in r.json()["error"]["message"]
        r = await client.post(
            url, json=chat_body(max_tokens=left - prompt), headers=bearer(plaintext)
        )
        assert r.status_code == 200, r.text
    second.stop()
    rows = ledger_rows(store_db)
    assert len(rows) == len(ledger_ids) + 2  # the refusal has a row of its own, costing 0
    assert [(r["status"], r["reason"]) for r in rows[-2:]] == [
        (429, "quota.key.budget_tokens"),
        (200, "ok"),
    ]
    assert not list((home / "ledger-spool").glob("*.jsonl")), "journal left after a clean stop"
