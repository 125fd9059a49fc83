"""Two gateway replicas sharing one Redis (and one database) enforce one budget.

Without Redis each replica would count on its own and admit the budget twice over.
"""

from __future__ import annotations

import asyncio
from collections.abc import Callable
from pathlib import Path

import httpx

from heshi.config import StoreConfig
from heshi.engines.sizing import estimate_prompt_tokens
from heshi.store.db import Database
from heshi.store.keys import KeyStore
from tests.governance.conftest import (
    REDIS_URL,
    GatewayFactory,
    Upstream,
    bearer,
    chat_body,
    gateway_config,
    ledger_rows,
)

ADMITS = 10


async def test_two_replicas_sharing_redis_admit_exactly_the_budget(
    upstream: Upstream,
    start_gateway: GatewayFactory,
    keys: KeyStore,
    store_db: Database,
    home: Path,
    redis_cleanup: Callable[[str], None],
) -> None:
    body = chat_body("你好", max_tokens=20)
    upstream.state.prompt_tokens = estimate_prompt_tokens(body)
    cost = estimate_prompt_tokens(body) + 20  # reserved, and what upstream will report
    plaintext, key = keys.create("acme", "shared", budget_tokens=ADMITS * cost)
    redis_cleanup(f"key:{key.id}")
    store = StoreConfig(redis_url=REDIS_URL, ledger_flush_seconds=0.05)
    config = gateway_config(home, upstream.base_url).model_copy(update={"store": store})
    replicas = [start_gateway(config), start_gateway(config)]
    upstream.state.delay = 0.02  # keep requests in flight on both replicas at once
    async with httpx.AsyncClient(timeout=60) as client:
        responses = await asyncio.gather(
            *(
                client.post(
                    replicas[i % 2].url + "/v1/chat/completions",
                    json=body | {"stream": i % 3 == 0},
                    headers=bearer(plaintext),
                )
                for i in range(6 * ADMITS)
            )
        )
    statuses = [r.status_code for r in responses]
    assert statuses.count(200) == ADMITS, statuses
    assert statuses.count(429) == 5 * ADMITS
    assert {r.json()["error"]["code"] for r in responses if r.status_code == 429} == {
        "insufficient_quota"
    }
    assert upstream.state.calls == ADMITS
    for replica in replicas:
        replica.flush()
    rows = ledger_rows(store_db)
    served = [r for r in rows if r["status"] == 200]
    assert len(served) == ADMITS and len(rows) == 6 * ADMITS  # refusals have rows too
    assert sum(r["prompt_tokens"] + r["completion_tokens"] for r in rows) == ADMITS * cost
