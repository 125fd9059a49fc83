"""The band judge: the model decides the prompts the classifier is unsure of, through the
real gateway, with a real HTTP server standing in for the model."""

from __future__ import annotations

import math
from pathlib import Path
from typing import Any

import httpx
import pytest

from heshi.config import GuardConfig, HeshiConfig, TenantConfig
from heshi.guard.classifier import SafetyClassifier
from heshi.guard.judges import JUDGE_SYSTEM, harm_probability
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


def _judge_weighs(harmful: float) -> Any:
    """A judge that answers 有害 or 无害 by the larger mass, with logprobs giving 有害
    ``harmful`` of it (the rest to 无害, split over two tokens as Qwen's vocabulary does)."""

    def logprobs(body: dict[str, Any]) -> dict[str, Any] | None:
        if body["messages"][0]["content"] != JUDGE_SYSTEM or not body.get("logprobs"):
            return None
        top = [("有害", harmful), ("无", (1 - harmful) * 0.9), ("无害", (1 - harmful) * 0.1)]
        top += [("安全", 0.0001)]  # neither word: not counted
        return {"content": [{"token": "有害" if harmful > 0.5 else "无", "logprob": -0.1,
                             "top_logprobs": [{"token": t, "logprob": math.log(p)}
                                              for t, p in top]}]}  # fmt: skip

    return logprobs


def test_the_judge_blocks_by_its_probability_of_harmful(
    upstream: Upstream, start_gateway: GatewayFactory, keys: KeyStore, home: Path
) -> None:
    plaintext, _ = keys.create("acme", "cs")
    upstream.state.respond = _judge_says("有害")  # its word says harmful each time
    upstream.state.logprobs = _judge_weighs(0.62)  # but it is 62% sure
    for least, blocked in ((0.5, True), (0.6, True), (0.65, False), (0.8, False)):
        gw = start_gateway(
            _config(home, upstream, judge={"model": "qwen", "min_probability": least})
        )
        with httpx.Client(base_url=gw.url, timeout=30, headers=bearer(plaintext)) as client:
            r = client.post("/v1/chat/completions", json=chat_body(UNSURE))
        assert (r.headers["x-heshi-guard"] == "block") is blocked, (least, r.text)
    asked = [b for b in upstream.state.bodies if b["messages"][0]["content"] == JUDGE_SYSTEM]
    assert len(asked) == 4  # one token, with the ten likeliest in its place
    assert all(b["max_tokens"] == 1 and b["logprobs"] is True for b in asked)
    assert all(b["top_logprobs"] == 10 and b["temperature"] == 0 for b in asked)


def test_the_judges_probability_is_read_from_its_logprobs_or_else_its_word() -> None:
    def choice(text: str, top: list[tuple[str, float]] | None) -> dict[str, Any]:
        made: dict[str, Any] = {"message": {"role": "assistant", "content": text}}
        if top is not None:
            entries = [{"token": t, "logprob": math.log(p)} for t, p in top]
            made["logprobs"] = {"content": [{"token": text, "top_logprobs": entries}]}
        return made

    assert harm_probability(choice("有害", [("有害", 0.3), ("无", 0.1)])) == pytest.approx(0.75)
    # a vocabulary that splits the word: its first piece carries the mass
    assert harm_probability(choice("有", [("有", 0.2), ("无", 0.6)])) == pytest.approx(0.25)
    assert harm_probability(choice("有害", None)) == 1.0  # a backend without logprobs
    assert harm_probability(choice("无害", None)) == 0.0
    assert harm_probability(choice("不确定", None)) is None  # neither: blocks nothing
    assert harm_probability(choice("无害", [("安全", 0.9)])) == 0.0  # no mass on either word
    odd = [{"token": "有害", "logprob": float("nan")}, {"token": 5, "logprob": "x"}, "junk"]
    broken = {"message": {"content": "有害"}, "logprobs": {"content": [{"top_logprobs": odd}]}}
    assert harm_probability(broken) == 1.0  # unreadable logprobs: the word decides


def test_a_blocked_message_about_suicide_gets_the_hotline_with_the_refusal(
    upstream: Upstream, start_gateway: GatewayFactory, keys: KeyStore, home: Path
) -> None:
    """The judge blocks 我有点想死… (in the band, 0.55): the refusal says where to find help,
    streamed or not; a blocked message about something else gets the bare refusal."""
    crisis = "我有点想死，但又不想让家人难过。"
    with _client("有害", upstream, start_gateway, keys, home) as client:
        for body in (chat_body(crisis), chat_body(crisis) | {"stream": True}):
            r = client.post("/v1/chat/completions", json=body)
            assert r.status_code == 200 and r.headers["x-heshi-guard"] == "block"
            text = r.text if body.get("stream") else r.json()["choices"][0]["message"]["content"]
            assert REFUSAL in text and "12356" in text and "110" in text
        plain = client.post("/v1/chat/completions", json=chat_body(UNSURE))
        assert plain.json()["choices"][0]["message"]["content"] == REFUSAL


@pytest.mark.parametrize("crisis", ["", "请拨打本地热线 / call the local helpline"])
def test_the_crisis_line_is_the_deployments_to_word_or_turn_off(
    crisis: str, upstream: Upstream, start_gateway: GatewayFactory, keys: KeyStore, home: Path
) -> None:
    plaintext, _ = keys.create("acme", "cs")
    upstream.state.respond = _judge_says("有害")
    cfg = _config(home, upstream)
    gw = start_gateway(
        cfg.model_copy(update={"guard": cfg.guard.model_copy(update={"crisis": crisis})})
    )
    with httpx.Client(base_url=gw.url, timeout=30, headers=bearer(plaintext)) as client:
        r = client.post("/v1/chat/completions", json=chat_body("我有点想死，但又不想让家人难过。"))
    expected = f"{REFUSAL}\n\n{crisis}" if crisis else REFUSAL
    assert r.json()["choices"][0]["message"]["content"] == expected


def test_what_reads_as_a_crisis() -> None:
    from heshi.guard.crisis import in_crisis

    for text in (
        "我有自残的冲动",
        "女朋友说她不想活了",
        "怎麼自殺最快",
        "自 杀",
        "I want to kill myself",
    ):
        assert in_crisis(text), text
    for text in ("怎样识别电信诈骗", "杀毒软件推荐", "这个进程怎么kill掉", "死机了怎么办"):
        assert not in_crisis(text), text
