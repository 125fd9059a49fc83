"""Upstream slow or down: a prompt, documented error — never a hang — and every routed
response (success or failure) says which backend and route answered, as the ledger does.

What the router documents (``heshi.routing.router``): a backend silent for longer than
its ``timeout`` fails with ``UpstreamTimeout`` (504); connection errors are 502; both
are retried ``routing.retries`` times, and the last error is returned. Once a backend's
breaker is open, requests fail at once with 503 ``backend_unavailable`` and Retry-After.
"""

from __future__ import annotations

from pathlib import Path

import httpx

from heshi.store.db import Database
from tests.conftest import ADMIN
from tests.fakes.upstream import FakeUpstream
from tests.fakes.waiting import wait_until
from tests.governance.conftest import (
    ALIAS,
    GatewayFactory,
    RunningGateway,
    Upstream,
    chat_body,
    gateway_config,
    row_for,
)

HANG_GUARD = 60  # client timeout: only there so a hang fails instead of blocking forever


def assert_routed(r: httpx.Response, db: Database, gw: RunningGateway) -> None:
    """The response names backend and route, and the ledger row says the same."""
    assert r.headers["x-heshi-backend"] == "up", r.headers
    route = r.headers["x-heshi-route"]
    assert route.startswith(f"{ALIAS}->up"), route
    gw.flush()
    row = row_for(db, r.headers["x-request-id"])
    assert (row["backend"], row["route"], row["status"]) == ("up", route, r.status_code)


def wait_until_healthy(client: httpx.Client, gw: RunningGateway) -> None:
    """Wait for the start-up health check to have seen the backend (bounded)."""
    health = gw.url + "/healthz"
    wait_until(
        lambda: client.get(health, headers=ADMIN).json()["backends"]["up"]["healthy"] is True,
        timeout=HANG_GUARD,
        interval=0.02,
        message="the start-up health check never ran",
    )


def test_every_routed_response_names_backend_and_route_and_the_ledger_agrees(
    upstream: Upstream, start_gateway: GatewayFactory, store_db: Database, home: Path
) -> None:
    gw = start_gateway(gateway_config(home, upstream.base_url))
    with httpx.Client(timeout=HANG_GUARD) as client:
        for path, body in [
            ("/v1/chat/completions", chat_body()),
            ("/v1/completions", {"model": ALIAS, "prompt": "你好"}),
            ("/v1/embeddings", {"model": ALIAS, "input": "你好"}),
        ]:
            r = client.post(gw.url + path, json=body)
            assert r.status_code == 200, r.text
            assert_routed(r, store_db, gw)
        with client.stream(
            "POST", gw.url + "/v1/chat/completions", json=chat_body(stream=True)
        ) as r:
            assert r.read().endswith(b"data: [DONE]\n\n")
        assert_routed(r, store_db, gw)


def test_upstream_slower_than_its_timeout_is_a_504_while_it_still_works(
    upstream: Upstream, start_gateway: GatewayFactory, store_db: Database, home: Path
) -> None:
    gw = start_gateway(gateway_config(home, upstream.base_url, timeout=0.2, retries=1))
    upstream.state.hold = True  # the upstream answers only when the test says so: never
    with httpx.Client(timeout=HANG_GUARD) as client:
        wait_until_healthy(client, gw)
        for stream in (False, True):
            calls = upstream.state.calls
            r = client.post(gw.url + "/v1/chat/completions", json=chat_body(stream=stream))
            assert r.status_code == 504, r.text
            error = r.json()["error"]
            assert (error["type"], error["code"]) == ("upstream_error", "upstream_timeout")
            assert "0.2s" in error["message"]
            # one try plus one retry; the upstream is held until the test ends, so this
            # answer came without waiting for it (a hang would hit the client's guard)
            assert upstream.state.calls - calls == 2
            assert r.headers["x-heshi-route"] == f"{ALIAS}->up(alias);up:504;retry->up;up:504"
            assert_routed(r, store_db, gw)


def test_upstream_down_is_502_then_503_once_its_breaker_opens(
    start_gateway: GatewayFactory, store_db: Database, home: Path
) -> None:
    with FakeUpstream() as up, httpx.Client(timeout=HANG_GUARD) as client:
        config = gateway_config(home, up.base_url, breaker_failures=3)
        gw = start_gateway(config)
        wait_until_healthy(client, gw)
        assert client.post(gw.url + "/v1/chat/completions", json=chat_body()).status_code == 200
    # the upstream server is gone now: its port refuses connections
    with httpx.Client(timeout=HANG_GUARD) as client:
        for stream in (False, True, False):
            r = client.post(gw.url + "/v1/chat/completions", json=chat_body(stream=stream))
            assert r.status_code == 502, r.text
            error = r.json()["error"]
            assert error["code"] == "bad_gateway" and "up" in error["message"]
            assert r.headers["x-heshi-route"] == f"{ALIAS}->up(alias);up:502"
            assert_routed(r, store_db, gw)
        for stream in (False, True):
            r = client.post(gw.url + "/v1/chat/completions", json=chat_body(stream=stream))
            assert r.status_code == 503, r.text
            assert r.json()["error"]["code"] == "backend_unavailable"
            assert int(r.headers["retry-after"]) >= 1
            assert r.headers["x-heshi-backend"] == "none"
            assert r.headers["x-heshi-route"] == f"{ALIAS}(open:up)"
            gw.flush()
            assert row_for(store_db, r.headers["x-request-id"])["route"] == f"{ALIAS}(open:up)"
