"""The in-process llama.cpp engine on the tiny real GGUF."""

from __future__ import annotations

import asyncio
from pathlib import Path

import pytest

from heshi.engines.llamacpp import LlamaCppEngine
from heshi.errors import ContextLengthExceeded, EngineError, InvalidRequest, ModelFileError
from tests.conftest import TINY_CTX, TINY_NAME, tiny_engine_config
from tests.fakes.waiting import wait_until_async


def chat(content: str, **extra: object) -> dict[str, object]:
    return {"model": TINY_NAME, "messages": [{"role": "user", "content": content}], **extra}


async def wait_idle(engine: LlamaCppEngine, timeout: float = 10.0) -> dict[str, float]:
    def idle() -> dict[str, float] | None:
        stats = engine.stats()
        return stats if stats["requests_processing"] == 0 else None

    result: dict[str, float] = await wait_until_async(
        idle, timeout=timeout, interval=0.01, message="slot never freed"
    )
    return result


async def test_closing_a_stream_stops_generation_and_frees_the_slot(
    tiny_engine: LlamaCppEngine,
) -> None:
    max_tokens = TINY_CTX - 40  # the tiny model never emits EOS: it would run to here
    stream = tiny_engine.stream_chat(chat("你好", max_tokens=max_tokens, temperature=0))
    first = await anext(stream)
    assert first["object"] == "chat.completion.chunk"
    await stream.aclose()  # type: ignore[attr-defined]
    stats = await wait_idle(tiny_engine)
    assert stats["tokens_predicted_total"] < max_tokens
    # the freed slot serves the next request
    again = await tiny_engine.chat(chat("再来", max_tokens=3))
    assert again["usage"]["completion_tokens"] == 3


async def test_concurrent_requests_share_decode_steps(tiny_engine: LlamaCppEngine) -> None:
    async def one(i: int) -> int:
        n = 0
        async for chunk in tiny_engine.stream_chat(chat(f"第{i}个", max_tokens=120)):
            n += bool(chunk["choices"])
        return n

    counts = await asyncio.gather(one(1), one(2))
    assert all(c > 0 for c in counts)
    # continuous batching: on average more than one slot was busy per decode call
    assert tiny_engine.stats()["n_busy_slots_per_decode"] > 1.0


async def test_shared_prefix_is_served_from_the_slot_cache(tiny_engine: LlamaCppEngine) -> None:
    system = {"role": "system", "content": "你是银行客服。" * 6}
    body = {"model": TINY_NAME, "max_tokens": 2}
    first = await tiny_engine.chat(
        body | {"messages": [system, {"role": "user", "content": "余额"}]}
    )
    second = await tiny_engine.chat(
        body | {"messages": [system, {"role": "user", "content": "转账"}]}
    )
    assert first["usage"]["prompt_tokens_details"]["cached_tokens"] == 0
    cached = second["usage"]["prompt_tokens_details"]["cached_tokens"]
    assert cached >= 100, second["usage"]  # the whole system prompt was reused


async def test_prompt_over_context_raises_with_both_numbers(tiny_engine: LlamaCppEngine) -> None:
    with pytest.raises(ContextLengthExceeded) as info:
        await tiny_engine.chat(chat("长" * 400, max_tokens=4))
    assert info.value.context == TINY_CTX
    assert info.value.prompt_tokens > TINY_CTX


async def test_max_tokens_over_context_is_rejected_before_generation(
    tiny_engine: LlamaCppEngine,
) -> None:
    with pytest.raises(InvalidRequest) as info:
        await tiny_engine.chat(chat("hi", max_tokens=TINY_CTX * 2))
    assert info.value.param == "max_tokens"


async def test_engine_refuses_calls_before_start(tiny_gguf: Path) -> None:
    engine = LlamaCppEngine(TINY_NAME, tiny_gguf, tiny_engine_config(tiny_gguf))
    with pytest.raises(EngineError):
        await engine.chat(chat("hi"))
    await engine.close()  # closing a never-started engine is harmless


@pytest.mark.parametrize(
    ("content", "expected"),
    [(None, "not found"), (b"PK\x03\x04 zip, not gguf", "not a GGUF"), (b"", "not a GGUF")],
)
async def test_missing_or_foreign_model_file(
    tmp_path: Path, content: bytes | None, expected: str
) -> None:
    path = tmp_path / "model.gguf"
    if content is not None:
        path.write_bytes(content)
    engine = LlamaCppEngine("m", path, tiny_engine_config(path))
    with pytest.raises(ModelFileError, match=expected):
        await engine.start()
    await engine.close()


async def test_truncated_gguf_fails_to_load(tiny_gguf: Path, tmp_path: Path) -> None:
    broken = tmp_path / "truncated.gguf"
    broken.write_bytes(tiny_gguf.read_bytes()[: tiny_gguf.stat().st_size // 2])
    engine = LlamaCppEngine("m", broken, tiny_engine_config(broken))
    with pytest.raises(ModelFileError, match="could not load"):
        await engine.start()
    await engine.close()
