"""Admission through real HTTP: rate limits, shared tenant budgets, and a budget that is
checked (and reserved) before the call, so 200 concurrent requests cannot overrun it.

A request reserves ``estimate_prompt_tokens(body) + max_tokens``; the fake upstream is
set to report exactly that as its usage, so settling changes nothing and the number of
requests a budget admits is known in advance.
"""

from __future__ import annotations

import asyncio
from pathlib import Path
from typing import Any

import httpx

from heshi.config import TenantConfig
from heshi.engines.sizing import estimate_prompt_tokens
from heshi.store.db import Database
from heshi.store.keys import KeyStore
from tests.governance.conftest import (
    GatewayFactory,
    Upstream,
    bearer,
    chat_body,
    gateway_config,
    ledger_rows,
)

MAX_TOKENS = 10


def metered_body(upstream: Upstream, **extra: Any) -> tuple[dict[str, Any], int]:
    """A chat body and what it reserves; the upstream will report exactly that usage."""
    body = chat_body("你好", max_tokens=MAX_TOKENS, **extra)
    upstream.state.prompt_tokens = estimate_prompt_tokens(body)
    return body, estimate_prompt_tokens(body) + MAX_TOKENS


def test_fourth_request_over_rpm_3_is_429_with_retry_after_naming_the_limit(
    upstream: Upstream, start_gateway: GatewayFactory, keys: KeyStore, home: Path
) -> None:
    plaintext, key = keys.create("acme", "slowpoke", rpm=3)
    gw = start_gateway(gateway_config(home, upstream.base_url))
    with httpx.Client(timeout=30) as client:
        for _ in range(3):
            r = client.post(
                gw.url + "/v1/chat/completions", json=chat_body(), headers=bearer(plaintext)
            )
            assert r.status_code == 200, r.text
        r = client.post(
            gw.url + "/v1/chat/completions", json=chat_body(), headers=bearer(plaintext)
        )
    assert r.status_code == 429
    assert 1 <= int(r.headers["retry-after"]) <= 60
    error = r.json()["error"]
    assert (error["type"], error["code"]) == ("rate_limit_error", "rate_limit_exceeded")
    assert "requests-per-minute" in error["message"] and "limit 3" in error["message"]
    assert key.id in error["message"]
    assert upstream.state.calls == 3


def test_a_tenant_budget_is_shared_by_its_keys(
    upstream: Upstream,
    start_gateway: GatewayFactory,
    keys: KeyStore,
    store_db: Database,
    home: Path,
) -> None:
    body, cost = metered_body(upstream)
    config = gateway_config(
        home, upstream.base_url, tenants={"acme": TenantConfig(budget_tokens=3 * cost)}
    )
    first, _ = keys.create("acme", "first")
    second, _ = keys.create("acme", "second")
    other, _ = keys.create("globex", "other")
    gw = start_gateway(config)
    with httpx.Client(timeout=30) as client:

        def post(key: str) -> httpx.Response:
            return client.post(gw.url + "/v1/chat/completions", json=body, headers=bearer(key))

        assert [post(k).status_code for k in (first, first, second)] == [200, 200, 200]
        for key in (second, first):
            r = post(key)
            assert r.status_code == 429
            error = r.json()["error"]
            assert error["code"] == "insufficient_quota"
            assert "tenant acme" in error["message"] and "token budget" in error["message"]
            assert "retry-after" not in r.headers  # waiting does not refill a budget
        assert post(other).status_code == 200  # another tenant is not affected
    gw.flush()
    acme = [r for r in ledger_rows(store_db) if r["tenant"] == "acme"]
    assert sum(r["prompt_tokens"] + r["completion_tokens"] for r in acme) == 3 * cost


async def test_200_concurrent_requests_against_a_budget_that_admits_exactly_50(
    upstream: Upstream,
    start_gateway: GatewayFactory,
    keys: KeyStore,
    store_db: Database,
    home: Path,
) -> None:
    body, cost = metered_body(upstream)
    budget = 50 * cost
    config = gateway_config(
        home, upstream.base_url, tenants={"acme": TenantConfig(budget_tokens=budget)}
    )
    # two keys of one tenant: the budget they share is what must hold
    plaintexts = [keys.create("acme", name)[0] for name in ("a", "b")]
    upstream.state.delay = 0.02  # keep requests in flight together
    gw = start_gateway(config)
    limits = httpx.Limits(max_connections=200, max_keepalive_connections=200)
    async with httpx.AsyncClient(timeout=60, limits=limits) as client:
        responses = await asyncio.gather(
            *(
                client.post(
                    gw.url + "/v1/chat/completions",
                    json=body | {"stream": i % 4 == 0},
                    headers=bearer(plaintexts[i % 2]),
                )
                for i in range(200)
            )
        )
    statuses = [r.status_code for r in responses]
    assert statuses.count(200) == 50, statuses
    assert statuses.count(429) == 150
    refused = [r.json()["error"]["code"] for r in responses if r.status_code == 429]
    assert set(refused) == {"insufficient_quota"}
    assert upstream.state.calls == 50  # refused requests never reached the backend
    gw.flush()
    rows = ledger_rows(store_db)
    # one row per request: the 150 refusals are there too, with their reason, costing 0
    served = [r for r in rows if r["status"] == 200]
    refused_rows = [r for r in rows if r["status"] == 429]
    assert len(served) == 50 and len(refused_rows) == 150 and len(rows) == 200
    assert {r["reason"] for r in refused_rows} == {"quota.tenant.budget_tokens"}
    assert sum(r["prompt_tokens"] + r["completion_tokens"] for r in refused_rows) == 0
    spent = sum(r["prompt_tokens"] + r["completion_tokens"] for r in served)
    assert spent == budget
