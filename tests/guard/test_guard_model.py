"""The guard-model stage: a Qwen3Guard-style classifier behind its own alias."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest

from heshi.config import AliasConfig, BackendConfig, GuardConfig, GuardModelConfig, HeshiConfig
from heshi.guard.guard_model import parse
from heshi.store.keys import KeyStore
from tests.fakes.upstream import FakeUpstream
from tests.governance.conftest import GatewayFactory, Upstream, bearer, chat_body, gateway_config

REFUSAL = "抱歉，这个问题我无法回答。如有其他问题，欢迎继续咨询。"


@pytest.fixture
def classifier() -> Iterator[Upstream]:
    with FakeUpstream(name="classifier") as fake:
        yield fake


def _config(home: Path, upstream: Upstream, classifier: Upstream, **model: object) -> HeshiConfig:
    base = gateway_config(home, upstream.base_url)
    guard_model = "Qwen/Qwen3Guard-Gen-0.6B"
    backends = {**base.backends, "guard-up": BackendConfig(base_url=classifier.base_url,
                                                           models=[guard_model])}  # fmt: skip
    aliases = {**base.aliases, "qwen3guard": AliasConfig(backend="guard-up", model=guard_model)}
    guard = GuardConfig(enabled=True, model=GuardModelConfig(alias="qwen3guard", **model))  # type: ignore[arg-type]
    return base.model_copy(update={"backends": backends, "aliases": aliases, "guard": guard})


def test_parse_qwen3guard_answers() -> None:
    v = parse("Safety: Unsafe\nCategories: Violent, Non-violent Illegal Acts")
    assert (v.level, v.categories, v.risks()) == (
        "Unsafe",
        ("Violent", "Non-violent Illegal Acts"),
        ["A6", "A8"],
    )
    assert parse("Safety: Safe\nCategories: None\nRefusal: Yes").categories == ()
    assert parse("I am not sure").level == "Error"


def test_an_unsafe_prompt_is_refused_and_never_reaches_the_model(
    upstream: Upstream, classifier: Upstream, start_gateway: GatewayFactory, keys: KeyStore,
    home: Path,
) -> None:  # fmt: skip
    plaintext, _ = keys.create("acme", "cs")
    classifier.state.reply = "Safety: Unsafe\nCategories: Violent"
    gw = start_gateway(_config(home, upstream, classifier))
    r = httpx.post(gw.url + "/v1/chat/completions", json=chat_body("一个没有词库命中的问题"),
                   headers=bearer(plaintext))  # fmt: skip
    assert r.headers["x-heshi-guard"] == "block"
    assert r.json()["choices"][0]["message"]["content"] == REFUSAL
    assert upstream.state.calls == 0 and classifier.state.calls == 1
    asked = classifier.state.bodies[0]["messages"]
    assert asked == [{"role": "user", "content": "一个没有词库命中的问题"}]


def test_an_unsafe_answer_is_replaced_and_controversial_is_only_flagged(
    upstream: Upstream, classifier: Upstream, start_gateway: GatewayFactory, keys: KeyStore,
    home: Path,
) -> None:  # fmt: skip
    plaintext, _ = keys.create("acme", "cs")
    upstream.state.reply = "这是模型的回答"
    gw = start_gateway(_config(home, upstream, classifier))
    url = gw.url + "/v1/chat/completions"
    classifier.state.reply = "Safety: Controversial\nCategories: Politically Sensitive Topics"
    flagged = httpx.post(url, json=chat_body("问题"), headers=bearer(plaintext))
    assert flagged.headers["x-heshi-guard"] == "flag"
    assert flagged.json()["choices"][0]["message"]["content"] == "这是模型的回答"
    classifier.state.reply = "Safety: Safe\nCategories: None"
    ok = httpx.post(url, json=chat_body("问题"), headers=bearer(plaintext))
    assert ok.headers["x-heshi-guard"] == "pass"
    # The prompt is judged safe, then the answer unsafe: the second call sees both turns.
    replies = iter(
        ["Safety: Safe\nCategories: None", "Safety: Unsafe\nCategories: PII\nRefusal: No"]
    )
    classifier.state.echo = False
    classifier.state.reply = None
    classifier.state.respond = lambda body: next(replies)
    blocked = httpx.post(url, json=chat_body("问题"), headers=bearer(plaintext))
    assert blocked.headers["x-heshi-guard"] == "block"
    choice = blocked.json()["choices"][0]
    assert (choice["message"]["content"], choice["finish_reason"]) == (REFUSAL, "content_filter")
    assert [m["role"] for m in classifier.state.bodies[-1]["messages"]] == ["user", "assistant"]


def test_an_unreachable_classifier_follows_on_error(
    upstream: Upstream, start_gateway: GatewayFactory, keys: KeyStore, home: Path,
) -> None:  # fmt: skip
    plaintext, _ = keys.create("acme", "cs")
    with FakeUpstream(name="classifier") as dead:
        dead.down()  # its port refuses connections
        for on_error, expected in (("allow", "pass"), ("block", "block")):
            gw = start_gateway(_config(home / on_error, upstream, dead, on_error=on_error))
            keys_here = plaintext
            r = httpx.post(
                gw.url + "/v1/chat/completions", json=chat_body("问题"), headers=bearer(keys_here)
            )
            assert r.headers.get("x-heshi-guard") == expected, (on_error, r.text)
