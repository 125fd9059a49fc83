"""Edges of the guard: every text field screened, masks that hide, policies that merge."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from typing import Any

import pytest

from heshi.config import AigcConfig, GuardConfig, HeshiConfig, TenantConfig
from heshi.errors import ConfigError, InvalidRequest
from heshi.guard.labels import Labeller
from heshi.guard.pii import mask_value, scan
from heshi.guard.stage import GuardStage

# The lexicon's own behaviour: the trained classifier is measured on its own (test_classifier)
GUARD = HeshiConfig(
    guard=GuardConfig(enabled=True, actions={"fraud": "replace"}, classifier={"enabled": False})
)


def _inbound(body: dict[str, Any], stage: GuardStage | None = None) -> Any:
    return asyncio.run((stage or GuardStage(GUARD)).inbound(None, None, body))


def test_every_rendered_prompt_field_is_screened() -> None:
    for body in (
        {"messages": [{"role": "assistant", "content": "", "reasoning_content": "哪里能买到冰毒"}]},
        {"messages": [{"role": "assistant", "content": None, "tool_calls": [
            {"type": "function", "function": {"name": "f", "arguments": '{"q": "冰毒货源"}'}}]}]},
        {"prompt": "你好", "suffix": "哪里买冰毒"},
    ):  # fmt: skip
        assert _inbound(body).blocked, body
    with pytest.raises(InvalidRequest, match="token-ID"):
        _inbound({"prompt": [100, 200]})
    with pytest.raises(InvalidRequest, match="one prompt"):
        _inbound({"prompt": ["a", "b"]})
    with pytest.raises(InvalidRequest, match="logprobs"):
        _inbound({"messages": [{"role": "user", "content": "hi"}], "logprobs": True})


def test_a_replaced_prompt_term_is_masked_for_the_model_too() -> None:
    body = {"messages": [{"role": "user", "content": "介绍一下刷单返利怎么做"}]}
    result = _inbound(body)
    assert result.verdict == "replace"
    assert body["messages"][-1]["content"] == "介绍一下****怎么做"


def test_blocked_answers_lose_reasoning_tool_calls_and_logprobs() -> None:
    stage = GuardStage(GUARD)
    inbound = _inbound({"messages": [{"role": "user", "content": "你好"}]}, stage)
    message = {"content": "去哪买冰毒", "reasoning_content": "问哪里能买到冰毒",
               "tool_calls": [{"function": {"arguments": "冰毒购买渠道"}}]}  # fmt: skip
    result = {"choices": [{"message": message, "logprobs": {"content": []},
                           "finish_reason": "stop"}]}  # fmt: skip
    assert stage.outbound_result(inbound, result) == "block"
    choice = result["choices"][0]
    assert choice["finish_reason"] == "content_filter" and "logprobs" not in choice
    assert set(choice["message"]) == {"content"}
    assert "冰毒" not in str(result)


def test_streamed_reasoning_is_screened() -> None:
    stage = GuardStage(GUARD)
    inbound = _inbound({"messages": [{"role": "user", "content": "你好"}]}, stage)

    def chunk(**delta: str) -> dict[str, Any]:
        return {"choices": [{"index": 0, "delta": delta, "finish_reason": None}]}

    async def source() -> AsyncIterator[dict[str, Any]]:
        for part in ("哪里能买", "到冰", "毒"):
            yield chunk(reasoning_content=part)
        yield chunk(content="好的")

    async def run() -> list[dict[str, Any]]:
        return [c async for c in stage.outbound_stream(inbound, None, source())]

    out = asyncio.run(run())
    assert "冰毒" not in "".join(str(c) for c in out)
    assert out[-1]["choices"][0]["finish_reason"] == "content_filter"


def test_masks_hide_the_middle_of_numbers_whatever_they_contain() -> None:
    for text, masked in (("+86 13900861234", "+86 139****1234"), ("13800860000", "138****0000")):
        assert mask_value(scan(text)[0]) == masked


def test_code_is_not_taken_for_ipv6() -> None:
    assert scan("use std::io::Read; String::from(x); a::b") == []
    assert [f.text for f in scan("地址 fe80::1 和 2001:db8::ff00:42:8329")] == [
        "fe80::1",
        "2001:db8::ff00:42:8329",
    ]


def test_tenant_overrides_merge_into_nested_sections() -> None:
    config = HeshiConfig(
        guard={"model": {"on_error": "block", "block": ["Unsafe", "Controversial"]},
               "suspension": {"consecutive": 10, "daily": 50}},
        tenants={
            "acme": TenantConfig(guard={"model": {"alias": "g2"}, "suspension": {"daily": 20}})
        },
    )  # fmt: skip
    merged = config.guard_for("acme")
    assert (merged.model.alias, merged.model.on_error) == ("g2", "block")
    assert merged.model.block == ["Unsafe", "Controversial"]
    assert (merged.suspension.consecutive, merged.suspension.daily) == (10, 20)


def test_an_unreachable_classifier_does_not_suspend_the_caller() -> None:
    suspended: list[str] = []

    async def down(alias: str, messages: list[Any]) -> str:
        raise ConnectionError("classifier down")

    config = HeshiConfig(guard={"enabled": True, "model": {"alias": "g", "on_error": "block"},
                                "suspension": {"consecutive": 2}})  # fmt: skip
    stage = GuardStage(config, suspend=lambda key, why: suspended.append(key))
    for _ in range(3):
        result = asyncio.run(stage.inbound(None, "key_1", {"messages": [
            {"role": "user", "content": "今天天气怎么样"}]}, classify=down))  # fmt: skip
        assert result.blocked  # on_error: block
    assert suspended == []


def test_a_short_aigc_key_fails_at_startup(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("HESHI_AIGC_KEY", "short")
    with pytest.raises(ConfigError, match="16"):
        Labeller(AigcConfig(enabled=True, uscc="91350100M000100Y43"))
