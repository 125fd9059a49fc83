"""Fixtures for end-to-end governance tests: a fake upstream and real gateways on loopback.

Everything is real: the gateway is ``create_app`` under uvicorn (``serve_app``), the
upstream is ``tests.fakes.upstream.FakeUpstream`` on another loopback port, keys are
created with ``KeyStore`` in the database the gateway uses, and the ledger is read back
with SQL.
"""

from __future__ import annotations

import contextlib
import os
import secrets
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest
from redis import Redis
from sqlalchemy import Engine, create_engine, make_url, select, text

from heshi.config import (
    AliasConfig,
    AuthConfig,
    BackendConfig,
    HeshiConfig,
    LocalEngineConfig,
    RoutingConfig,
    ServerConfig,
    StoreConfig,
    TenantConfig,
)
from heshi.engines.base import Engine as HeshiEngine
from heshi.engines.openai_http import OpenAIHTTPEngine
from heshi.gateway.app import create_app
from heshi.gateway.governance import Governance
from heshi.store.db import Database
from heshi.store.keys import KeyStore
from heshi.store.tables import usage_ledger
from tests.fakes.upstream import UPSTREAM_MODEL, FakeUpstream
from tests.governance.gateway_process import GatewayProcess, write_config
from tests.loopback import free_port, serve_app
from tests.store.databases import PG_ADMIN_URL

REDIS_URL = os.environ.get("HESHI_TEST_REDIS_URL", "redis://127.0.0.1:6379/0")
ALIAS = "qwen"  # public alias of the fake upstream's model
OTHER_ALIAS = "qwen-max"  # a second alias of the same upstream, for model allow-lists


Upstream = FakeUpstream  # the running fake upstream: ``.state``, ``.base_url`` (ends in /v1)


@pytest.fixture
def upstream() -> Iterator[Upstream]:
    """A fake OpenAI-compatible upstream on loopback (held requests are released at the
    end, so the server can stop)."""
    with FakeUpstream() as fake:
        yield fake


def gateway_config(
    home: Path,
    base_url: str,
    *,
    store: StoreConfig | None = None,
    tenants: dict[str, TenantConfig] | None = None,
    open_mode: bool = False,
    timeout: float = 10.0,
    retries: int = 0,
    breaker_failures: int = 5,
) -> HeshiConfig:
    """A gateway serving only the fake upstream, as ``qwen`` and ``qwen-max``.

    Health checks run once at start (then hourly), so a test decides when a backend
    looks down; the ledger flushes every 50 ms. The connect timeout is generous: the
    gateway, the upstream and the client share one process, and on a loaded CI machine a
    stall under a 200-way burst once held the loops past a 2 s connect timeout (every
    admitted request became a 504; cause not reproduced here). No test here needs a short
    one: a stopped upstream refuses connections at once.
    """
    return HeshiConfig(
        home=home,
        engine=LocalEngineConfig(enabled=False),
        backends={
            "up": BackendConfig(
                base_url=base_url, models=[UPSTREAM_MODEL], timeout=timeout, connect_timeout=15
            )
        },
        aliases={
            ALIAS: AliasConfig(backend="up", model=UPSTREAM_MODEL),
            OTHER_ALIAS: AliasConfig(backend="up", model=UPSTREAM_MODEL),
        },
        store=store or StoreConfig(ledger_flush_seconds=0.05),
        auth=AuthConfig(open=open_mode),
        tenants=tenants or {},
        routing=RoutingConfig(
            retries=retries,
            backoff_seconds=0.01,
            breaker_failures=breaker_failures,
            health_interval_seconds=3600,
        ),
    )


@dataclass
class RunningGateway:
    """A gateway app serving on loopback, with a handle on its governance."""

    url: str
    config: HeshiConfig
    gov: Governance

    def flush(self) -> None:
        """Write every queued ledger row now (fails the test if the database won't)."""
        assert self.gov.ledger.flush(timeout=30), "ledger rows were not written"


GatewayFactory = Callable[[HeshiConfig], RunningGateway]


@pytest.fixture
def start_gateway() -> Iterator[GatewayFactory]:
    """Starts gateways (``create_app`` under uvicorn); all are stopped after the test."""
    with contextlib.ExitStack() as stack:

        def start(config: HeshiConfig) -> RunningGateway:
            engines: dict[str, HeshiEngine] = {
                name: OpenAIHTTPEngine(name, backend) for name, backend in config.backends.items()
            }
            gov = Governance(config)
            url = stack.enter_context(serve_app(create_app(config, engines, gov)))
            return RunningGateway(url, config, gov)

        yield start


ProcessFactory = Callable[..., GatewayProcess]


@pytest.fixture
def spawn_gateway(tmp_path: Path) -> Iterator[ProcessFactory]:
    """Makes ``heshi serve`` child processes for a config (on a free port; not started).

    Every child still running after the test is stopped.
    """
    made: list[GatewayProcess] = []

    def spawn(config: HeshiConfig, *args: str) -> GatewayProcess:
        port = free_port()
        config = config.model_copy(update={"server": ServerConfig(port=port)})
        n = len(made)
        path = write_config(config, tmp_path / f"heshi-{n}.yaml")
        url = f"http://127.0.0.1:{port}"
        process = GatewayProcess(path, url, config.home, tmp_path / f"serve-{n}.log", *args)
        made.append(process)
        return process

    yield spawn
    for process in made:
        process.stop()


@pytest.fixture
def home(tmp_path: Path) -> Path:
    """HESHI_HOME of the gateway under test (its SQLite database lives here)."""
    return tmp_path / "home"


@pytest.fixture
def open_database() -> Iterator[Callable[[HeshiConfig], Database]]:
    """Opens (and migrates) the database a config points at; disposed after the test."""
    opened: list[Database] = []

    def open_db(config: HeshiConfig) -> Database:
        db = Database(config.store.sql_url(config.home))
        db.migrate()
        opened.append(db)
        return db

    yield open_db
    for db in opened:
        db.dispose()


@pytest.fixture
def store_db(home: Path, open_database: Callable[[HeshiConfig], Database]) -> Database:
    """The default (SQLite) database of ``home``, migrated, before any gateway starts."""
    return open_database(HeshiConfig(home=home))


@pytest.fixture
def keys(store_db: Database) -> KeyStore:
    """Keys in the gateway's SQLite database."""
    return KeyStore(store_db)


@pytest.fixture
def pg_url() -> Iterator[str]:
    """A fresh PostgreSQL database of this test's own (fails if the server is down)."""
    admin = create_engine(PG_ADMIN_URL, isolation_level="AUTOCOMMIT")
    name = f"heshi_gov_{secrets.token_hex(6)}"
    try:
        with admin.connect() as conn:
            conn.execute(text(f'CREATE DATABASE "{name}"'))
    except Exception as exc:
        admin.dispose()
        pytest.fail(f"PostgreSQL at {PG_ADMIN_URL} is not usable: {exc}")
    try:
        yield make_url(PG_ADMIN_URL).set(database=name).render_as_string(hide_password=False)
    finally:
        with admin.connect() as conn:
            conn.execute(text(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)'))
        admin.dispose()


@pytest.fixture
def pg_admin_engine() -> Iterator[Engine]:
    """An autocommit connection pool on the PostgreSQL maintenance database."""
    admin = create_engine(PG_ADMIN_URL, isolation_level="AUTOCOMMIT")
    yield admin
    admin.dispose()


@pytest.fixture
def redis_cleanup() -> Iterator[Callable[[str], None]]:
    """Register quota scopes (``key:<id>``, ``tenant:<name>``) whose Redis keys this test
    creates; they, and only they, are deleted afterwards. Fails if Redis is down."""
    client = Redis.from_url(REDIS_URL)
    client.ping()
    scopes: list[str] = []
    yield scopes.append
    for scope in scopes:
        names = list(client.scan_iter(match=f"heshi:quota:{scope}:*", count=1000))
        if names:
            client.delete(*names)
    client.close()


# -- requests and ledger ---------------------------------------------------------------


def chat_body(content: str = "hi", *, model: str = ALIAS, **extra: Any) -> dict[str, Any]:
    """A chat completion request body."""
    return {"model": model, "messages": [{"role": "user", "content": content}], **extra}


def bearer(key: str) -> dict[str, str]:
    """The Authorization header for ``key``."""
    return {"Authorization": f"Bearer {key}"}


def ledger_rows(db: Database) -> list[dict[str, Any]]:
    """Every usage row, oldest first, as dicts."""
    with db.read() as conn:
        query = select(usage_ledger).order_by(usage_ledger.c.id)
        return [dict(row._mapping) for row in conn.execute(query)]


def row_for(db: Database, request_id: str) -> dict[str, Any]:
    """The one ledger row of ``request_id`` (fails on none or several)."""
    rows = [r for r in ledger_rows(db) if r["request_id"] == request_id]
    assert len(rows) == 1, f"{len(rows)} ledger rows for {request_id}"
    return rows[0]
