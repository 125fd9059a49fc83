"""API keys: creation, validation, lookups, state changes, and what is (not) stored."""

from __future__ import annotations

import hashlib
import re
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import pytest
from sqlalchemy import text

from heshi.errors import HeshiError
from heshi.store.db import Database
from heshi.store.keys import InvalidKeySpec, KeyNotFound, KeyStateError, KeyStore


def test_create_returns_the_key_once_and_stores_its_hash(database: Database) -> None:
    store = KeyStore(database)
    plaintext, key = store.create(
        "acme",
        "batch jobs",
        models=["qwen-7b", "qwen-7b", "auto"],
        rpm=60,
        tpm=10_000,
        budget_tokens=1_000_000,
        expires_at=datetime.now(UTC) + timedelta(days=30),
    )
    assert plaintext.startswith("hs-") and len(plaintext) == 3 + 43  # 32 random bytes
    assert key.id.startswith("key_") and len(key.id) == 4 + 12
    assert key.prefix == plaintext[:12]
    assert key.key_hash == hashlib.sha256(plaintext.encode()).hexdigest()
    assert key.models == ("qwen-7b", "auto")  # duplicates dropped, order kept
    assert (key.rpm, key.tpm, key.budget_tokens, key.status) == (60, 10_000, 1_000_000, "active")
    assert plaintext not in repr(key) and key.key_hash not in repr(key)
    assert store.get(key.id) == key
    assert store.get(key.prefix) == key

    other, _ = store.create("acme", "second")
    assert other != plaintext


def test_plaintext_is_not_stored_anywhere(database: Database, tmp_path: Path) -> None:
    plaintexts = [KeyStore(database).create("acme", f"k{i}")[0] for i in range(3)]
    secrets_only = [p[12:] for p in plaintexts]  # the part never shown after creation
    if database.dialect_name == "sqlite":
        assert database.url.database
        database.dispose()  # checkpoint nothing away: read the main file and its WAL too
        folder = Path(database.url.database).parent
        raw = b"".join(p.read_bytes() for p in folder.iterdir() if p.is_file())
        dump = raw.decode("latin-1")
    else:
        with database.read() as conn:
            dump = "\n".join(
                str(conn.execute(text(f"SELECT json_agg(t)::text FROM {table} t")).scalar())
                for table in ("api_keys", "usage_ledger", "usage_pruned_totals", "alembic_version")
            )
    assert "key_" in dump and "acme" in dump  # the dump does contain the table data
    for secret in secrets_only:
        assert secret not in dump


def test_list_filters_by_tenant_and_includes_revoked(database: Database) -> None:
    store = KeyStore(database)
    _, a1 = store.create("acme", "one")
    _, b1 = store.create("beta", "one")
    _, a2 = store.create("acme", "two")
    store.revoke(a2.id)
    assert [k.id for k in store.list("acme")] == [a1.id, a2.id]
    assert [k.id for k in store.list("beta")] == [b1.id]
    assert len(store.list()) == 3
    assert {k.id for k in store.active_keys()} == {a1.id, b1.id}
    assert store.count() == 3


def test_suspend_resume_revoke(database: Database) -> None:
    store = KeyStore(database)
    _, key = store.create("acme", "ops")

    suspended = store.suspend(key.prefix, "invoice overdue / 欠费")
    assert (suspended.status, suspended.status_reason) == ("suspended", "invoice overdue / 欠费")
    assert suspended.updated_at >= key.updated_at
    assert store.get(key.id).status == "suspended"

    resumed = store.resume(key.id)
    assert (resumed.status, resumed.status_reason) == ("active", None)
    assert store.resume(key.id) == resumed  # resuming an active key changes nothing

    revoked = store.revoke(key.id)
    assert revoked.status == "revoked"
    assert store.revoke(key.id).status == "revoked"  # twice is harmless
    with pytest.raises(KeyStateError, match="is revoked and cannot be resumed"):
        store.resume(key.id)
    with pytest.raises(KeyStateError, match="cannot be resumed or suspended"):
        store.suspend(key.id, "x")
    assert store.get(key.id).status == "revoked"


def test_unknown_key_says_so_in_both_languages(database: Database) -> None:
    with pytest.raises(KeyNotFound) as caught:
        KeyStore(database).revoke("key_000000000000")
    assert caught.value.status_code == 404
    assert "找不到 API 密钥 'key_000000000000'" in caught.value.message
    assert "no API key with id or prefix 'key_000000000000'" in caught.value.message


def test_expiry(database: Database) -> None:
    store = KeyStore(database)
    soon = datetime.now(UTC) + timedelta(hours=1)
    _, key = store.create("acme", "temp", expires_at=soon)
    assert store.get(key.id).expires_at == soon
    assert not key.is_expired(soon - timedelta(seconds=1))
    assert key.is_expired(soon)
    _, forever = store.create("acme", "forever")
    assert not forever.is_expired(datetime(9999, 1, 1, tzinfo=UTC))
    with pytest.raises(InvalidKeySpec, match="in the past") as caught:
        store.create("acme", "late", expires_at=datetime.now(UTC) - timedelta(seconds=1))
    assert caught.value.param == "expires_at"


_INVALID: list[tuple[tuple[str, str], dict[str, Any], str]] = [
    (("", "n"), {}, "tenant"),
    (("   ", "n"), {}, "tenant"),
    (("t" * 65, "n"), {}, "tenant"),
    (("acme\n", "n"), {}, "tenant"),
    (("acme", "bad\x00name"), {}, "name"),
    (("acme", "n"), {"models": []}, "models"),
    (("acme", "n"), {"models": "qwen"}, "models"),
    (("acme", "n"), {"models": ["qwen", " "]}, "models"),
    (("acme", "n"), {"rpm": 0}, "rpm"),
    (("acme", "n"), {"tpm": -5}, "tpm"),
    (("acme", "n"), {"budget_tokens": -1}, "budget_tokens"),
    (("acme", "n"), {"expires_at": datetime(2099, 1, 1)}, "expires_at"),
]


def test_invalid_fields_are_named_and_nothing_is_written(database: Database) -> None:
    store = KeyStore(database)
    for args, kwargs, param in _INVALID:
        with pytest.raises(InvalidKeySpec) as caught:
            store.create(*args, **kwargs)
        assert (caught.value.param, caught.value.status_code) == (param, 400), (args, kwargs)
        chinese, _, english = caught.value.message.partition("/ ")
        assert re.search(r"[\u4e00-\u9fff]", chinese)
        assert param in english
    assert store.count() == 0


def test_label_limits_accept_chinese_and_64_chars(database: Database) -> None:
    _, key = KeyStore(database).create("招商银行-零售", "n" * 64)
    assert key.tenant == "招商银行-零售"


def test_ambiguous_prefix(database: Database) -> None:
    store = KeyStore(database)
    _, key = store.create("acme", "one")
    with database.begin() as conn:  # forge a second key sharing the first one's prefix
        conn.execute(text("UPDATE api_keys SET prefix = :p"), {"p": key.prefix})
        conn.execute(
            text(
                "INSERT INTO api_keys (id, tenant, name, prefix, key_hash, status, created_at,"
                " updated_at) SELECT 'key_twin', tenant, name, prefix, 'other', status,"
                " created_at, updated_at FROM api_keys"
            )
        )
    with pytest.raises(KeyStateError, match="matches several keys"):
        store.get(key.prefix)
    assert store.get("key_twin").id == "key_twin"


def test_database_down_is_a_clear_error(database: Database) -> None:
    from tests.store.databases import outage

    store = KeyStore(database)
    with outage(database), pytest.raises(HeshiError) as caught:
        store.list()
    assert caught.value.status_code == 503
    assert "database unavailable" in caught.value.message


def test_tenant_sized_limits_fit(database: Database) -> None:
    # 10 billion tokens per minute overflowed a 32-bit PostgreSQL column before 0002.
    _, key = KeyStore(database).create("big", "k", rpm=3_000_000_000, tpm=10_000_000_000)
    assert KeyStore(database).get(key.id).tpm == 10_000_000_000
