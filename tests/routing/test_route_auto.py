"""The ``auto`` model: small tier for simple requests, large for hard ones, and why."""

from __future__ import annotations

from typing import Any

import pytest

from heshi.engines.base import JSON
from heshi.routing import Router
from tests.routing.routing_fakes import ScriptedEngine, routing_config

ALIASES = {
    "qwen-small": {"backend": "small-box", "model": "Qwen2.5-1.5B-Instruct"},
    "qwen-large": {"backend": "big-box", "model": "Qwen3-32B"},
}


def make_router(**auto: Any) -> tuple[Router, ScriptedEngine, ScriptedEngine]:
    small, large = ScriptedEngine("small-box"), ScriptedEngine("big-box")
    config = routing_config(
        aliases=ALIASES, auto={"small": "qwen-small", "large": "qwen-large", **auto}
    )
    return Router(config, {"small-box": small, "big-box": large}), small, large


def chat(*turns: str, system: str | None = None, **extra: Any) -> JSON:
    messages = [{"role": "system", "content": system}] if system else []
    for i, text in enumerate(turns):
        messages.append({"role": "user" if i % 2 == 0 else "assistant", "content": text})
    return {"model": "auto", "messages": messages, **extra}


async def test_greeting_goes_small_and_the_header_says_why() -> None:
    router, small, large = make_router()
    body = chat("你好")
    plan = router.plan("auto", body)
    assert (plan.resolved, plan.decision and plan.decision.score) == ("qwen-small", 0)
    routed = await router.call(plan, "chat", body)
    assert routed.value == {"backend": "small-box", "model": "Qwen2.5-1.5B-Instruct"}
    assert routed.route_header == "auto->small(score=0);qwen-small->small-box(alias)"
    assert routed.backend_header == "small-box"
    assert (len(small.calls), len(large.calls)) == (1, 0)


@pytest.mark.parametrize(
    ("question", "reasons"),
    [
        ("请用 Python 写一个函数，计算 ∫ x^2 dx 从 0 到 3 的定积分", ("math", "code")),
        ("为什么 3x + 5 = 20 的解是 5？请一步一步证明", ("reasoning", "math")),
        ("Fix this bug:\n```\ndef add(a, b): return a - b\n```", ("code",)),
        ("SELECT name FROM users WHERE age > 30 为什么这么慢？", ("reasoning", "code")),
    ],
)
async def test_math_code_and_reasoning_questions_go_large(
    question: str, reasons: tuple[str, ...]
) -> None:
    router, _, _ = make_router(threshold=1 if len(reasons) == 1 else 2)
    decision = router.plan("auto", chat(question)).decision
    assert decision is not None
    assert (decision.tier, decision.reasons) == ("large", reasons)


async def test_one_cue_alone_stays_small_at_the_default_threshold() -> None:
    router, _, _ = make_router()
    decision = router.plan("auto", chat("帮我写一段代码")).decision
    assert decision is not None
    assert (decision.tier, decision.header()) == ("small", "auto->small(score=1:code)")


async def test_long_prompt_goes_large() -> None:
    router, _, _ = make_router(long_prompt_chars=500)
    document = "本合同由甲乙双方签订。" * 200  # 2,200 characters: over 4 × 500
    assert router.plan("auto", chat(document)).resolved == "qwen-large"
    decision = router.plan("auto", chat(document[:600])).decision
    assert decision is not None
    assert (decision.tier, decision.reasons) == ("small", ("long",))
    routed = await router.call(router.plan("auto", chat(document)), "chat", chat(document))
    assert routed.route_header.startswith("auto->large(score=2:long,very-long);qwen-large->")


async def test_deep_conversations_and_tool_requests_add_a_point_each() -> None:
    router, _, _ = make_router(deep_conversation_turns=3)
    deep = chat("你好", "您好！", "我的订单", "请提供单号", "12345")
    tools = chat("查天气", tools=[{"type": "function", "function": {"name": "weather"}}])
    both = {**deep, "response_format": {"type": "json_schema", "json_schema": {}}}
    decisions = [router.plan("auto", b).decision for b in (deep, tools, both)]
    assert [(d.tier, d.reasons) for d in decisions if d] == [
        ("small", ("deep",)),
        ("small", ("tools",)),
        ("large", ("deep", "schema")),
    ]


async def test_system_prompt_and_assistant_text_do_not_count_as_cues() -> None:
    router, _, _ = make_router(threshold=1)
    body = chat("你好", "```python\nprint(1)\n```", "谢谢", system="你是一个编程和数学助手")
    decision = router.plan("auto", body).decision
    assert decision is not None
    assert (decision.tier, decision.score) == ("small", 0)


async def test_configured_cues_replace_the_built_in_list() -> None:
    router, _, _ = make_router(
        cues=["contract:合同", "contract:/第[一二三四五六七八九十]+条/", "风险"]
    )
    decision = router.plan("auto", chat("请审查第三条的风险，为什么要计算积分")).decision
    assert decision is not None
    # "为什么" and "计算" are built-in cues, no longer active.
    assert (decision.tier, decision.reasons) == ("large", ("contract", "custom"))


async def test_completion_prompts_and_content_parts_are_scored_too() -> None:
    router, _, _ = make_router()
    prompt = {"model": "auto", "prompt": ["为什么", "x = 1 + 2"]}
    parts = chat("")
    parts["messages"][0]["content"] = [{"type": "text", "text": "证明 1 + 1 = 2"}]
    assert router.plan("auto", prompt).resolved == "qwen-large"
    assert router.plan("auto", parts).resolved == "qwen-large"
