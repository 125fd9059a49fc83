"""The HTTP edge under abuse (issue 9, defects 4, 6, 7, 8): bodies bounded while they
arrive and refused before they are read without a key, deep JSON refused with the field
named, a mid-body disconnect is one INFO line, and what the gateway exposes without a key."""

from __future__ import annotations

import json
import logging
import socket
import threading
from pathlib import Path
from typing import Any

import httpx
import pytest

from heshi.config import ServerConfig
from heshi.store.keys import KeyStore
from tests.conftest import ADMIN, ADMIN_TOKEN
from tests.fakes.upstream import FakeUpstream
from tests.governance.conftest import (
    ALIAS,
    OTHER_ALIAS,
    GatewayFactory,
    RunningGateway,
    Upstream,
    bearer,
    chat_body,
    gateway_config,
)

LIMIT = 64 * 1024


def _gateway(start: GatewayFactory, home: Path, upstream: Upstream) -> RunningGateway:
    config = gateway_config(home, upstream.base_url)
    return start(config.model_copy(update={"server": ServerConfig(max_body_bytes=LIMIT)}))


def _port(url: str) -> int:
    return int(url.rsplit(":", 1)[1])


def _chunked_upload(port: int, headers: bytes, total: int) -> tuple[bytes, int]:
    """POST a chunked body of up to ``total`` bytes; returns (response head, bytes sent)
    — how much the server took before it answered and closed."""
    piece = b"x" * 65536
    frame = b"%x\r\n" % len(piece) + piece + b"\r\n"
    sent = 0
    with socket.create_connection(("127.0.0.1", port)) as sock:
        sock.sendall(
            b"POST /v1/chat/completions HTTP/1.1\r\nHost: x\r\nContent-Type: application/json"
            b"\r\nTransfer-Encoding: chunked\r\n" + headers + b"\r\n"
        )
        sock.settimeout(10)
        try:
            while sent < total:
                sock.sendall(frame)
                sent += len(piece)
        except OSError:  # the server answered and closed: the rest is not wanted
            pass
        head = b""
        try:
            while b"\r\n\r\n" not in head:
                data = sock.recv(4096)
                if not data:
                    break
                head += data
        except OSError:
            pass
    return head, sent


@pytest.mark.parametrize("with_key", [False, True])
def test_a_huge_chunked_body_is_refused_while_it_arrives(
    upstream: Upstream,
    start_gateway: GatewayFactory,
    keys: KeyStore,
    home: Path,
    with_key: bool,
) -> None:
    """512 MiB chunked: without a key the 401 comes before the body is read; with one the
    400 comes once the limit is passed. Either way the connection closes, and the client
    can push no more than the socket buffers hold."""
    plaintext, _ = keys.create("acme", "uploader")
    gw = _gateway(start_gateway, home, upstream)
    auth = b"Authorization: Bearer " + plaintext.encode() + b"\r\n" if with_key else b""
    head, sent = _chunked_upload(_port(gw.url), auth, 512 * 1024 * 1024)
    status = head.split(b"\r\n", 1)[0]
    assert status == (b"HTTP/1.1 400 Bad Request" if with_key else b"HTTP/1.1 401 Unauthorized")
    assert b"connection: close" in head.lower()
    assert sent < 64 * 1024 * 1024, f"the gateway kept reading: {sent} bytes taken"
    assert upstream.state.calls == 0


def test_a_declared_oversized_body_is_refused_without_reading_it(
    upstream: Upstream, start_gateway: GatewayFactory, home: Path
) -> None:
    gw = _gateway(start_gateway, home, upstream)
    big = chat_body("字" * LIMIT)
    r = httpx.post(gw.url + "/v1/chat/completions", json=big)
    assert r.status_code == 400 and "exceeds 65536 bytes" in r.json()["error"]["message"]


def _nested(depth: int) -> dict[str, Any]:
    schema: dict[str, Any] = {"type": "string"}
    for _ in range(depth):
        schema = {"type": "object", "properties": {"x": schema}}
    return schema


@pytest.mark.parametrize(
    ("field", "build"),
    [
        (
            "tools",
            lambda d: {"tools": [{"type": "function", "function": {"name": "f", "parameters": d}}]},
        ),
        (
            "response_format",
            lambda d: {"response_format": {"type": "json_schema", "json_schema": {"schema": d}}},
        ),
        (
            "messages",
            lambda d: {
                "messages": [
                    {"role": "user", "content": [{"type": "text", "text": "hi", "extra": d}]}
                ]
            },
        ),
    ],
)
def test_json_nested_too_deep_is_a_400_naming_the_field(
    upstream: Upstream, start_gateway: GatewayFactory, home: Path, field: str, build: Any
) -> None:
    gw = start_gateway(gateway_config(home, upstream.base_url))
    body = chat_body() | build(_nested(300))
    r = httpx.post(gw.url + "/v1/chat/completions", json=body)
    assert r.status_code == 400, r.text
    error = r.json()["error"]
    assert error["param"] == field and "64" in error["message"]
    assert upstream.state.calls == 0
    # a schema of ordinary depth passes
    ok = chat_body() | {
        "tools": [{"type": "function", "function": {"name": "f", "parameters": _nested(20)}}]
    }
    assert httpx.post(gw.url + "/v1/chat/completions", json=ok).status_code == 200


def test_a_client_that_disconnects_mid_body_is_one_info_line(
    upstream: Upstream,
    start_gateway: GatewayFactory,
    home: Path,
    caplog: pytest.LogCaptureFixture,
) -> None:
    gw = start_gateway(gateway_config(home, upstream.base_url))
    caplog.set_level(logging.INFO)
    for _ in range(20):
        with socket.create_connection(("127.0.0.1", _port(gw.url))) as sock:
            sock.sendall(
                b"POST /v1/chat/completions HTTP/1.1\r\nHost: x\r\n"
                b'Content-Type: application/json\r\nContent-Length: 100000\r\n\r\n{"model"'
            )
    # a normal request after them: served, and by then the 20 aborts were all handled
    done = threading.Event()
    for _ in range(100):
        if sum("disconnected before its request" in r.getMessage() for r in caplog.records) >= 20:
            done.set()
            break
        httpx.get(gw.url + "/healthz")
    assert done.is_set(), [r.getMessage() for r in caplog.records]
    errors = [r for r in caplog.records if r.levelno >= logging.WARNING]
    assert errors == [], [r.getMessage() for r in errors]
    notes = [r for r in caplog.records if "disconnected before its request" in r.getMessage()]
    assert len(notes) == 20 and all(r.levelno == logging.INFO for r in notes)
    assert all(r.exc_info is None for r in caplog.records)


# -- what is exposed without a key --------------------------------------------------------


def test_health_and_metrics_details_need_the_admin_token(
    upstream: Upstream, start_gateway: GatewayFactory, home: Path
) -> None:
    gw = start_gateway(gateway_config(home, upstream.base_url))
    assert httpx.get(gw.url + "/healthz").json() == {"status": "ok"}  # liveness: nothing else
    assert httpx.get(gw.url + "/readyz").json() == {"status": "ready"}
    details = httpx.get(gw.url + "/healthz", headers=ADMIN).json()
    assert details["backends"]["up"]["state"] == "closed" and details["ready"] is True
    assert set(details) >= {"models", "engines", "backends", "ledger", "admission"}
    r = httpx.get(gw.url + "/metrics")
    assert r.status_code == 401 and "heshi_" not in r.text
    wrong = {"Authorization": "Bearer not-the-token"}
    assert httpx.get(gw.url + "/metrics", headers=wrong).status_code == 401
    assert httpx.get(gw.url + "/healthz", headers=wrong).status_code == 401
    r = httpx.get(gw.url + "/metrics", headers=ADMIN)
    assert r.status_code == 200 and "heshi_requests_total" in r.text


def test_without_an_admin_token_configured_the_details_stay_closed(
    upstream: Upstream, start_gateway: GatewayFactory, home: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.delenv("HESHI_ADMIN_TOKEN")
    gw = start_gateway(gateway_config(home, upstream.base_url))
    assert httpx.get(gw.url + "/healthz").json() == {"status": "ok"}
    r = httpx.get(gw.url + "/metrics", headers={"Authorization": f"Bearer {ADMIN_TOKEN}"})
    assert r.status_code == 403 and "HESHI_ADMIN_TOKEN" in r.json()["error"]["message"]
    assert httpx.get(gw.url + "/metrics").status_code == 403  # closed, header or not (serving.md)


def test_models_lists_only_what_the_key_may_use(
    upstream: Upstream, start_gateway: GatewayFactory, keys: KeyStore, home: Path
) -> None:
    narrow, _ = keys.create("acme", "narrow", models=[ALIAS])
    wide, _ = keys.create("acme", "wide")
    gw = start_gateway(gateway_config(home, upstream.base_url))

    def names(key: str) -> set[str]:
        models = httpx.get(gw.url + "/v1/models", headers=bearer(key)).json()["data"]
        return {m["id"] for m in models}

    assert names(narrow) == {ALIAS}
    assert {ALIAS, OTHER_ALIAS} <= names(wide)
    assert httpx.get(gw.url + "/v1/models").status_code == 401


def test_no_redirect_is_built_from_the_host_header(
    upstream: Upstream, start_gateway: GatewayFactory, home: Path
) -> None:
    gw = start_gateway(gateway_config(home, upstream.base_url))
    r = httpx.post(
        gw.url + "/v1/chat/completions/",
        json=chat_body(),
        headers={"Host": "evil.example"},
        follow_redirects=False,
    )
    assert r.status_code == 404 and "location" not in r.headers


def test_a_failing_backend_is_one_warning_per_interval_not_one_per_request(
    start_gateway: GatewayFactory, home: Path, caplog: pytest.LogCaptureFixture
) -> None:
    with FakeUpstream() as dead:
        dead.down()
        gw = start_gateway(gateway_config(home, dead.base_url, breaker_failures=1000))
        caplog.set_level(logging.WARNING, logger="heshi.gateway")
        statuses = {
            httpx.post(gw.url + "/v1/chat/completions", json=chat_body()).status_code
            for _ in range(20)
        }
    assert len(statuses) == 1 and statuses <= {502, 503}  # one failure, twenty times
    (status,) = statuses
    lines = [r.getMessage() for r in caplog.records if f"-> {status}" in r.getMessage()]
    assert len(lines) == 1, lines


def test_the_documented_health_details_are_the_real_ones(
    upstream: Upstream, start_gateway: GatewayFactory, home: Path
) -> None:
    """docs/serving.md shows a /healthz answer: the same fields, nested the same way."""
    text = (Path(__file__).parents[2] / "docs" / "serving.md").read_text(encoding="utf-8")
    example = json.loads(text.split("```json\n", 1)[1].split("```", 1)[0])
    gw = start_gateway(gateway_config(home, upstream.base_url))
    real = httpx.get(gw.url + "/healthz", headers=ADMIN).json()

    def shape(value: Any) -> Any:
        if isinstance(value, dict):
            return {k: shape(v) for k, v in value.items()} if "state" not in value else "backend"
        return type(value).__name__

    assert set(real) == set(example)
    assert shape(real["ledger"]) == shape(example["ledger"])
    assert shape(real["admission"]) == shape(example["admission"])
    assert all(shape(b) == "backend" for b in real["backends"].values())
