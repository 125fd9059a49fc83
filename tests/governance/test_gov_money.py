"""Budgets in money through real HTTP: a key's or tenant's lifetime spend in yuan, at the
``pricing`` table's prices, reserved before the call like a token budget.

A request reserves its prompt estimate and ``max_tokens`` at the model's price; the fake
upstream reports exactly those tokens, so what a request costs, and how many requests a
budget admits, is known in advance.
"""

from __future__ import annotations

import asyncio
from collections.abc import Callable
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import httpx

from heshi.config import HeshiConfig, KnowledgeConfig, PricingConfig, StoreConfig, TenantConfig
from heshi.config.pricing import ModelPrice
from heshi.engines.sizing import estimate_prompt_tokens
from heshi.gateway.quota import money_scope
from heshi.store.db import Database
from heshi.store.keys import KeyStore
from heshi.store.ledger import prune
from tests.fakes.upstream import UPSTREAM_MODEL
from tests.governance.conftest import (
    ALIAS,
    OTHER_ALIAS,
    REDIS_URL,
    GatewayFactory,
    Upstream,
    bearer,
    chat_body,
    gateway_config,
    ledger_rows,
)

MAX_TOKENS = 10
PRICE = ModelPrice(input=2.0, output=8.0)  # CNY per million tokens: micro-yuan per token


def priced(config: HeshiConfig) -> HeshiConfig:
    """``config`` with a price for ALIAS only (OTHER_ALIAS, the same upstream, is free)."""
    return config.model_copy(update={"pricing": PricingConfig(models={ALIAS: PRICE})})


def metered_body(upstream: Upstream, **extra: Any) -> tuple[dict[str, Any], int]:
    """A chat body and what it costs in micro-yuan (reserved, then reported exactly)."""
    body = chat_body("请问退货要几天", max_tokens=MAX_TOKENS, **extra)
    prompt = estimate_prompt_tokens(body)
    upstream.state.prompt_tokens = prompt
    return body, PRICE.micro_yuan(prompt, MAX_TOKENS)


def yuan(micro: int) -> float:
    return micro / 1_000_000


def post(client: httpx.Client, url: str, body: dict[str, Any], key: str) -> httpx.Response:
    return client.post(url + "/v1/chat/completions", json=body, headers=bearer(key))


def test_a_key_spend_budget_admits_what_it_can_pay_for_then_refuses_with_the_amounts(
    upstream: Upstream,
    start_gateway: GatewayFactory,
    keys: KeyStore,
    store_db: Database,
    home: Path,
) -> None:
    body, cost = metered_body(upstream)
    plaintext, key = keys.create("acme", "shop", budget_cny=yuan(3 * cost))
    assert key.budget_micro == 3 * cost
    gw = start_gateway(priced(gateway_config(home, upstream.base_url)))
    with httpx.Client(timeout=30) as client:
        assert [post(client, gw.url, body, plaintext).status_code for _ in range(3)] == [200] * 3
        refused = post(client, gw.url, body, plaintext)
        # a model without a price: its spend could not be counted, so a budgeted key is
        # refused it (by any name: the backend's own model name is not priced either)
        unpriced = post(client, gw.url, body | {"model": OTHER_ALIAS}, plaintext)
        raw = post(client, gw.url, body | {"model": UPSTREAM_MODEL}, plaintext)
        unbudgeted, _ = keys.create("acme", "free")
        gw.gov.auth.refresh_now()
        free = post(client, gw.url, body | {"model": OTHER_ALIAS}, unbudgeted)
    assert refused.status_code == 429 and "retry-after" not in refused.headers
    error = refused.json()["error"]
    assert error["code"] == "insufficient_quota"
    assert key.id in error["message"] and "spend budget" in error["message"]
    assert f"{yuan(3 * cost):.4f} spent" in error["message"]
    for refusal in (unpriced, raw):
        assert refusal.status_code == 403, refusal.text
        assert refusal.json()["error"]["code"] == "model_not_priced"
        assert "no price" in refusal.json()["error"]["message"]
    assert free.status_code == 200, free.text  # without a spend budget, unpriced is free
    assert upstream.state.calls == 4
    gw.flush()
    rows = ledger_rows(store_db)
    assert [r["reason"] for r in rows] == ["ok"] * 3 + ["quota.key.budget_cny"] + [
        "key.model_not_priced"
    ] * 2 + ["ok"]
    assert [r["cost_micro"] for r in rows] == [cost] * 3 + [0, None, None, None]


async def test_200_concurrent_requests_against_a_tenant_spend_budget_that_admits_exactly_40(
    upstream: Upstream,
    start_gateway: GatewayFactory,
    keys: KeyStore,
    store_db: Database,
    home: Path,
) -> None:
    body, cost = metered_body(upstream)
    tenants = {"acme": TenantConfig(budget_cny=yuan(40 * cost))}
    config = priced(gateway_config(home, upstream.base_url, tenants=tenants))
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
    assert statuses.count(200) == 40 and statuses.count(429) == 160, statuses
    assert upstream.state.calls == 40  # refused requests never reached the backend
    gw.flush()
    rows = ledger_rows(store_db)
    assert sum(r["cost_micro"] for r in rows) == 40 * cost
    assert {r["reason"] for r in rows if r["status"] == 429} == {"quota.tenant.budget_cny"}


async def test_a_request_refused_by_a_rate_limit_holds_none_of_the_spend_budget(
    upstream: Upstream, start_gateway: GatewayFactory, keys: KeyStore, home: Path
) -> None:
    body, cost = metered_body(upstream)
    tenants = {"acme": TenantConfig(rpm=1)}
    plaintext, key = keys.create("acme", "shop", budget_cny=yuan(2 * cost))
    gw = start_gateway(priced(gateway_config(home, upstream.base_url, tenants=tenants)))
    async with httpx.AsyncClient(timeout=30) as client:
        first = await client.post(
            gw.url + "/v1/chat/completions", json=body, headers=bearer(plaintext)
        )
        second = await client.post(
            gw.url + "/v1/chat/completions", json=body, headers=bearer(plaintext)
        )
    assert first.status_code == 200
    assert second.status_code == 429 and second.json()["error"]["code"] == "rate_limit_exceeded"
    usage = await gw.gov.admission.usage(money_scope("key", key.id, 2 * cost))
    assert (usage.budget_spent, usage.budget_reserved) == (cost, 0)


def test_spend_survives_a_restart_and_pruning_of_the_ledger(
    upstream: Upstream,
    start_gateway: GatewayFactory,
    keys: KeyStore,
    store_db: Database,
    home: Path,
) -> None:
    body, cost = metered_body(upstream)
    plaintext, _ = keys.create("acme", "shop", budget_cny=yuan(5 * cost))
    config = priced(gateway_config(home, upstream.base_url))
    first = start_gateway(config)
    with httpx.Client(timeout=30) as client:
        assert [post(client, first.url, body, plaintext).status_code for _ in range(3)] == [200] * 3
        first.flush()
        # every row older than a day, a year from now: all moved into the pruned totals
        assert prune(store_db, 1, now=datetime.now(UTC) + timedelta(days=365)) == 3
        assert ledger_rows(store_db) == []
        second = start_gateway(config)  # restores what was spent, from the totals
        statuses = [post(client, second.url, body, plaintext).status_code for _ in range(3)]
    assert statuses == [200, 200, 429]


async def test_two_replicas_sharing_redis_admit_exactly_the_spend_budget(
    upstream: Upstream,
    start_gateway: GatewayFactory,
    keys: KeyStore,
    store_db: Database,
    home: Path,
    redis_cleanup: Callable[[str], None],
) -> None:
    body, cost = metered_body(upstream)
    plaintext, key = keys.create("acme", "shared", budget_cny=yuan(10 * cost))
    redis_cleanup(f"key.cny:{key.id}")
    store = StoreConfig(redis_url=REDIS_URL, ledger_flush_seconds=0.05)
    config = priced(gateway_config(home, upstream.base_url)).model_copy(update={"store": store})
    replicas = [start_gateway(config), start_gateway(config)]
    upstream.state.delay = 0.02
    async with httpx.AsyncClient(timeout=60) as client:
        responses = await asyncio.gather(
            *(
                client.post(
                    replicas[i % 2].url + "/v1/chat/completions",
                    json=body | {"stream": i % 3 == 0},
                    headers=bearer(plaintext),
                )
                for i in range(60)
            )
        )
    statuses = [r.status_code for r in responses]
    assert statuses.count(200) == 10 and statuses.count(429) == 50, statuses
    for replica in replicas:
        replica.flush()
    assert sum(r["cost_micro"] or 0 for r in ledger_rows(store_db)) == 10 * cost


def test_a_knowledge_base_answer_reserves_what_its_passages_can_cost(
    upstream: Upstream,
    start_gateway: GatewayFactory,
    keys: KeyStore,
    store_db: Database,
    home: Path,
) -> None:
    from heshi.apps.kb.index import E5Vectors
    from heshi.apps.kb.ingest import ingest
    from heshi.apps.kb.store import KnowledgeBaseStore

    # answers quote long passages: each costs far more than the question and max_tokens
    prices = home.parent / "价格.md"
    prices.write_text(
        "# 价格\n"
        + "\n".join(
            f"团队版第{i}档每人每年 {300 + i} 元，最多 {50 + i} 人，含培训。" for i in range(40)
        ),
        "utf-8",
    )
    store = KnowledgeBaseStore(store_db)
    store.create("shop")
    assert ingest(store, "shop", [prices], E5Vectors()).count("added") == 1
    body = {
        "model": "kb:shop",
        "max_tokens": 1,
        "messages": [{"role": "user", "content": "团队版多少钱"}],
    }
    naive = PRICE.micro_yuan(estimate_prompt_tokens(body), 1)  # the question and max_tokens
    budget = 100 * naive
    plaintext, _ = keys.create("acme", "kb", budget_cny=yuan(budget))
    kb = KnowledgeConfig(model=ALIAS, min_similarity=0.0, max_doubt=1.0, answer_style="quote")
    config = gateway_config(home, upstream.base_url).model_copy(
        update={"kb": kb, "pricing": PricingConfig(models={"kb:shop": PRICE})}
    )
    gw = start_gateway(config)
    with httpx.Client(timeout=60) as client:
        statuses = [post(client, gw.url, body, plaintext).status_code for _ in range(10)]
    gw.flush()
    spent = sum(r["cost_micro"] or 0 for r in ledger_rows(store_db))
    assert 200 in statuses and statuses[-1] == 429, statuses
    assert naive * 8 < spent <= budget  # answers cost much more than asked; never overrun
