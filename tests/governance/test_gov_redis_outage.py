"""Redis (the shared quota store) going away and coming back.

The outage is real: the gateway reaches Redis through a loopback relay that the test
cuts (open connections are closed, new ones refused) and restores. ``store.redis_outage``
decides what limited requests get meanwhile: ``reject`` → 503 ``admission_unavailable``
with Retry-After, ``allow`` → served unchecked. Usage is metered either way.
"""

from __future__ import annotations

import threading
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Literal

import httpx
import pytest
from redis import Redis

from heshi.config import StoreConfig
from heshi.store.db import Database
from heshi.store.keys import KeyStore
from tests.conftest import ADMIN
from tests.fakes.waiting import wait_until
from tests.governance.conftest import (
    REDIS_URL,
    GatewayFactory,
    RunningGateway,
    Upstream,
    bearer,
    chat_body,
    gateway_config,
    ledger_rows,
)
from tests.loopback import TcpRelay

WAIT = 60.0  # bound on waiting for a recovery; never reached when it works


@pytest.fixture
def relay() -> Iterator[TcpRelay]:
    target = Redis.from_url(REDIS_URL).connection_pool.connection_kwargs
    r = TcpRelay(str(target.get("host", "127.0.0.1")), int(target.get("port", 6379)))
    yield r
    r.close()


def _start(
    start_gateway: GatewayFactory,
    upstream: Upstream,
    home: Path,
    relay: TcpRelay,
    policy: Literal["reject", "allow"],
) -> RunningGateway:
    store = StoreConfig(
        redis_url=relay.url("redis", "/0"),
        redis_outage=policy,
        ledger_flush_seconds=0.05,
    )
    config = gateway_config(home, upstream.base_url).model_copy(update={"store": store})
    return start_gateway(config)


def _admission(client: httpx.Client, gw: RunningGateway) -> dict[str, object]:
    return dict(client.get(gw.url + "/healthz", headers=ADMIN).json()["admission"])


def test_reject_policy_answers_503_while_redis_is_away_and_recovers(
    upstream: Upstream,
    start_gateway: GatewayFactory,
    keys: KeyStore,
    store_db: Database,
    home: Path,
    relay: TcpRelay,
    redis_cleanup: Callable[[str], None],
) -> None:
    limited, key = keys.create("acme", "limited", rpm=1000, budget_tokens=100_000)
    unlimited, _ = keys.create("acme", "free")
    redis_cleanup(f"key:{key.id}")
    gw = _start(start_gateway, upstream, home, relay, "reject")
    url = gw.url + "/v1/chat/completions"
    with httpx.Client(timeout=WAIT) as client:
        assert client.post(url, json=chat_body(), headers=bearer(limited)).status_code == 200
        relay.cut()
        refused = client.post(url, json=chat_body(), headers=bearer(limited))
        assert refused.status_code == 503, refused.text
        assert refused.json()["error"]["code"] == "admission_unavailable"
        assert "retry shortly" in refused.json()["error"]["message"]
        assert refused.headers["retry-after"] == "1"
        assert _admission(client, gw) == {
            "store": "redis",
            "reachable": False,
            "on_outage": "reject",
        }
        # A key without limits needs no counter, so Redis being away does not matter.
        assert client.post(url, json=chat_body(), headers=bearer(unlimited)).status_code == 200
        relay.restore()
        assert client.post(url, json=chat_body(), headers=bearer(limited)).status_code == 200
        assert _admission(client, gw)["reachable"] is True
    gw.flush()
    statuses = sorted(r["status"] for r in ledger_rows(store_db))
    assert statuses.count(200) == 3  # every served request metered, the refusal not served


def test_allow_policy_serves_and_meters_while_redis_is_away(
    upstream: Upstream,
    start_gateway: GatewayFactory,
    keys: KeyStore,
    store_db: Database,
    home: Path,
    relay: TcpRelay,
    redis_cleanup: Callable[[str], None],
) -> None:
    plaintext, key = keys.create("acme", "limited", rpm=1000, budget_tokens=100_000)
    redis_cleanup(f"key:{key.id}")
    gw = _start(start_gateway, upstream, home, relay, "allow")
    url = gw.url + "/v1/chat/completions"
    with httpx.Client(timeout=WAIT) as client:
        relay.cut()
        for stream in (False, True):
            r = client.post(url, json=chat_body(stream=stream), headers=bearer(plaintext))
            assert r.status_code == 200, r.text
    gw.flush()
    rows = ledger_rows(store_db)
    assert [(r["key_id"], r["status"]) for r in rows] == [(key.id, 200), (key.id, 200)]
    assert all(r["prompt_tokens"] > 0 for r in rows)


def test_redis_lost_between_admission_and_settle_still_meters_the_request(
    upstream: Upstream,
    start_gateway: GatewayFactory,
    keys: KeyStore,
    store_db: Database,
    home: Path,
    relay: TcpRelay,
    redis_cleanup: Callable[[str], None],
) -> None:
    plaintext, key = keys.create("acme", "limited", tpm=1_000_000)
    redis_cleanup(f"key:{key.id}")
    gw = _start(start_gateway, upstream, home, relay, "reject")
    url = gw.url + "/v1/chat/completions"
    with httpx.Client(timeout=WAIT) as client:
        # A first request leaves a live pooled connection to Redis, so the held request's
        # admission does not have to open one (on a loaded machine a fresh connect through
        # the relay can outlast the client's 2-second timeout, which is not this test's case).
        warm = client.post(url, json=chat_body(max_tokens=3), headers=bearer(plaintext))
        assert warm.status_code == 200, warm.text
        before = upstream.state.calls
        upstream.state.hold = True  # admitted, then held at the upstream while Redis goes
        result: list[httpx.Response] = []
        sender = threading.Thread(
            target=lambda: result.append(
                client.post(url, json=chat_body(max_tokens=7), headers=bearer(plaintext))
            )
        )
        sender.start()
        wait_until(
            lambda: upstream.state.calls > before or _answered_early(result),
            timeout=WAIT,
            interval=0.01,
            message="the request never reached the upstream",
        )
        relay.cut()
        upstream.state.release.set()
        sender.join(WAIT)
    assert result and result[0].status_code == 200, result
    gw.flush()
    rows = ledger_rows(store_db)
    assert sorted((r["status"], r["completion_tokens"]) for r in rows) == [(200, 3), (200, 7)]


def _answered_early(result: list[httpx.Response]) -> bool:
    """Stop waiting at once, with the answer, if the request was answered without reaching
    the upstream (refused at admission)."""
    if result:
        answer = result[0]
        raise AssertionError(f"answered before the upstream: {answer.status_code} {answer.text}")
    return False


def test_redis_away_at_startup_then_budgets_are_seeded_from_the_ledger(
    upstream: Upstream,
    start_gateway: GatewayFactory,
    keys: KeyStore,
    store_db: Database,
    home: Path,
    relay: TcpRelay,
    redis_cleanup: Callable[[str], None],
) -> None:
    plaintext, key = keys.create("acme", "budgeted", budget_tokens=100_000)
    redis_cleanup(f"key:{key.id}")
    # Usage from before: a gateway without Redis spends some of the budget.
    alone = start_gateway(gateway_config(home, upstream.base_url))
    with httpx.Client(timeout=WAIT) as client:
        r = client.post(
            alone.url + "/v1/chat/completions", json=chat_body(), headers=bearer(plaintext)
        )
        assert r.status_code == 200
    alone.flush()
    spent = sum(r["prompt_tokens"] + r["completion_tokens"] for r in ledger_rows(store_db))
    assert spent > 0

    relay.cut()
    gw = _start(start_gateway, upstream, home, relay, "reject")  # starts without Redis
    url = gw.url + "/v1/chat/completions"
    with httpx.Client(timeout=WAIT) as client:
        assert client.post(url, json=chat_body(), headers=bearer(plaintext)).status_code == 503
        assert _admission(client, gw)["reachable"] is False
        relay.restore()
        # The first admission after the outage seeds the lifetime spend, then counts.
        assert client.post(url, json=chat_body(), headers=bearer(plaintext)).status_code == 200
        assert _admission(client, gw)["reachable"] is True
    gw.flush()
    total = sum(r["prompt_tokens"] + r["completion_tokens"] for r in ledger_rows(store_db))
    assert total > spent
    counter = Redis.from_url(REDIS_URL, decode_responses=True)
    try:
        assert int(counter.get(f"heshi:quota:key:{key.id}:spent") or 0) == total
    finally:
        counter.close()
