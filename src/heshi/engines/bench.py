"""``heshi bench``: this machine's embedded engine, measured in under a minute.

What is measured, on the configured model through the engine ``heshi serve`` runs (in
process, no HTTP, speculative decoding off so decode is the model's own rate):

- **prefill**: one prompt of ``PREFILL_TOKENS`` tokens, nothing cached, one token out:
  llama.cpp's own prompt rate, and the wall time to its first token;
- **time to first token** of a short chat turn on an idle engine;
- **decode** with 1, 2, 4 and 8 streams at once, each a distinct short prompt generating
  a fixed number of tokens (end-of-text ignored): the aggregate rate over the window in
  which every stream is decoding (after the last first token, before the first last
  token), so prompt processing is not counted as decode.

The number of tokens per stream is chosen from a short first one-stream run (not
recorded) so that each phase takes a few seconds whatever the machine, and every phase —
one stream included — decodes that many. The result goes to ``$HESHI_HOME/bench/
local.json`` with the effective figures :mod:`heshi.plan.measured` derives, which is
where ``heshi plan --hardware local`` reads them.
"""

from __future__ import annotations

import asyncio
import bisect
import datetime as dt
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from typing import Any

from heshi.engines.llamacpp import LlamaCppEngine
from heshi.errors import EngineError

PREFILL_TOKENS = 384
STREAMS = (1, 2, 4, 8)
_FIRST_TOKENS = 16  # per stream at one stream, before the rate is known
_PHASE_SECONDS = 2.5  # what each decode phase should last at one stream's rate
_MIN_TOKENS, _MAX_TOKENS = 16, 64

# Distinct openings, so no two streams share a cached prefix.
_OPENINGS = (
    "请介绍一下长江沿岸的主要城市。",
    "写一段关于秋天的短文。",
    "解释一下什么是复利。",
    "列出五种常见的茶叶及其产地。",
    "描述一次愉快的旅行经历。",
    "如何向客户说明退货流程？",
    "简述发票报销的基本步骤。",
    "谈谈你对远程办公的看法。",
)
_FILLER = (
    "本公司为客户提供全国范围内的物流配送服务，包括普通快递、冷链运输和大件物流。"
    "客户可以通过官方网站、手机应用或客服热线查询订单状态，并在签收后七天内申请售后。"
    "发票在订单完成后开具，电子发票通过邮件发送，纸质发票需另行申请并支付邮寄费用。"
)


@dataclass
class StreamTrace:
    """When each token of one stream arrived (seconds on one clock)."""

    started: float
    times: list[float] = field(default_factory=list)
    tokens: list[int] = field(default_factory=list)  # running count at each time

    @property
    def first(self) -> float:
        return self.times[0]

    @property
    def last(self) -> float:
        return self.times[-1]

    def count_at(self, when: float) -> int:
        """Tokens this stream had produced by ``when``."""
        done = bisect.bisect_right(self.times, when)
        return self.tokens[done - 1] if done else 0


def window_rate(traces: Sequence[StreamTrace]) -> float:
    """Tokens per second over the window in which every stream was decoding.

    From the last stream's first token to the first stream's last token; with streams
    that never overlapped there is no such window and the rate is each stream's own
    tokens after its first, summed over the span they cover together."""
    start = max(t.first for t in traces)
    end = min(t.last for t in traces)
    if end > start:
        count = sum(t.count_at(end) - t.count_at(start) for t in traces)
        if count > 0:
            return count / (end - start)
    span = max(t.last for t in traces) - min(t.first for t in traces)
    after_first = sum(t.tokens[-1] - t.tokens[0] for t in traces)
    if span <= 0 or after_first <= 0:
        raise EngineError("解码太短无法计时 / decode too short to time")
    return after_first / span


async def _stream(engine: LlamaCppEngine, prompt: str, max_tokens: int) -> StreamTrace:
    body = {
        "prompt": prompt,
        "max_tokens": max_tokens,
        "temperature": 0,
        "ignore_eos": True,
        "cache_prompt": False,
    }
    trace = StreamTrace(started=time.perf_counter())
    stream = engine.stream_completion(body)
    try:
        async for _chunk in stream:
            done = int((stream.usage or {}).get("completion_tokens") or 0)
            if done and (not trace.tokens or done > trace.tokens[-1]):
                trace.times.append(time.perf_counter())
                trace.tokens.append(done)
    finally:
        await stream.aclose()
    if not trace.times:
        raise EngineError("引擎没有生成任何 token / the engine generated nothing")
    return trace


def _prompt(index: int, repeat: int = 0) -> str:
    return _OPENINGS[index % len(_OPENINGS)] + f"（第{index + 1}题）" + _FILLER * repeat


async def _prefill(engine: LlamaCppEngine) -> dict[str, float]:
    """A long uncached prompt, one token out: llama.cpp's prompt rate and the TTFT."""
    tokens = await engine.count_prompt_tokens("completions", {"prompt": _FILLER}) or 100
    repeat = max(1, round(PREFILL_TOKENS / tokens))
    started = time.perf_counter()
    result = await engine.completion(
        {"prompt": _prompt(99, repeat), "max_tokens": 1, "cache_prompt": False}
    )
    wall = time.perf_counter() - started
    timings = result.get("timings") or {}
    prompt_n = int(timings.get("prompt_n") or 0)
    prompt_ms = float(timings.get("prompt_ms") or 0.0)
    if prompt_n < 1 or prompt_ms <= 0:
        raise EngineError("llama.cpp 未报告提示处理时间 / llama.cpp reported no prompt timing")
    return {
        "prefill_tokens": prompt_n,
        "prefill_tokens_per_s": round(prompt_n / prompt_ms * 1000, 2),
        "prefill_ttft_s": round(wall, 3),
    }


async def _short_ttft(engine: LlamaCppEngine) -> float:
    """Time to the first token of a short chat turn on an idle engine."""
    started = time.perf_counter()
    body = {"messages": [{"role": "user", "content": "你好，请问怎么查询快递？"}], "max_tokens": 4}
    stream = engine.stream_chat(body | {"temperature": 0})
    try:
        async for chunk in stream:
            for choice in chunk.get("choices") or ():
                delta = choice.get("delta") or {}
                if delta.get("content") or delta.get("reasoning_content"):
                    return round(time.perf_counter() - started, 3)
    finally:
        await stream.aclose()
    raise EngineError("没有首个 token / no first token")


async def _decode(engine: LlamaCppEngine, streams: int, tokens: int) -> dict[str, Any]:
    traces = await asyncio.gather(*(_stream(engine, _prompt(i), tokens) for i in range(streams)))
    rate = window_rate(traces)
    return {
        "streams": streams,
        "tokens_per_stream": tokens,
        "tokens_per_s": round(rate, 2),
        "ttft_s": round(max(t.first - t.started for t in traces), 3),
    }


Progress = Callable[[str], None]


async def measure(
    engine: LlamaCppEngine, progress: Progress, streams: Sequence[int] = STREAMS
) -> dict[str, Any]:
    """Every measurement of the module docstring on a started engine."""
    await _stream(engine, _prompt(98), 4)  # warm: threads up, pages touched
    progress("prefill")
    result: dict[str, Any] = dict(await _prefill(engine))
    result["ttft_s"] = await _short_ttft(engine)
    progress("decode ×1")
    # a short first run sets how many tokens each phase decodes; it is not recorded
    first = await _decode(engine, 1, _FIRST_TOKENS)
    tokens = max(_MIN_TOKENS, min(_MAX_TOKENS, round(first["tokens_per_s"] * _PHASE_SECONDS)))
    decode: list[dict[str, Any]] = []
    for count in streams:
        progress(f"decode ×{count}")
        decode.append(await _decode(engine, count, tokens))
    result["decode"] = decode
    return result


# CPU flags (/proc/cpuinfo) that llama.cpp's kernels use when built for them, and the name
# its system info gives each. The PyPI wheel of the engine is built for AVX2.
_CPU_FEATURES = (
    ("avx512f", "AVX512"),
    ("avx512_vnni", "AVX512_VNNI"),
    ("avx512_bf16", "AVX512_BF16"),
    ("avx_vnni", "AVX_VNNI"),
    ("amx_int8", "AMX_INT8"),
    ("asimddp", "DOTPROD"),
    ("sve", "SVE"),
)


def unused_cpu_features(features: Sequence[str]) -> list[str]:
    """Instruction sets this CPU has and the engine build does not use."""
    try:
        with open("/proc/cpuinfo", encoding="utf-8", errors="replace") as handle:
            flags: set[str] = set()
            for line in handle:
                key, _, value = line.partition(":")
                if key.strip() in ("flags", "Features"):
                    flags = set(value.split())
                    break
    except OSError:
        return []
    return [name for flag, name in _CPU_FEATURES if flag in flags and name not in features]


def now() -> str:
    return dt.datetime.now(dt.UTC).isoformat(timespec="seconds")
