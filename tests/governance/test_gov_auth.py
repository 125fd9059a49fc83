"""API keys at the HTTP edge: open until the first key, then required on every /v1 call."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import httpx
import yaml
from typer.testing import CliRunner

from heshi.cli.main import app as cli
from heshi.config import AuthConfig
from heshi.store.db import Database
from heshi.store.keys import KeyStore, hash_key
from tests.governance.conftest import (
    ALIAS,
    OTHER_ALIAS,
    GatewayFactory,
    ProcessFactory,
    Upstream,
    bearer,
    chat_body,
    gateway_config,
    ledger_rows,
)

# One request per /v1 endpoint: (method, path, body).
ENDPOINTS: list[tuple[str, str, dict[str, Any] | None]] = [
    ("POST", "/v1/chat/completions", chat_body()),
    ("POST", "/v1/completions", {"model": ALIAS, "prompt": "你好"}),
    ("POST", "/v1/embeddings", {"model": ALIAS, "input": "你好"}),
    ("GET", "/v1/models", None),
]


def call(
    client: httpx.Client, url: str, method: str, path: str, body: Any, headers: Any = None
) -> httpx.Response:
    return client.request(method, url + path, json=body, headers=headers)


def assert_openai_error(r: httpx.Response, status: int, error_type: str) -> dict[str, Any]:
    assert r.status_code == status, r.text
    assert r.headers["content-type"].startswith("application/json")
    error = r.json()["error"]
    assert set(error) == {"message", "type", "param", "code"}
    assert error["type"] == error_type
    return dict(error)


def test_no_key_means_open_and_the_first_key_locks_every_v1_endpoint(
    upstream: Upstream, start_gateway: GatewayFactory, keys: KeyStore, home: Path
) -> None:
    gw = start_gateway(gateway_config(home, upstream.base_url))
    with httpx.Client(timeout=30) as client:
        for method, path, body in ENDPOINTS:
            assert call(client, gw.url, method, path, body).status_code == 200, path

        plaintext, _ = keys.create("acme", "first")
        gw.gov.auth.refresh_now()  # what the background refresh does every few seconds

        wrong = "hs-" + "x" * 43
        for method, path, body in ENDPOINTS:
            error = assert_openai_error(
                call(client, gw.url, method, path, body), 401, "authentication_error"
            )
            assert "Bearer" in error["message"] and error["code"] == "invalid_api_key"
            for header in (f"Bearer {wrong}", f"Basic {plaintext}", plaintext):
                r = call(client, gw.url, method, path, body, {"Authorization": header})
                assert_openai_error(r, 401, "authentication_error")
                # whatever was sent, it is never echoed back
                assert wrong not in r.text and plaintext not in r.text
            r = call(client, gw.url, method, path, body, bearer(plaintext))
            assert r.status_code == 200, (path, r.text)


def test_revoked_key_is_401_and_suspended_key_is_403(
    upstream: Upstream, start_gateway: GatewayFactory, keys: KeyStore, home: Path
) -> None:
    revoked, key = keys.create("acme", "gone")
    keys.revoke(key.id)
    suspended, key = keys.create("acme", "paused")
    keys.suspend(key.id, reason="欠费 overdue")
    active, _ = keys.create("acme", "ok")
    gw = start_gateway(gateway_config(home, upstream.base_url))
    with httpx.Client(timeout=30) as client:
        for method, path, body in ENDPOINTS:
            r = call(client, gw.url, method, path, body, bearer(revoked))
            error = assert_openai_error(r, 401, "authentication_error")
            assert "revoked" in error["message"]
            r = call(client, gw.url, method, path, body, bearer(suspended))
            error = assert_openai_error(r, 403, "permission_error")
            assert "suspended" in error["message"] and "overdue" in error["message"]
            assert call(client, gw.url, method, path, body, bearer(active)).status_code == 200
    assert upstream.state.calls == 3  # only the active key's generations reached upstream


def test_model_outside_the_keys_list_is_403_naming_the_model(
    upstream: Upstream, start_gateway: GatewayFactory, keys: KeyStore, home: Path
) -> None:
    plaintext, _ = keys.create("acme", "narrow", models=[ALIAS])
    gw = start_gateway(gateway_config(home, upstream.base_url))
    with httpx.Client(timeout=30) as client:
        for path, body in [
            ("/v1/chat/completions", chat_body(model=OTHER_ALIAS)),
            ("/v1/completions", {"model": OTHER_ALIAS, "prompt": "你好"}),
            ("/v1/embeddings", {"model": OTHER_ALIAS, "input": "你好"}),
        ]:
            r = call(client, gw.url, "POST", path, body, bearer(plaintext))
            error = assert_openai_error(r, 403, "permission_error")
            assert f"'{OTHER_ALIAS}'" in error["message"] and error["param"] == "model"
        assert upstream.state.calls == 0  # refused before any backend was asked
        r = call(client, gw.url, "POST", "/v1/chat/completions", chat_body(), bearer(plaintext))
        assert r.status_code == 200


def test_open_mode_ignores_keys(
    upstream: Upstream,
    start_gateway: GatewayFactory,
    keys: KeyStore,
    store_db: Database,
    home: Path,
) -> None:
    keys.create("acme", "exists", budget_tokens=1)  # would refuse everything if consulted
    config = gateway_config(home, upstream.base_url).model_copy(
        update={"auth": AuthConfig(open=True)}
    )
    gw = start_gateway(config)
    with httpx.Client(timeout=30) as client:
        for method, path, body in ENDPOINTS:
            for headers in (None, bearer("hs-not-a-key")):
                assert call(client, gw.url, method, path, body, headers).status_code == 200
    gw.flush()
    rows = ledger_rows(store_db)
    assert len(rows) == 6
    assert {(r["tenant"], r["key_id"]) for r in rows} == {("-", None)}


def test_heshi_serve_open_flag_ignores_keys(
    upstream: Upstream, spawn_gateway: ProcessFactory, keys: KeyStore, home: Path
) -> None:
    keys.create("acme", "exists")
    config = gateway_config(home, upstream.base_url)
    locked = spawn_gateway(config)
    locked.start()
    with httpx.Client(timeout=30) as client:
        r = client.post(locked.url + "/v1/chat/completions", json=chat_body())
        assert r.status_code == 401  # without the flag the key is required
        locked.stop()
        opened = spawn_gateway(config, "--open")
        opened.start()
        r = client.post(opened.url + "/v1/chat/completions", json=chat_body())
        assert r.status_code == 200, r.text
        r = client.post(opened.url + "/v1/chat/completions", json=chat_body(), headers=bearer("x"))
        assert r.status_code == 200


def test_keys_are_stored_only_as_hashes(
    upstream: Upstream, start_gateway: GatewayFactory, home: Path, tmp_path: Path
) -> None:
    config_path = tmp_path / "heshi.yaml"
    config_path.write_text(yaml.safe_dump({"home": str(home)}))
    result = CliRunner().invoke(
        cli,
        ["keys", "create", "--tenant", "acme", "--name", "ci", "--json", "-c", str(config_path)],
    )
    assert result.exit_code == 0, result.output
    plaintext = json.loads(result.stdout)["key"]
    gw = start_gateway(gateway_config(home, upstream.base_url))
    with httpx.Client(timeout=30) as client:
        r = client.post(
            gw.url + "/v1/chat/completions", json=chat_body(), headers=bearer(plaintext)
        )
    assert r.status_code == 200
    gw.flush()
    stored = b"".join(p.read_bytes() for p in sorted(home.glob("heshi.db*")))
    assert hash_key(plaintext).encode() in stored  # we are looking at the right bytes
    assert plaintext.encode() not in stored
    assert plaintext[12:].encode() not in stored  # not even the part after the shown prefix


def test_the_401_says_how_to_get_a_key_and_that_open_exists(
    upstream: Upstream, start_gateway: GatewayFactory, keys: KeyStore, home: Path
) -> None:
    keys.create("acme", "bot")
    gw = start_gateway(gateway_config(home, upstream.base_url))
    for headers in ({}, {"Authorization": "Bearer hs-not-a-key"}):
        r = httpx.post(gw.url + "/v1/chat/completions", json=chat_body("你好"), headers=headers)
        assert r.status_code == 401
        message = r.json()["error"]["message"]
        assert "heshi keys create --tenant" in message and "heshi serve --open" in message
        assert "holds at least one" in message  # why keys are required at all
