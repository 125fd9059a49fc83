"""The admin API (``/admin/v1``) on a real gateway on loopback: credentials and roles,
keys end to end, usage, the audit log, and every change (and refusal) audited."""

from __future__ import annotations

import json
from datetime import UTC, datetime, timedelta
from pathlib import Path

import httpx
import pytest
from typer.testing import CliRunner

from heshi.audit import record_hash
from heshi.cli.main import app as cli
from heshi.config.pricing import ModelPrice, PricingConfig
from tests.conftest import ADMIN
from tests.fakes.upstream import FakeUpstream
from tests.governance.conftest import (
    ALIAS,
    OTHER_ALIAS,
    GatewayFactory,
    gateway_config,
    start_gateway,
    upstream,
)

__all__ = ["start_gateway", "upstream"]  # fixtures used here
API = "/admin/v1"


def _bearer(token: str) -> dict[str, str]:
    return {"Authorization": f"Bearer {token}"}


def _actions(client: httpx.Client, **params: object) -> list[dict[str, object]]:
    """The admin actions in the audit log, newest first, their input parsed."""
    records = client.get(f"{API}/audit/records", headers=ADMIN, params=params).json()
    return [
        json.loads(r["input"]) | {"output": json.loads(r["output"]), "tenant": r["tenant"]}
        for r in records
        if r["policy_version"] == "admin/v1"
    ]


def test_credentials_roles_and_every_change_audited(
    tmp_path: Path, upstream: FakeUpstream, start_gateway: GatewayFactory
) -> None:
    gw = start_gateway(gateway_config(tmp_path / "home", upstream.base_url))
    with httpx.Client(base_url=gw.url, timeout=30) as client:
        # no token, a wrong one: 401 in the gateway's error shape
        r = client.get(f"{API}/whoami")
        assert r.status_code == 401 and "admin token" in r.json()["error"]["message"]
        r = client.get(f"{API}/whoami", headers=_bearer("hsa-nope"))
        assert r.status_code == 401 and r.json()["error"]["type"]
        # the bootstrap token from the environment is an admin
        me = client.get(f"{API}/whoami", headers=ADMIN).json()
        assert me == {"name": "env:HESHI_ADMIN_TOKEN", "role": "admin", "via": "api"}

        # an admin creates an auditor: the token is in this one response only
        r = client.post(
            f"{API}/admin-tokens", headers=ADMIN, json={"name": "审计 王", "role": "auditor"}
        )
        assert r.status_code == 201
        auditor = r.json()["token"]
        assert auditor.startswith("hsa-") and r.json()["role"] == "auditor"
        listed = client.get(f"{API}/admin-tokens", headers=ADMIN).text
        assert auditor not in listed and r.json()["prefix"] in listed
        as_auditor = _bearer(auditor)
        assert client.get(f"{API}/whoami", headers=as_auditor).json()["role"] == "auditor"

        # an admin creates a key; it is shown once and works on /v1
        r = client.post(
            f"{API}/keys", headers=ADMIN, json={"tenant": "acme", "name": "bot", "rpm": 100}
        )
        assert r.status_code == 201, r.text
        created = r.json()
        plaintext = created["key"]
        assert plaintext.startswith("hs-") and created["rpm"] == 100
        chat = {"model": ALIAS, "messages": [{"role": "user", "content": "你好"}]}
        assert (
            client.post("/v1/chat/completions", json=chat, headers=_bearer(plaintext)).status_code
            == 200
        )
        keys = client.get(f"{API}/keys", headers=as_auditor, params={"tenant": "acme"})
        assert keys.status_code == 200 and plaintext not in keys.text
        assert [k["id"] for k in keys.json()] == [created["id"]]

        # the auditor reads but cannot change; the refusal is audited too
        r = client.post(f"{API}/keys", headers=as_auditor, json={"tenant": "acme", "name": "x"})
        assert r.status_code == 403 and "auditor" in r.json()["error"]["message"]
        r = client.post(f"{API}/keys/{created['id']}/revoke", headers=as_auditor)
        assert r.status_code == 403

        # suspend, resume, revoke
        r = client.post(
            f"{API}/keys/{created['id']}/suspend", headers=ADMIN, json={"reason": "欠费"}
        )
        assert r.json()["status"] == "suspended" and r.json()["status_reason"] == "欠费"
        assert (
            client.post(f"{API}/keys/{created['id']}/resume", headers=ADMIN).json()["status"]
            == "active"
        )
        assert (
            client.post(f"{API}/keys/{created['id']}/revoke", headers=ADMIN).json()["status"]
            == "revoked"
        )
        r = client.post(f"{API}/keys/{created['id']}/resume", headers=ADMIN)
        assert r.status_code == 409
        assert client.get(f"{API}/keys/nokey", headers=ADMIN).status_code == 404

        # usage of the one chat, by model
        gw.flush()
        since = (datetime.now(UTC) - timedelta(hours=1)).isoformat()
        rows = client.get(
            f"{API}/usage",
            headers=as_auditor,
            params={"tenant": "acme", "since": since, "by": "model"},
        ).json()
        assert [(row["group"], row["requests"]) for row in rows] == [(ALIAS, 1)]

        # the audit log holds each change and each refusal, with who did it; no secret
        actions = _actions(client, tenant="acme")
        seen = [(a["admin_action"], a["actor"], a["output"]["result"]) for a in actions]
        assert seen == [
            ("keys.resume", "env:HESHI_ADMIN_TOKEN", "refused"),
            ("keys.revoke", "env:HESHI_ADMIN_TOKEN", "ok"),
            ("keys.resume", "env:HESHI_ADMIN_TOKEN", "ok"),
            ("keys.suspend", "env:HESHI_ADMIN_TOKEN", "ok"),
            ("keys.revoke", "审计 王", "refused"),
            ("keys.create", "审计 王", "refused"),
            ("keys.create", "env:HESHI_ADMIN_TOKEN", "ok"),
        ]
        everything = client.get(f"{API}/audit/records", headers=ADMIN, params={"limit": 500}).text
        assert plaintext not in everything and auditor not in everything
        assert any(a["admin_action"] == "admin_tokens.create" for a in _actions(client))

        # revoking the auditor's token shuts it out at once
        token_id = next(t["id"] for t in client.get(f"{API}/admin-tokens", headers=ADMIN).json())
        assert (
            client.post(f"{API}/admin-tokens/{token_id}/revoke", headers=ADMIN).status_code == 200
        )
        assert client.get(f"{API}/whoami", headers=as_auditor).status_code == 401


def test_audit_verify_export_and_pages(
    tmp_path: Path, upstream: FakeUpstream, start_gateway: GatewayFactory
) -> None:
    gw = start_gateway(gateway_config(tmp_path / "home", upstream.base_url))
    with httpx.Client(base_url=gw.url, timeout=30) as client:
        for i in range(5):
            body = {"tenant": f"t{i}", "name": "k"}
            assert client.post(f"{API}/keys", headers=ADMIN, json=body).status_code == 201
        report = client.post(f"{API}/audit/verify", headers=ADMIN).json()
        assert report["intact"] is True and report["records"] == 5 and report["issues"] == []
        # pages, newest first; the verification itself is now the newest record
        first = client.get(f"{API}/audit/records", headers=ADMIN, params={"limit": 2}).json()
        assert [json.loads(r["input"])["admin_action"] for r in first] == [
            "audit.verify",
            "keys.create",
        ]
        rest = client.get(
            f"{API}/audit/records", headers=ADMIN, params={"before_seq": first[-1]["seq"]}
        ).json()
        assert [r["seq"] for r in rest] == list(range(first[-1]["seq"] - 1, 0, -1))
        # an export's lines hash to their own hashes (anyone can check them offline)
        r = client.get(f"{API}/audit/export", headers=ADMIN)
        assert r.status_code == 200 and "attachment" in r.headers["content-disposition"]
        lines = [json.loads(line) for line in r.text.splitlines()]
        # 5 keys, the verification, and this export itself (recorded before it runs)
        assert len(lines) == 7 and "audit.export" in lines[-1]["input"]
        for line in lines:
            fields = {k: v for k, v in line.items() if k != "hash"}
            assert record_hash(fields | {"kind": "record"}) == line["hash"]
        csv = client.get(f"{API}/audit/export", headers=ADMIN, params={"format": "csv"})
        assert csv.text.splitlines()[0].startswith("seq,")


def test_bad_input_is_one_clear_error(
    tmp_path: Path, upstream: FakeUpstream, start_gateway: GatewayFactory
) -> None:
    gw = start_gateway(gateway_config(tmp_path / "home", upstream.base_url))
    with httpx.Client(base_url=gw.url, timeout=30) as client:
        r = client.post(f"{API}/keys", headers=ADMIN, json={"tenant": "", "name": "k"})
        assert r.status_code == 400 and r.json()["error"]["param"] == "tenant"
        r = client.post(f"{API}/keys", headers=ADMIN, json={"tenant": "a", "name": "k", "rpm": 0})
        assert r.status_code == 400 and r.json()["error"]["param"] == "rpm"
        r = client.post(f"{API}/keys", headers=ADMIN, content=b"{not json")
        assert r.status_code == 400
        r = client.get(
            f"{API}/usage", headers=ADMIN, params={"tenant": "a", "since": "2026-12-01T00:00:00"}
        )
        assert r.status_code == 400 and "time zone" in r.json()["error"]["message"]
        r = client.get(f"{API}/audit/records", headers=ADMIN, params={"limit": 100000})
        assert r.status_code == 400 and r.json()["error"]["param"] == "limit"
        r = client.post(f"{API}/admin-tokens", headers=ADMIN, json={"name": "x", "role": "root"})
        assert r.status_code == 400 and r.json()["error"]["param"] == "role"
        # a misspelt limit is refused, not ignored (it would make an unlimited key)
        r = client.post(
            f"{API}/keys", headers=ADMIN, json={"tenant": "a", "name": "k", "budget_token": 5}
        )
        assert r.status_code == 400 and r.json()["error"]["param"] == "budget_token"
        json_type = ADMIN | {"content-type": "application/json"}
        r = client.post(f"{API}/keys", headers=json_type, content=b"[" * 5000 + b"]" * 5000)
        assert r.status_code == 400 and "nested" in r.json()["error"]["message"]
        huge = b'{"tenant": "a", "name": "' + b"x" * 100_000 + b'"}'
        r = client.post(f"{API}/keys", headers=json_type, content=huge)
        assert r.status_code == 400 and "exceeds" in r.json()["error"]["message"]
        r = client.get(f"{API}/no-such-thing", headers=ADMIN)
        assert r.status_code == 404 and r.json()["error"]["code"] == "not_found"
        assert client.get(f"{API}/keys", headers=ADMIN).json() == []  # nothing was created
        schema = client.get(f"{API}/openapi.json").json()
        assert {"/keys", "/keys/{key_id}/suspend", "/audit/verify", "/usage"} <= set(
            schema["paths"]
        )
        assert "HTTPBearer" in schema["components"]["securitySchemes"]


def test_the_cli_goes_through_the_same_audited_service(tmp_path: Path) -> None:
    config = tmp_path / "heshi.yaml"
    config.write_text(f"home: {tmp_path / 'home'}\nengine: {{enabled: false}}\n", encoding="utf-8")
    runner = CliRunner()
    made = runner.invoke(
        cli, ["keys", "create", "--tenant", "acme", "--name", "k", "-c", str(config), "--json"]
    )
    assert made.exit_code == 0, made.output
    key_id = json.loads(made.stdout)["id"]
    assert runner.invoke(cli, ["keys", "suspend", key_id, "-c", str(config)]).exit_code == 0
    token = runner.invoke(
        cli, ["admin", "tokens", "create", "ops", "--role", "auditor", "-c", str(config), "--json"]
    )
    assert token.exit_code == 0 and json.loads(token.stdout)["token"].startswith("hsa-")
    listed = runner.invoke(cli, ["admin", "tokens", "list", "-c", str(config), "--json"])
    assert [t["name"] for t in json.loads(listed.stdout)] == ["ops"]
    exported = runner.invoke(cli, ["audit", "export", "-c", str(config)])
    assert exported.exit_code == 0, exported.output
    actions = [json.loads(json.loads(line)["input"]) for line in exported.stdout.splitlines()]
    assert [(a["admin_action"], a["via"]) for a in actions] == [
        ("keys.create", "cli"),
        ("keys.suspend", "cli"),
        ("admin_tokens.create", "cli"),
    ]
    assert all(str(a["actor"]).startswith("cli:") for a in actions)
    verify = runner.invoke(cli, ["audit", "verify", "-c", str(config)])
    assert verify.exit_code == 0, verify.output


@pytest.mark.parametrize("role", ["admin", "auditor"])
def test_a_named_token_works_for_its_role(
    role: str, tmp_path: Path, upstream: FakeUpstream, start_gateway: GatewayFactory
) -> None:
    gw = start_gateway(gateway_config(tmp_path / "home", upstream.base_url))
    with httpx.Client(base_url=gw.url, timeout=30) as client:
        token = client.post(
            f"{API}/admin-tokens", headers=ADMIN, json={"name": role, "role": role}
        ).json()["token"]
        r = client.post(f"{API}/keys", headers=_bearer(token), json={"tenant": "a", "name": "k"})
        assert r.status_code == (201 if role == "admin" else 403)


def test_spend_is_priced_when_the_row_is_written(
    tmp_path: Path, upstream: FakeUpstream, start_gateway: GatewayFactory
) -> None:
    config = gateway_config(tmp_path / "home", upstream.base_url).model_copy(
        update={
            "pricing": PricingConfig(
                models={ALIAS: ModelPrice(input=2.0, output=8.0)}, local_cost_per_hour=3.5
            )
        }
    )
    gw = start_gateway(config)
    with httpx.Client(base_url=gw.url, timeout=30) as client:
        key = client.post(f"{API}/keys", headers=ADMIN, json={"tenant": "acme", "name": "k"})
        auth = _bearer(key.json()["key"])
        used = {"prompt": 0, "completion": 0}
        for model in (ALIAS, OTHER_ALIAS, ALIAS):
            chat = {"model": model, "messages": [{"role": "user", "content": "你好"}]}
            answer = client.post("/v1/chat/completions", json=chat, headers=auth).json()
            if model == ALIAS:
                used["prompt"] += answer["usage"]["prompt_tokens"]
                used["completion"] += answer["usage"]["completion_tokens"]
        gw.flush()
        since = (datetime.now(UTC) - timedelta(hours=1)).isoformat()
        rows = client.get(
            f"{API}/usage", headers=ADMIN, params={"since": since, "by": "model"}
        ).json()
        cost = {row["group"]: row["cost"] for row in rows}
        expected = (used["prompt"] * 2.0 + used["completion"] * 8.0) / 1e6
        assert expected > 0 and cost[ALIAS] == pytest.approx(expected)
        assert cost[OTHER_ALIAS] is None  # no price: no spend, and said so
        table = client.get(f"{API}/pricing", headers=ADMIN).json()
        assert table == {
            "currency": "CNY",
            "models": {ALIAS: {"input": 2.0, "output": 8.0}},
            "local_cost_per_hour": 3.5,
        }
        csv = client.get(
            f"{API}/usage", headers=ADMIN, params={"since": since, "by": "model", "format": "csv"}
        ).text
        assert csv.lstrip("\ufeff").splitlines()[0].endswith(",cost")
