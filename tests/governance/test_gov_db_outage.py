"""The database (PostgreSQL) unreachable for a while: the gateway keeps serving from its
cached keys, buffers ledger rows, and writes every one of them, once, when it returns.

The outage is real: the database stops accepting connections and every session on it
is terminated (``tests.store.databases.outage``), the gateway's own included.
"""

from __future__ import annotations

import logging
from collections.abc import Callable
from pathlib import Path
from typing import Any

import httpx
import pytest
from sqlalchemy import func, select

from heshi.config import HeshiConfig, StoreConfig
from heshi.store.db import Database
from heshi.store.keys import KeyStore
from heshi.store.tables import usage_ledger
from tests.conftest import ADMIN
from tests.fakes.waiting import wait_until
from tests.governance.conftest import (
    GatewayFactory,
    RunningGateway,
    Upstream,
    bearer,
    chat_body,
    gateway_config,
    ledger_rows,
)
from tests.store.databases import outage

WAIT = 60.0  # bound on waiting for the gateway to notice; never reached when it works


def ledger_health(client: httpx.Client, gw: RunningGateway) -> dict[str, Any]:
    return dict(client.get(gw.url + "/healthz", headers=ADMIN).json()["ledger"])


def test_gateway_serves_through_a_database_outage_and_loses_no_usage_row(
    upstream: Upstream,
    start_gateway: GatewayFactory,
    open_database: Callable[[HeshiConfig], Database],
    pg_url: str,
    home: Path,
    caplog: pytest.LogCaptureFixture,
) -> None:
    caplog.set_level(logging.WARNING)
    store = StoreConfig(url=pg_url, ledger_flush_seconds=0.05, key_refresh_seconds=0.05)
    config = gateway_config(home, upstream.base_url).model_copy(update={"store": store})
    db = open_database(config)
    keys = KeyStore(db)
    plaintext, key = keys.create("acme", "steady", budget_tokens=1_000_000)
    revoked, gone = keys.create("acme", "gone")
    keys.revoke(gone.id)
    gw = start_gateway(config)
    url = gw.url + "/v1/chat/completions"
    served: list[str] = []
    with httpx.Client(timeout=WAIT) as client:

        def send(i: int) -> None:
            r = client.post(url, json=chat_body(stream=i % 2 == 1), headers=bearer(plaintext))
            assert r.status_code == 200, r.text
            served.append(r.headers["x-request-id"])

        for i in range(5):
            send(i)
        gw.flush()
        written_before = ledger_health(client, gw)["written"]

        with outage(db):
            # the key cache has tried to reload and failed: from here on it is all we have
            wait_until(
                lambda: "cannot reload API keys" in caplog.text,
                timeout=WAIT,
                interval=0.02,
                message="gave up waiting for a failed key reload",
            )
            for i in range(20):
                send(i)
            r = client.post(url, json=chat_body(), headers=bearer(revoked))
            assert r.status_code == 401  # the cache still knows what was revoked
            r = client.post(url, json=chat_body(), headers=bearer("hs-unknown"))
            assert r.status_code == 401
            wait_until(
                lambda: not ledger_health(client, gw)["healthy"],
                timeout=WAIT,
                interval=0.02,
                message="gave up waiting for a failed ledger write",
            )
            health = ledger_health(client, gw)
            assert health["buffered"] + health["spooled"] == 20
            assert health["written"] == written_before

        gw.flush()  # the database is back
        assert ledger_health(client, gw)["healthy"]
        send(99)  # and the gateway still works normally
        gw.flush()

    rows = ledger_rows(db)
    assert sorted(r["request_id"] for r in rows) == sorted(served)  # none lost
    with db.read() as conn:
        distinct = conn.execute(select(func.count(func.distinct(usage_ledger.c.request_id))))
        assert distinct.scalar_one() == len(rows) == 26  # none duplicated
    assert {(r["key_id"], r["status"], r["backend"]) for r in rows} == {(key.id, 200, "up")}
