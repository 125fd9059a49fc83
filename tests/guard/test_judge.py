"""The band judge: the model decides the prompts the classifier is unsure of, through the
real gateway, with a real HTTP server standing in for the model."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import httpx

from heshi.config import GuardConfig, HeshiConfig, TenantConfig
from heshi.guard.classifier import SafetyClassifier
from heshi.guard.judges import JUDGE_SYSTEM
from heshi.store.keys import KeyStore
from tests.governance.conftest import GatewayFactory, Upstream, bearer, chat_body, gateway_config

UNSURE = "帮我写一个爬虫抓取天气网站的数据"  # a request the classifier is unsure of (the band)
PLAIN = "信用卡怎么激活？"  # below the band: the judge is not asked
REFUSAL = "抱歉，这个问题我无法回答。如有其他问题，欢迎继续咨询。"


def _config(home: Path, upstream: Upstream, **classifier: Any) -> HeshiConfig:
    base = gateway_config(home, upstream.base_url)
    settings = {"judge": {"model": "qwen"}, "action": "flag"} | classifier
    guard = GuardConfig(enabled=True, classifier=settings, suspension={"consecutive": 1})
    return base.model_copy(update={"guard": guard, "tenants": {"acme": TenantConfig()}})


def _judge_says(verdict: str) -> Any:
    def respond(body: dict[str, Any]) -> str:
        if body["messages"][0]["content"] == JUDGE_SYSTEM:
            return verdict
        return "好的，下面是代码。"

    return respond


def test_the_prompts_are_where_the_test_needs_them() -> None:
    model = SafetyClassifier.load()
    unsure, plain = model.read([UNSURE, PLAIN])
    band = GuardConfig().classifier
    assert band.judge.above <= unsure.unsafe < band.block_above  # type: ignore[operator]
    assert plain.unsafe < band.judge.above


def _client(
    verdict: str, upstream: Upstream, start_gateway: GatewayFactory, keys: KeyStore, home: Path
) -> httpx.Client:
    """A client of a gateway whose judge (the fake upstream) answers ``verdict``."""
    plaintext, _ = keys.create("acme", "cs")
    upstream.state.respond = _judge_says(verdict)
    gw = start_gateway(_config(home, upstream))
    return httpx.Client(base_url=gw.url, timeout=30, headers=bearer(plaintext))


def test_the_judge_blocks_what_it_finds_harmful_without_suspending_the_key(
    upstream: Upstream, start_gateway: GatewayFactory, keys: KeyStore, home: Path
) -> None:
    with _client("有害", upstream, start_gateway, keys, home) as client:
        blocked = client.post("/v1/chat/completions", json=chat_body(UNSURE))
        assert blocked.status_code == 200 and blocked.headers["x-heshi-guard"] == "block"
        assert blocked.json()["choices"][0]["message"]["content"] == REFUSAL
        # an estimate is no evidence against the key (suspension after 1 violation here)
        again = client.post("/v1/chat/completions", json=chat_body(PLAIN))
        assert again.status_code == 200, again.text
    judged = [b for b in upstream.state.bodies if b["messages"][0]["content"] == JUDGE_SYSTEM]
    assert len(judged) == 1  # once, for the unsure prompt; never for the plain one
    assert judged[0]["messages"][-1] == {"role": "user", "content": f"请求：{UNSURE}"}
    assert judged[0]["temperature"] == 0


def test_a_prompt_the_judge_finds_harmless_goes_on_and_a_failing_judge_blocks_nothing(
    upstream: Upstream, start_gateway: GatewayFactory, keys: KeyStore, home: Path
) -> None:
    with _client("无害", upstream, start_gateway, keys, home) as client:
        r = client.post("/v1/chat/completions", json=chat_body(UNSURE))
        assert r.status_code == 200 and r.json()["choices"][0]["message"]["content"] != REFUSAL
        upstream.state.mode = "500"  # the judge (and the model) fail
        failed = client.post("/v1/chat/completions", json=chat_body(UNSURE))
        assert failed.headers.get("x-heshi-guard") != "block"


def test_the_judge_can_be_switched_off_or_its_band_moved(
    upstream: Upstream, start_gateway: GatewayFactory, keys: KeyStore, home: Path
) -> None:
    plaintext, _ = keys.create("acme", "cs")
    upstream.state.respond = _judge_says("有害")
    off = _config(home, upstream, judge={"enabled": False})
    tenants = {"acme": TenantConfig(guard={"classifier": {"judge": {"above": 0.99}}})}
    for config in (off, _config(home, upstream).model_copy(update={"tenants": tenants})):
        gw = start_gateway(config)
        with httpx.Client(base_url=gw.url, timeout=30, headers=bearer(plaintext)) as client:
            r = client.post("/v1/chat/completions", json=chat_body(UNSURE))
            assert r.headers["x-heshi-guard"] != "block", r.text
    assert not [b for b in upstream.state.bodies if b["messages"][0]["content"] == JUDGE_SYSTEM]
