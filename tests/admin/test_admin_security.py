"""Attacks on the admin API found in review, each kept as a test: a token leaked into the
audit log, a bootstrap session outliving its token, formulas in a usage export, a
forged actor name, a change without its record, oversized numbers, silent first keys."""

from __future__ import annotations

import json
from datetime import UTC, datetime, timedelta
from pathlib import Path

import httpx
import pytest
from sqlalchemy import text

from heshi.admin.service import AdminService, KeySpec
from heshi.admin.tokens import Actor
from heshi.audit import AuditLog
from heshi.errors import HeshiError
from heshi.store.db import Database
from heshi.store.keys import KeyStore
from tests.conftest import ADMIN, ADMIN_TOKEN
from tests.fakes.upstream import FakeUpstream
from tests.governance.conftest import GatewayFactory, gateway_config, start_gateway, upstream

__all__ = ["start_gateway", "upstream"]  # fixtures used here
API = "/admin/v1"


def _records(client: httpx.Client) -> str:
    return client.get(f"{API}/audit/records", headers=ADMIN, params={"limit": 500}).text


def test_a_leaked_token_is_revoked_by_itself_and_never_written_down(
    tmp_path: Path, upstream: FakeUpstream, start_gateway: GatewayFactory
) -> None:
    gw = start_gateway(gateway_config(tmp_path / "home", upstream.base_url))
    with httpx.Client(base_url=gw.url, timeout=30) as client:
        made = client.post(
            f"{API}/admin-tokens", headers=ADMIN, json={"name": "ops", "role": "admin"}
        )
        leaked = made.json()["token"]
        unknown = "hsa-" + "x" * 43
        r = client.post(f"{API}/admin-tokens/{unknown}/revoke", headers=ADMIN)
        assert r.status_code == 404 and unknown not in r.text
        r = client.post(f"{API}/admin-tokens/{leaked}/revoke", headers=ADMIN)
        assert r.status_code == 200 and r.json()["revoked_at"]
        assert (
            client.get(f"{API}/whoami", headers={"Authorization": f"Bearer {leaked}"}).status_code
            == 401
        )
        log = _records(client)
        assert leaked not in log and unknown not in log
        assert leaked[:12] in log  # the prefix is what is written


def test_a_bootstrap_session_ends_when_the_bootstrap_token_changes(
    tmp_path: Path,
    upstream: FakeUpstream,
    start_gateway: GatewayFactory,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    home = tmp_path / "home"
    first = start_gateway(gateway_config(home, upstream.base_url))
    signed = httpx.post(first.url + f"{API}/session", json={"token": ADMIN_TOKEN})
    cookies = dict(signed.cookies)
    csrf = {"x-heshi-csrf": signed.json()["csrf"]}
    assert httpx.get(first.url + f"{API}/whoami", cookies=cookies).status_code == 200
    monkeypatch.setenv("HESHI_ADMIN_TOKEN", "a-rotated-bootstrap-token")
    second = start_gateway(gateway_config(home, upstream.base_url))  # same database
    r = httpx.post(
        second.url + f"{API}/admin-tokens", cookies=cookies, headers=csrf,
        json={"name": "ghost", "role": "admin"},
    )  # fmt: skip
    assert r.status_code == 401 and "ended" in r.json()["error"]["message"]


def test_a_usage_export_never_holds_a_formula(
    tmp_path: Path, upstream: FakeUpstream, start_gateway: GatewayFactory
) -> None:
    gw = start_gateway(gateway_config(tmp_path / "home", upstream.base_url))
    with httpx.Client(base_url=gw.url, timeout=30) as client:
        key = client.post(
            f"{API}/keys", headers=ADMIN, json={"tenant": "=cmd|' /C calc'!A0", "name": "k"}
        )
        auth = {"Authorization": f"Bearer {key.json()['key']}"}
        chat = {
            "model": '=HYPERLINK("http://evil")',
            "messages": [{"role": "user", "content": "x"}],
        }
        client.post("/v1/chat/completions", json=chat, headers=auth)  # 404, still a ledger row
        gw.flush()
        since = (datetime.now(UTC) - timedelta(hours=1)).isoformat()
        for by in ("model", "tenant"):
            csv = client.get(
                f"{API}/usage", headers=ADMIN, params={"since": since, "by": by, "format": "csv"}
            ).text
            cells = [
                line.split(",")[0].strip('"') for line in csv.lstrip("\ufeff").splitlines()[1:]
            ]
            assert cells and all(not c.startswith(("=", "+", "-", "@")) for c in cells), csv


def test_actors_cannot_pass_for_another(
    tmp_path: Path, upstream: FakeUpstream, start_gateway: GatewayFactory
) -> None:
    gw = start_gateway(gateway_config(tmp_path / "home", upstream.base_url))
    with httpx.Client(base_url=gw.url, timeout=30) as client:
        for name in ("env:HESHI_ADMIN_TOKEN", "CLI:root"):
            r = client.post(
                f"{API}/admin-tokens", headers=ADMIN, json={"name": name, "role": "admin"}
            )
            assert r.status_code == 400 and r.json()["error"]["param"] == "name"
        made = client.post(
            f"{API}/admin-tokens", headers=ADMIN, json={"name": "张三", "role": "admin"}
        ).json()
        client.post(
            f"{API}/keys",
            headers={"Authorization": f"Bearer {made['token']}"},
            json={"tenant": "a", "name": "k"},
        )
        record = client.get(f"{API}/audit/records", headers=ADMIN, params={"limit": 1}).json()[0]
        assert json.loads(record["input"])["actor_id"] == made["id"]


def test_no_change_is_saved_without_its_record(tmp_path: Path) -> None:
    db = Database(f"sqlite:///{tmp_path / 'heshi.db'}")
    db.migrate()
    service = AdminService(db, AuditLog(db, key=b"k" * 32))
    with db.begin() as conn:  # the audit log cannot be written
        conn.execute(text("ALTER TABLE audit_log RENAME TO audit_log_gone"))
    with pytest.raises(Exception):  # noqa: B017 - whatever the database says
        service.create_key(Actor("ops", "admin", "api"), KeySpec("acme", "k"))
    assert KeyStore(db).count() == 0  # the key went with its record
    db.dispose()


def test_numbers_and_dates_out_of_range_are_refused_not_crashed(
    tmp_path: Path, upstream: FakeUpstream, start_gateway: GatewayFactory
) -> None:
    gw = start_gateway(gateway_config(tmp_path / "home", upstream.base_url))
    with httpx.Client(base_url=gw.url, timeout=30) as client:
        bad_keys = [
            {"rpm": 10**23}, {"budget_tokens": 2**63}, {"rpm": True}, {"rpm": "5"},
            {"expires_at": "9999-12-31T23:59:59-14:00"},
        ]  # fmt: skip
        for extra in bad_keys:
            r = client.post(
                f"{API}/keys", headers=ADMIN, json={"tenant": "a", "name": "k", **extra}
            )
            assert r.status_code == 400 and r.headers["content-type"] == "application/json", extra
        for params in (
            {"since": "0001-01-01T00:00:00+14:00"},
            {"since": "2026-01-01T00:00:00Z", "until": "9999-12-31T23:59:59-14:00"},
        ):
            assert client.get(f"{API}/usage", headers=ADMIN, params=params).status_code == 400
        r = client.get(f"{API}/audit/records", headers=ADMIN, params={"before_seq": 10**20})
        assert r.status_code == 400
        r = client.post(f"{API}/keys/nokey/revoke", headers=ADMIN)
        assert r.status_code == 404
        attempts = [json.loads(r["input"]) for r in json.loads(_records(client))]
        assert any(a["admin_action"] == "keys.revoke" for a in attempts)  # on record
        first = client.post(f"{API}/keys", headers=ADMIN, json={"tenant": "a", "name": "k"})
        second = client.post(f"{API}/keys", headers=ADMIN, json={"tenant": "a", "name": "k2"})
        assert first.json()["first_key"] is True and second.json()["first_key"] is False
        assert first.headers["cache-control"] == "no-store"


def test_a_terminal_never_gets_control_codes_from_a_reason(tmp_path: Path) -> None:
    db = Database(f"sqlite:///{tmp_path / 'heshi.db'}")
    db.migrate()
    store = KeyStore(db)
    _, key = store.create("acme", "k")
    with pytest.raises(HeshiError, match="printable"):
        store.suspend(key.id, "ok\x1b[2J\nline2")
    db.dispose()
