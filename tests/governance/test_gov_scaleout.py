"""Scale-out on one machine: two ``heshi serve`` replicas behind a load balancer, one
PostgreSQL, one Redis, two upstreams, load from one client — and one replica killed
(``kill -9``) mid-run.

What must hold:

- **no request lost beyond those in flight on the killed replica**: every other request
  gets an answer (200) or a budget refusal (429) — the balancer sends new connections to
  the survivor;
- **quotas exact**: the key's budget admits exactly its worth of requests across both
  replicas; only requests killed in flight may have been admitted without an answer;
- **ledger complete**: after the killed replica restarts on its own home (replaying its
  journal), every answered request has its row in the shared PostgreSQL ledger.

The replicas read their database and Redis URLs from the environment (``store.url_env``
and ``store.redis_url_env``), as the Helm chart runs them.
"""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest

from heshi.config import BackendConfig, RouteConfig, RouteTarget, StoreConfig
from heshi.engines.sizing import estimate_prompt_tokens
from heshi.store.db import Database
from heshi.store.keys import KeyStore
from tests.fakes.proxy import TCPBalancer
from tests.fakes.upstream import FakeUpstream
from tests.fakes.waiting import wait_until_async
from tests.governance.conftest import (
    ALIAS,
    REDIS_URL,
    UPSTREAM_MODEL,
    ProcessFactory,
    Upstream,
    bearer,
    chat_body,
    gateway_config,
    ledger_rows,
)

REQUESTS = 240
ADMITS = 120  # the key's budget, in requests
WORKERS = 16
KILL_AFTER = 40  # answered requests before the kill
MAX_TOKENS = 20


async def _load(url: str, key: str, kill: Callable[[], None]) -> list[Any]:
    """REQUESTS requests from WORKERS workers, each on a new connection (so the balancer
    spreads them); ``kill()`` after KILL_AFTER answers. Returns every outcome (a
    response, or the transport error)."""
    outcomes: list[Any] = []
    queue = list(range(REQUESTS))
    limits = httpx.Limits(max_keepalive_connections=0)

    async def worker(client: httpx.AsyncClient) -> None:
        while queue:
            i = queue.pop()
            body = chat_body("请问退货要几天", max_tokens=MAX_TOKENS, stream=i % 4 == 0)
            try:
                async with client.stream(
                    "POST", url + "/v1/chat/completions", json=body, headers=bearer(key)
                ) as r:
                    raw = await r.aread()
                if body["stream"] and r.status_code == 200 and not raw.endswith(b"[DONE]\n\n"):
                    outcomes.append(ConnectionError("stream cut short"))
                else:
                    outcomes.append(r)
            except httpx.TransportError as exc:
                outcomes.append(exc)

    async with httpx.AsyncClient(timeout=60, limits=limits) as client:
        tasks = [asyncio.create_task(worker(client)) for _ in range(WORKERS)]

        async def enough() -> bool:
            return sum(isinstance(o, httpx.Response) for o in outcomes) >= KILL_AFTER

        await wait_until_async(enough, timeout=120, interval=0.002, message="no answers")
        kill()
        await asyncio.gather(*tasks)
    return outcomes


@pytest.fixture
def shared_db(pg_url: str) -> Iterator[Database]:
    """The replicas' PostgreSQL database (this test's own), migrated; disposed after."""
    db = Database(pg_url)
    db.migrate()
    yield db
    db.dispose()


async def test_a_replica_killed_mid_run_loses_only_its_in_flight_requests(
    upstream: Upstream,
    spawn_gateway: ProcessFactory,
    shared_db: Database,
    pg_url: str,
    redis_cleanup: Callable[[str], None],
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    db = shared_db
    body = chat_body("请问退货要几天", max_tokens=MAX_TOKENS)
    cost = estimate_prompt_tokens(body) + MAX_TOKENS  # reserved, then reported exactly
    plaintext, key = KeyStore(db).create("acme", "scale", budget_tokens=ADMITS * cost)
    redis_cleanup(f"key:{key.id}")
    monkeypatch.setenv("HESHI_SCALE_DB", pg_url)
    monkeypatch.setenv("HESHI_SCALE_REDIS", REDIS_URL)

    with FakeUpstream() as second_upstream, contextlib.ExitStack() as stack:
        for up in (upstream, second_upstream):
            up.state.prompt_tokens = estimate_prompt_tokens(body)
            up.state.delay = 0.05  # requests stay in flight on both replicas
        base = gateway_config(tmp_path / "unused", upstream.base_url)
        backends = {
            "up-a": BackendConfig(base_url=upstream.base_url),
            "up-b": BackendConfig(base_url=second_upstream.base_url),
        }
        targets = [RouteTarget(backend=b, model=UPSTREAM_MODEL) for b in backends]
        routes = {ALIAS: RouteConfig(targets=targets)}
        routing = base.routing.model_copy(update={"routes": routes})
        store = StoreConfig(
            url_env="HESHI_SCALE_DB", redis_url_env="HESHI_SCALE_REDIS", ledger_flush_seconds=0.2
        )
        configs = [
            base.model_copy(
                update={
                    "home": tmp_path / f"home{i}",
                    "backends": backends,
                    "aliases": {},
                    "routing": routing,
                    "store": store,
                }
            )
            for i in (1, 2)
        ]
        replicas = [spawn_gateway(c) for c in configs]
        for replica in replicas:
            replica.start()
        ports = [int(r.url.rsplit(":", 1)[1]) for r in replicas]
        balancer = stack.enter_context(TCPBalancer([("127.0.0.1", p) for p in ports]))

        outcomes = await _load(balancer.url, plaintext, replicas[0].kill)
        in_flight, survivor_cut = balancer.cut_by(0), balancer.cut_by(1)
        served_before = (balancer.served_by(0), balancer.served_by(1))

        # the killed replica comes back on its own home and replays its journal
        replicas[0].start()
        ok_ids = {
            o.headers["x-request-id"]
            for o in outcomes
            if isinstance(o, httpx.Response) and o.status_code == 200
        }

        async def ledger_has_them() -> bool:
            return ok_ids <= {r["request_id"] for r in ledger_rows(db)}

        await wait_until_async(ledger_has_them, timeout=30, interval=0.1, message="ledger")
        served_upstream = (len(upstream.state.requests), len(second_upstream.state.requests))

    statuses = [o.status_code for o in outcomes if isinstance(o, httpx.Response)]
    lost = [o for o in outcomes if not isinstance(o, httpx.Response)]
    ok, refused = statuses.count(200), statuses.count(429)
    # nothing lost but what was in flight on the killed replica (the connections it cut
    # when it died); the survivor cut none, and nothing else failed
    assert in_flight >= 1, "the kill found nothing in flight: the test proves nothing"
    assert len(lost) <= in_flight and survivor_cut == 0, (len(lost), in_flight, survivor_cut)
    assert ok + refused + len(lost) == REQUESTS, sorted(set(statuses))
    # quotas exact across replicas: no more than the budget's worth admitted, and only
    # requests killed in flight may have been admitted without an answer
    assert ok <= ADMITS <= ok + len(lost), (ok, len(lost))
    # ledger complete: every answer has its row (checked above), and answered rows are
    # the answers plus at most the killed in-flight ones
    rows = [r for r in ledger_rows(db) if r["key_id"] == key.id and r["status"] == 200]
    assert ok_ids <= {r["request_id"] for r in rows}
    assert ok <= len(rows) <= ok + len(lost)
    assert sum(r["prompt_tokens"] + r["completion_tokens"] for r in rows) <= ADMITS * cost
    # both replicas and both upstreams carried load
    assert min(served_before) > 0 and min(served_upstream) > 0, (served_before, served_upstream)
    for replica in replicas:
        replica.stop()  # a clean stop leaves no journal behind
        assert not list((replica.home / "ledger-spool").glob("*.jsonl"))
