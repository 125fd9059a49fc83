"""A frozen database is not healthy (issue 9, defect 9): while the ledger cannot take
rows, /healthz says so with the lag (the gateway stays ready: it keeps serving and its
rows wait); afterwards every row is in."""

from __future__ import annotations

import sqlite3
from collections.abc import Callable
from pathlib import Path

import httpx
import pytest
from sqlalchemy import create_engine, text

from heshi.config import HeshiConfig, StoreConfig
from heshi.store.db import Database
from tests.conftest import ADMIN
from tests.fakes.waiting import wait_until
from tests.governance.conftest import (
    GatewayFactory,
    Upstream,
    chat_body,
    gateway_config,
    ledger_rows,
)


def _ledger(url: str) -> dict[str, object]:
    return dict(httpx.get(url + "/healthz", headers=ADMIN).json()["ledger"])


@pytest.mark.parametrize("dialect", ["sqlite", "postgresql"])
def test_a_frozen_ledger_database_is_reported_and_loses_nothing(
    upstream: Upstream,
    start_gateway: GatewayFactory,
    home: Path,
    dialect: str,
    request: pytest.FixtureRequest,
    open_database: Callable[[HeshiConfig], Database],
) -> None:
    store = StoreConfig(
        ledger_flush_seconds=0.05, ledger_stall_seconds=0.5, statement_timeout_seconds=1
    )
    if dialect == "postgresql":
        store = store.model_copy(update={"url": request.getfixturevalue("pg_url")})
    config = gateway_config(home, upstream.base_url, store=store)
    db = open_database(config)
    gw = start_gateway(config)
    url = gw.url
    assert httpx.post(url + "/v1/chat/completions", json=chat_body()).status_code == 200
    gw.flush()
    with _frozen(db, config):
        for _ in range(5):
            assert httpx.post(url + "/v1/chat/completions", json=chat_body()).status_code == 200
        ledger = wait_until(
            lambda: (found := _ledger(url))["healthy"] is False and found,
            message=lambda: f"a frozen database looked healthy: {_ledger(url)}",
        )
        assert ledger["buffered"] == 5 and float(str(ledger["lag_seconds"])) >= 0.5
        # still ready: requests are served and their rows wait; only the details alert
        assert httpx.get(url + "/readyz").status_code == 200
    gw.flush()
    ledger = _ledger(url)
    assert ledger["healthy"] is True and ledger["buffered"] == 0 and ledger["lag_seconds"] == 0
    assert httpx.get(url + "/readyz").status_code == 200
    assert len(ledger_rows(db)) == 6


class _frozen:
    """Holds a lock that stops every write to the ledger, as a hung database would."""

    def __init__(self, db: Database, config: HeshiConfig) -> None:
        self.db = db
        self.config = config
        self._release: Callable[[], None] = lambda: None

    def __enter__(self) -> None:
        if self.db.dialect_name == "sqlite":
            conn = sqlite3.connect(str(self.config.home / "heshi.db"), isolation_level=None)
            conn.execute("BEGIN EXCLUSIVE")
            self._release = lambda: (conn.execute("ROLLBACK"), conn.close())  # type: ignore[func-returns-value]
        else:
            engine = create_engine(self.db.url)
            conn = engine.connect()
            trans = conn.begin()
            conn.execute(text("LOCK TABLE usage_ledger IN ACCESS EXCLUSIVE MODE"))

            def release() -> None:
                trans.rollback()
                conn.close()
                engine.dispose()

            self._release = release

    def __exit__(self, *exc: object) -> None:
        self._release()
