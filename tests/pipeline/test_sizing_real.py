"""The remote prompt estimate against Qwen's real tokenizer and chat template (slow: the
default model's llama.cpp counts each prompt exactly).

Admission reserves a remote request's prompt from ``estimate_prompt_tokens``; if that were
below the real count, concurrent requests could overrun a budget by the difference. This
measures the estimate on requests of every shape a gateway sees, rare characters and
emoji included, and requires it never to be below the real count.
"""

from __future__ import annotations

import asyncio
import json
from pathlib import Path
from typing import Any

import numpy as np
import pytest

from heshi.config import LocalEngineConfig
from heshi.engines.llamacpp import LlamaCppEngine
from heshi.engines.sizing import _weights, estimate_prompt_tokens

pytestmark = pytest.mark.slow

WEATHER = {
    "type": "function",
    "function": {
        "name": "get_weather",
        "description": "查询城市天气 / weather of a city",
        "parameters": {
            "type": "object",
            "properties": {"city": {"type": "string", "description": "城市名"}},
            "required": ["city"],
        },
    },
}


def _rare_characters() -> str:
    """The CJK characters Qwen's tokenizer splits into three tokens: the worst text."""
    weights = _weights()
    return "".join(chr(c) for c in range(0x4E00, 0x9FA6) if weights[c] == 3)


def _bodies() -> list[dict[str, Any]]:
    user = lambda text: {"messages": [{"role": "user", "content": text}]}  # noqa: E731
    faq = "信用卡年费怎么收取？首年免年费，次年刷卡满六次可免。逾期还款会产生违约金和利息。"
    return [
        user("hi"),
        user("你好"),
        user(faq * 40),
        user(_rare_characters()),
        user("😀🚀🎉 表情符号 and emoji 🇨🇳" * 20),
        user("def f(x):\n    return {'a': [1, 2, 3], 'b': x ** 2}\n" * 30),
        user(json.dumps({"订单": [{"编号": i, "金额": i * 12.5} for i in range(50)]})),
        user("The quick brown fox jumps over the lazy dog. " * 60),
        user("ＦＵＬＬＷＩＤＴＨ　全角字符　１２３４５" * 30),
        {
            "messages": [
                {"role": "system", "content": "你是银行客服，回答要简洁。"},
                {"role": "user", "content": "年费多少？"},
                {"role": "assistant", "content": "首年免年费。"},
                {"role": "user", "content": "那第二年呢？"},
            ]
        },
        {"messages": [{"role": "user", "content": "北京天气？"}], "tools": [WEATHER]},
        {
            "messages": [
                {"role": "user", "content": "北京天气？"},
                {
                    "role": "assistant",
                    "content": None,
                    "tool_calls": [
                        {
                            "id": "c1",
                            "type": "function",
                            "function": {"name": "get_weather", "arguments": '{"city": "北京"}'},
                        }
                    ],
                },
                {"role": "tool", "tool_call_id": "c1", "content": "晴，25度"},
            ],
            "tools": [WEATHER],
        },
        {
            "messages": [
                {
                    "role": "user",
                    "content": [
                        {"type": "text", "text": faq},
                        {"type": "text", "text": "总结一下"},
                    ],
                }
            ]
        },
    ]


def test_the_estimate_is_never_below_the_real_count(default_model_path: Path) -> None:
    config = LocalEngineConfig(model=str(default_model_path), parallel=1, ctx=8192)
    engine = LlamaCppEngine("sizing", default_model_path, config)

    async def measure() -> list[tuple[int, int]]:
        await engine.start()
        try:
            out = []
            for body in _bodies():
                real = await engine.count_prompt_tokens("chat", body)
                assert real is not None
                out.append((estimate_prompt_tokens(body), real))
            return out
        finally:
            await engine.close()

    pairs = asyncio.run(measure())
    ratios = np.array([estimate / real for estimate, real in pairs])
    assert all(estimate >= real for estimate, real in pairs), pairs
    # not wastefully far above either: reservations that big would refuse paying users
    assert float(np.median(ratios)) < 2.5, pairs
