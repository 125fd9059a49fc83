"""KeyAuthenticator: open modes, bearer parsing, each refusal, and a database outage."""

from __future__ import annotations

import asyncio
import logging
from datetime import UTC, datetime, timedelta

import pytest

from heshi.errors import AuthenticationFailed, PermissionDenied
from heshi.gateway.auth import KeyAuthenticator, KeyStoreUnavailable
from heshi.store.db import Database
from heshi.store.keys import KeyStore
from tests.fakes.clock import FakeClock
from tests.fakes.waiting import wait_until_async
from tests.store.databases import database, outage, pg_admin, pg_module_url

__all__ = ["database", "pg_admin", "pg_module_url"]  # fixtures used here


async def test_open_mode_needs_no_key_and_no_database(database: Database) -> None:
    store = KeyStore(database)
    store.create("acme", "k")
    auth = KeyAuthenticator(store, refresh_seconds=60, open_mode=True)
    with outage(database):
        await auth.start()
        assert auth.authenticate(None, "any-model") is None
        assert auth.authenticate("Bearer nonsense", "any-model") is None
    await auth.close()


async def test_no_key_at_all_means_single_user_mode_until_the_first_key(
    database: Database,
) -> None:
    store = KeyStore(database)
    auth = KeyAuthenticator(store, refresh_seconds=60, open_mode=False)
    await auth.start()
    try:
        assert auth.authenticate(None, "qwen") is None
        plaintext, key = store.create("acme", "first")
        auth.refresh_now()
        with pytest.raises(AuthenticationFailed, match="missing API key"):
            auth.authenticate(None, "qwen")
        assert auth.authenticate(f"Bearer {plaintext}", "qwen") == key
        # Revoking the last key must not quietly reopen the gateway.
        store.revoke(key.id)
        auth.refresh_now()
        with pytest.raises(AuthenticationFailed, match="invalid or revoked"):
            auth.authenticate(f"Bearer {plaintext}", "qwen")
        with pytest.raises(AuthenticationFailed):
            auth.authenticate(None, "qwen")
    finally:
        await auth.close()


async def test_bearer_parsing(database: Database) -> None:
    store = KeyStore(database)
    plaintext, key = store.create("acme", "k")
    auth = KeyAuthenticator(store, refresh_seconds=60, open_mode=False)
    await auth.start()
    try:
        for good in (f"Bearer {plaintext}", f"bearer {plaintext}", f"  Bearer   {plaintext}  "):
            assert auth.authenticate(good, "m") == key
        for bad, message in [
            (None, "missing API key"),
            ("", "missing API key"),
            ("Bearer", "must be of the form Bearer <key>"),
            (f"Basic {plaintext}", "must be of the form Bearer <key>"),
            (plaintext, "must be of the form Bearer <key>"),
            (f"Bearer {plaintext} extra", "must be of the form Bearer <key>"),
            (f"Bearer {plaintext}x", "invalid or revoked API key"),
        ]:
            with pytest.raises(AuthenticationFailed, match=message) as caught:
                auth.authenticate(bad, "m")
            assert caught.value.status_code == 401
            assert plaintext not in caught.value.message  # never echo what was sent
            assert "Bearer <key>" in caught.value.message or "API 密钥" in caught.value.message
    finally:
        await auth.close()


async def test_each_refusal_says_why(database: Database) -> None:
    store = KeyStore(database)
    soon = datetime.now(UTC) + timedelta(hours=1)
    expiring, _ = store.create("acme", "temp", expires_at=soon)
    limited, _ = store.create("acme", "limited", models=["qwen-small", "auto"])
    paused, paused_key = store.create("acme", "paused")
    store.suspend(paused_key.id, "欠费 overdue invoice")
    later = soon + timedelta(seconds=1)
    clock = FakeClock(datetime.now(UTC).timestamp())
    auth = KeyAuthenticator(store, refresh_seconds=60, open_mode=False, clock=clock.utc)
    await auth.start()
    try:
        assert auth.authenticate(f"Bearer {expiring}", "m") is not None
        clock.now = later.timestamp()
        with pytest.raises(AuthenticationFailed, match="API key expired on") as expired:
            auth.authenticate(f"Bearer {expiring}", "m")
        assert "已于" in expired.value.message

        with pytest.raises(PermissionDenied, match="suspended: 欠费 overdue invoice") as paused_exc:
            auth.authenticate(f"Bearer {paused}", "m")
        assert paused_exc.value.status_code == 403

        assert auth.authenticate(f"Bearer {limited}", "auto") is not None
        with pytest.raises(PermissionDenied, match="may not use model 'qwen-max'") as denied:
            auth.authenticate(f"Bearer {limited}", "qwen-max")
        assert "qwen-small, auto" in denied.value.message
        assert denied.value.param == "model"
    finally:
        await auth.close()


async def test_database_outage_serves_from_cache_and_logs_once(
    database: Database, caplog: pytest.LogCaptureFixture
) -> None:
    store = KeyStore(database)
    plaintext, key = store.create("acme", "k")
    auth = KeyAuthenticator(store, refresh_seconds=0.02, open_mode=False)
    await auth.start()
    try:
        with outage(database), caplog.at_level(logging.WARNING, logger="heshi.gateway.auth"):
            await asyncio.sleep(0.2)  # several failed refreshes
            assert auth.authenticate(f"Bearer {plaintext}", "m") == key
            with pytest.raises(AuthenticationFailed):
                auth.authenticate("Bearer hs-unknown", "m")
            outage_logs = [r for r in caplog.records if "cannot reload API keys" in r.message]
            assert len(outage_logs) == 1
        store.suspend(key.id, "back")
        await wait_until_async(lambda: _refused(auth, plaintext), timeout=5.0, interval=0.02)
        assert any("database is back" in r.message for r in caplog.records)
    finally:
        await auth.close()


async def test_database_down_at_start_refuses_with_503_then_recovers(database: Database) -> None:
    store = KeyStore(database)
    plaintext, key = store.create("acme", "k")
    auth = KeyAuthenticator(store, refresh_seconds=0.02, open_mode=False)
    try:
        with outage(database):
            await auth.start()  # must not raise: the gateway comes up anyway
            with pytest.raises(KeyStoreUnavailable) as caught:
                auth.authenticate(f"Bearer {plaintext}", "m")
            assert caught.value.status_code == 503
        await wait_until_async(lambda: not _refused(auth, plaintext), timeout=5.0, interval=0.02)
        assert auth.authenticate(f"Bearer {plaintext}", "m") == key
    finally:
        await auth.close()


def _refused(auth: KeyAuthenticator, plaintext: str) -> bool:
    try:
        auth.authenticate(f"Bearer {plaintext}", "m")
    except (PermissionDenied, KeyStoreUnavailable):
        return True
    return False
