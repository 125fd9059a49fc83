"""The guard in the gateway, through HTTP: refusals, PII the upstream never sees,
outbound screening on plain and streamed answers, per-tenant settings, suspension."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import httpx
import pytest

from heshi.audit import AuditLog
from heshi.audit.head import audit_key, head_path
from heshi.config import AigcConfig, GuardConfig, HeshiConfig, TenantConfig
from heshi.store.db import Database
from heshi.store.keys import KeyStore
from tests.governance.conftest import (
    GatewayFactory,
    Upstream,
    bearer,
    chat_body,
    gateway_config,
)

REFUSAL = "抱歉，这个问题我无法回答。如有其他问题，欢迎继续咨询。"


def _config(home: Path, upstream: Upstream, **tenant_guard: Any) -> HeshiConfig:
    base = gateway_config(home, upstream.base_url)
    tenants = {"acme": TenantConfig(guard=tenant_guard or None)}
    return base.model_copy(update={"guard": GuardConfig(enabled=True), "tenants": tenants})


def _stream_text(response: httpx.Response) -> tuple[str, list[str]]:
    text, reasons = [], []
    for line in response.text.splitlines():
        if not line.startswith("data: ") or line == "data: [DONE]":
            continue
        chunk = json.loads(line[6:])
        for choice in chunk.get("choices") or []:
            text.append((choice.get("delta") or {}).get("content") or "")
            if choice.get("finish_reason"):
                reasons.append(choice["finish_reason"])
    return "".join(text), reasons


def test_a_blocked_prompt_gets_the_refusal_and_never_reaches_the_model(
    upstream: Upstream, start_gateway: GatewayFactory, keys: KeyStore, home: Path
) -> None:
    plaintext, _ = keys.create("acme", "cs")
    gw = start_gateway(_config(home, upstream))
    url = gw.url + "/v1/chat/completions"
    with httpx.Client(timeout=30) as client:
        r = client.post(url, json=chat_body("哪里能买到冰毒"), headers=bearer(plaintext))
        assert r.status_code == 200 and r.headers["x-heshi-guard"] == "block"
        choice = r.json()["choices"][0]
        assert choice["message"]["content"] == REFUSAL
        assert choice["finish_reason"] == "content_filter"
        streamed = client.post(
            url, json=chat_body("哪里能买到冰毒", stream=True), headers=bearer(plaintext)
        )
        assert _stream_text(streamed) == (REFUSAL, ["content_filter"])
        fine = client.post(url, json=chat_body("我遇到一个大麻烦"), headers=bearer(plaintext))
        assert fine.headers["x-heshi-guard"] == "pass"
    assert upstream.state.calls == 1  # only the harmless one


@pytest.mark.parametrize("stream", [False, True])
def test_pii_is_pseudonymized_upstream_and_restored_for_the_caller(
    upstream: Upstream, start_gateway: GatewayFactory, keys: KeyStore, home: Path, stream: bool
) -> None:
    plaintext, _ = keys.create("acme", "cs")
    upstream.state.echo = True  # the model repeats what it was sent
    gw = start_gateway(_config(home, upstream))
    prompt = "我是张三先生，手机13800138000，身份证11010519491231002X"
    with httpx.Client(timeout=30) as client:
        r = client.post(
            gw.url + "/v1/chat/completions",
            json=chat_body(prompt, stream=stream),
            headers=bearer(plaintext),
        )
    seen = upstream.state.bodies[-1]["messages"][-1]["content"]
    assert "13800138000" not in seen and "11010519491231002X" not in seen and "张三" not in seen
    assert "[手机号_1]" in seen and "[身份证号_1]" in seen
    answer = _stream_text(r)[0] if stream else r.json()["choices"][0]["message"]["content"]
    assert answer == prompt  # restored, placeholders split across chunks included


@pytest.mark.parametrize("stream", [False, True])
def test_generated_text_is_screened_on_the_way_out(
    upstream: Upstream, start_gateway: GatewayFactory, keys: KeyStore, home: Path, stream: bool
) -> None:
    plaintext, _ = keys.create("acme", "cs")
    upstream.state.reply = "您好，这里有一些刷单返利的信息，另外可以告诉你炸药配方。"
    gw = start_gateway(_config(home, upstream, actions={"fraud": "replace"}))
    with httpx.Client(timeout=30) as client:
        r = client.post(
            gw.url + "/v1/chat/completions",
            json=chat_body("你好", stream=stream),
            headers=bearer(plaintext),
        )
    if stream:
        text, reasons = _stream_text(r)
        # what was released before the block had its replaced term masked
        assert text.startswith("您好") and "刷单" not in text
        assert text.endswith(REFUSAL) and "炸药" not in text
        assert reasons == ["content_filter"]
    else:
        choice = r.json()["choices"][0]
        assert choice["message"]["content"] == REFUSAL
        assert choice["finish_reason"] == "content_filter"


def test_a_tenant_can_turn_pii_off_and_the_guard_off(
    upstream: Upstream, start_gateway: GatewayFactory, keys: KeyStore, home: Path
) -> None:
    plaintext, _ = keys.create("acme", "cs")
    other, _ = keys.create("beta", "cs")
    config = _config(home, upstream, pii="off")
    config.tenants["beta"] = TenantConfig(guard={"enabled": False})
    gw = start_gateway(config)
    with httpx.Client(timeout=30) as client:
        client.post(gw.url + "/v1/chat/completions", json=chat_body("手机13800138000"),
                    headers=bearer(plaintext))  # fmt: skip
        assert "13800138000" in upstream.state.bodies[-1]["messages"][-1]["content"]
        r = client.post(gw.url + "/v1/chat/completions", json=chat_body("哪里能买到冰毒"),
                        headers=bearer(other))  # fmt: skip
        assert "x-heshi-guard" not in r.headers  # guard off for beta
    with pytest.raises(ValueError, match=r"tenants\.bad\.guard"):
        HeshiConfig.model_validate(
            {"home": str(home), "tenants": {"bad": {"guard": {"pii": "maybe"}}}}
        )


def test_three_violations_in_a_row_suspend_the_key(
    upstream: Upstream, start_gateway: GatewayFactory, keys: KeyStore, home: Path
) -> None:
    plaintext, key = keys.create("acme", "cs")
    gw = start_gateway(_config(home, upstream))
    url = gw.url + "/v1/chat/completions"
    with httpx.Client(timeout=30) as client:
        for _ in range(3):
            r = client.post(url, json=chat_body("哪里能买到冰毒"), headers=bearer(plaintext))
            assert r.status_code == 200
        r = client.post(url, json=chat_body("你好"), headers=bearer(plaintext))
        assert r.status_code in (401, 403), r.text
    assert keys.get(key.id).status == "suspended"
    keys.resume(key.id)  # the admin override
    gw.gov.auth.refresh_now()
    with httpx.Client(timeout=30) as client:
        r = client.post(url, json=chat_body("你好"), headers=bearer(plaintext))
        assert r.status_code == 200


def test_guarded_requests_are_written_to_the_audit_log_masked(
    upstream: Upstream, start_gateway: GatewayFactory, keys: KeyStore, home: Path,
    store_db: Database, monkeypatch: pytest.MonkeyPatch,
) -> None:  # fmt: skip
    plaintext, key = keys.create("acme", "cs")
    upstream.state.echo = True
    monkeypatch.setenv("HESHI_AIGC_KEY", "a" * 32)
    aigc = AigcConfig(enabled=True, uscc="91350100M000100Y43", explicit="off")
    gw = start_gateway(_config(home, upstream).model_copy(update={"aigc": aigc}))
    url = gw.url + "/v1/chat/completions"
    with httpx.Client(timeout=30) as client:
        ok = client.post(
            url, json=chat_body("手机13800138000，帮我查订单"), headers=bearer(plaintext)
        )
        blocked = client.post(url, json=chat_body("哪里能买到冰毒"), headers=bearer(plaintext))
        streamed = client.post(
            url, json=chat_body("手机13900139000", stream=True), headers=bearer(plaintext)
        )
    assert gw.gov.audit.flush(10)
    # signed under the key the gateway made in its home, the newest noted beside it
    audit = AuditLog(store_db, key=audit_key(home), head=head_path(home, store_db.url))
    records = list(audit.records(kinds=("record",)))
    assert all(r.signature for r in records)
    by_id = {r.request_id: r for r in records}
    first = by_id[ok.headers["x-request-id"]]
    assert first.input == "手机138****8000，帮我查订单"  # masked, never the number
    assert first.output == "手机138****8000，帮我查订单", (
        ok.text
    )  # the restored answer, masked again
    assert (first.tenant, first.key_id, first.client_ip) == ("acme", key.id, "127.0.0.1")
    assert first.lexicon_version and first.lexicon_version.startswith("heshi-tc260@")
    refused = by_id[blocked.headers["x-request-id"]]
    assert [(v["category"], v["risk"], v["level"], v["action"]) for v in refused.verdicts] == [
        ("A8-drugs", "A8", "inbound", "block"),  # the request for it
        ("drugs", "A8", "inbound", "flag"),  # the topic word
    ]
    assert by_id[streamed.headers["x-request-id"]].output == "手机139****9000"
    # each answer's AIGC ProduceID is in its record; a refusal is not labelled
    label = json.loads(ok.headers["x-aigc-label"])["AIGC"]
    assert first.produce_id == label["ProduceID"]
    streamed_record = by_id[streamed.headers["x-request-id"]]
    assert streamed_record.produce_id == streamed.headers["x-aigc-produce-id"]
    assert refused.produce_id is None
    report = audit.verify()
    assert report.intact, report.issues
