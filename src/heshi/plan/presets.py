"""Workload presets: what each kind of traffic sends and receives, and the service level
it needs (docs/plan.md)."""

from __future__ import annotations

from dataclasses import dataclass


@dataclass(frozen=True)
class Preset:
    name: str
    description: str
    input_tokens: int  # typical prompt, retrieved context included
    output_tokens: int  # typical answer
    context: int  # default --context
    # The service level the workload implies: tokens/s each user needs, and the p95 time
    # to the first token (both 0: no floor). See docs/plan.md for where they come from.
    min_tokens_per_s: float = 0.0
    ttft_p95_s: float = 0.0
    # the start every request shares (system prompt, instructions, a schema): an engine
    # with a prefix cache prefills it once, not per request
    shared_prefix_tokens: int = 0


# Token profiles: what each kind of traffic typically sends and receives, and the service
# level it needs. Chat is read as it streams: silent reading of Chinese runs at about 260
# characters a minute (Brysbaert 2019 for English; Chinese reading studies put it at
# 250–300 characters/min), ~3–5 Qwen tokens/s, so 8 tokens/s stays ahead of the reader
# with a margin; 3 s to the first token is what a chat user waits before it feels broken.
# Extraction is not read as it streams: 3 tokens/s finishes a 600-token record in ~3 min.
PRESETS = {
    p.name: p
    for p in (
        Preset("customer-service", "客服问答：知识库片段 + 多轮对话，短回答", 1500, 250, 8192,
               min_tokens_per_s=8.0, ttft_p95_s=3.0, shared_prefix_tokens=400),
        Preset("document-extraction", "文档抽取：长文档输入，结构化短输出", 6000, 600, 16384,
               min_tokens_per_s=3.0, ttft_p95_s=60.0, shared_prefix_tokens=300),
        Preset("reasoning", "推理：短问题，长思维链输出", 600, 4000, 16384,
               min_tokens_per_s=10.0, ttft_p95_s=5.0),
        Preset("code", "代码助手：代码上下文输入，中等长度输出", 3000, 800, 16384,
               min_tokens_per_s=10.0, ttft_p95_s=3.0, shared_prefix_tokens=200),
    )
}  # fmt: skip
