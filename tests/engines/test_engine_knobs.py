"""The embedded engine's efficiency settings reach llama.cpp and change only speed or
memory: prompt lookup, the KV cache's format, the prompt cache in RAM, the step size."""

from __future__ import annotations

from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from pathlib import Path

import pytest
from pydantic import ValidationError

from heshi.config import LocalEngineConfig
from heshi.config.engine import SpeculativeConfig
from heshi.engines.base import JSON
from heshi.engines.llamacpp import LlamaCppEngine
from heshi.errors import ModelFileError
from heshi.hub.store import ModelStore
from tests.conftest import TINY_NAME, tiny_engine_config
from tests.tinymodel import build_tiny_qwen2_gguf

# A prompt whose text repeats: what prompt lookup can copy from.
REPEATED = "甲乙丙丁戊。" * 3


@asynccontextmanager
async def engine(tiny_gguf: Path, **changes: object) -> AsyncIterator[LlamaCppEngine]:
    started = LlamaCppEngine(TINY_NAME, tiny_gguf, tiny_engine_config(tiny_gguf, **changes))
    await started.start()
    try:
        yield started
    finally:
        await started.close()


def ask(content: str, max_tokens: int, **extra: object) -> JSON:
    return {
        "model": TINY_NAME,
        "messages": [{"role": "user", "content": content}],
        "max_tokens": max_tokens,
        "temperature": 0,
        **extra,
    }


async def test_prompt_lookup_gives_the_same_answer_in_fewer_model_passes(
    tiny_gguf: Path,
) -> None:
    answers, passes = [], []
    for spec in ({"type": "none"}, {"type": "ngram", "draft_max": 8, "ngram_size": 2}):
        async with engine(tiny_gguf, parallel=1, speculative=spec) as e:
            before = e.stats()["n_decode_total"]
            out = await e.chat(ask(REPEATED, 64))
            passes.append(e.stats()["n_decode_total"] - before)
            answers.append(out["choices"][0]["message"]["content"])
            assert out["usage"]["completion_tokens"] == 64
    assert answers[0] == answers[1]  # verified drafts: token for token the same
    assert passes[1] < passes[0], passes  # accepted guesses saved model passes


async def test_a_draft_model_drafts_and_the_answer_stays_the_same(
    tiny_gguf: Path, tmp_path: Path
) -> None:
    # the model as its own draft: same tokenizer, every guess right
    spec = {"type": "draft", "draft_model": str(tiny_gguf), "draft_max": 4}
    config = tiny_engine_config(tiny_gguf, parallel=1, speculative=spec)
    drafted = LlamaCppEngine.from_store(ModelStore(tmp_path), config)
    assert drafted.draft_path == tiny_gguf.resolve()
    await drafted.start()
    try:
        before = drafted.stats()["n_decode_total"]
        out = await drafted.chat(ask("你好", 32))
        passes = drafted.stats()["n_decode_total"] - before
    finally:
        await drafted.close()
    async with engine(tiny_gguf, parallel=1) as plain:
        alone = await plain.chat(ask("你好", 32))
    assert out["choices"][0]["message"] == alone["choices"][0]["message"]
    assert passes < 32, passes


async def test_quantized_kv_cache_answers_like_the_full_one_and_streams(tmp_path: Path) -> None:
    # q8_0 stores blocks of 32 values: the shared tiny model's heads (16) are too small
    wide = build_tiny_qwen2_gguf(tmp_path / "wide.gguf", n_heads=2, n_kv_heads=2)
    texts = []
    for kind in ("f16", "q8_0"):
        async with engine(wide, kv_cache_type=kind) as e:
            out = await e.chat(ask("你好，请介绍一下你自己", 8))
            texts.append(out["choices"][0]["message"]["content"])
            chunks = [c async for c in e.stream_chat(ask("再说一遍", 8, stream=True))]
            assert any(c["choices"] for c in chunks)
    assert texts[0] == texts[1] != ""


async def test_a_kv_format_the_model_cannot_take_is_named_in_the_error(tiny_gguf: Path) -> None:
    refused = LlamaCppEngine(
        TINY_NAME, tiny_gguf, tiny_engine_config(tiny_gguf, kv_cache_type="q8_0")
    )
    with pytest.raises(ModelFileError, match="kv_cache_type q8_0"):
        await refused.start()


@pytest.mark.parametrize(("mib", "reused"), [(0, False), (64, True)])
async def test_a_prompt_pushed_out_of_its_slot_is_restored_from_ram(
    tiny_gguf: Path, mib: int, reused: bool
) -> None:
    system = {"role": "system", "content": "你是银行客服。" * 6}
    async with engine(tiny_gguf, parallel=1, prompt_cache_mib=mib) as e:

        async def send(*messages: JSON) -> int:
            body = {"model": TINY_NAME, "messages": list(messages), "max_tokens": 1}
            out = await e.chat(body)
            return int(out["usage"]["prompt_tokens_details"]["cached_tokens"])

        await send(system, {"role": "user", "content": "余额"})
        await send({"role": "user", "content": "无关的话" * 4})  # takes the slot
        cached = await send(system, {"role": "user", "content": "转账"})
    assert (cached >= 100) is reused, cached


async def test_a_long_prompt_is_processed_batch_tokens_at_a_time(tiny_gguf: Path) -> None:
    async with engine(tiny_gguf, parallel=1, batch=16) as e:
        before = e.stats()["n_decode_total"]
        out = await e.chat(ask("长" * 60, 1))
        steps = e.stats()["n_decode_total"] - before
    prompt = out["usage"]["prompt_tokens"]
    assert prompt > 180
    assert steps >= prompt / 16, (steps, prompt)


async def test_a_draft_model_with_another_tokenizer_is_refused_before_loading(
    tiny_gguf: Path, default_model_path: Path
) -> None:
    spec = {"type": "draft", "draft_model": str(default_model_path)}
    config = tiny_engine_config(tiny_gguf, parallel=1, speculative=spec)
    engine = LlamaCppEngine(TINY_NAME, tiny_gguf, config, default_model_path)
    with pytest.raises(ModelFileError, match="another tokenizer"):
        await engine.start()


def test_a_draft_model_not_pulled_is_named(tiny_gguf: Path, tmp_path: Path) -> None:
    spec = {"type": "draft", "draft_model": "hf:Qwen/Qwen2.5-0.5B-Instruct-GGUF/q4.gguf"}
    config = tiny_engine_config(tiny_gguf, parallel=1, speculative=spec)
    with pytest.raises(ModelFileError, match=r"speculative\.draft_model: .*heshi models pull"):
        LlamaCppEngine.from_store(ModelStore(tmp_path), config)


def test_speculative_settings_are_checked() -> None:
    with pytest.raises(ValidationError, match="draft_model is required"):
        SpeculativeConfig(type="draft")
    with pytest.raises(ValidationError, match="draft_model is required"):
        SpeculativeConfig(type="ngram", draft_model="small.gguf")
    with pytest.raises(ValidationError, match="must not exceed"):
        SpeculativeConfig(type="ngram", draft_min=9, draft_max=8)
    with pytest.raises(ValidationError, match="would never guess"):
        SpeculativeConfig(type="ngram", ngram_size=5, draft_max=4)
    with pytest.raises(ValidationError):
        LocalEngineConfig.model_validate({"kv_cache_type": "q4_1"})
    # llama.cpp aborts the process when a step cannot hold every slot's tokens
    with pytest.raises(ValidationError, match=r"parallel × 1 = 9"):
        LocalEngineConfig.model_validate({"batch": 8, "parallel": 9})
    spec = {"type": "ngram", "draft_max": 16}
    with pytest.raises(ValidationError, match=r"parallel × 17 = 68"):
        LocalEngineConfig.model_validate({"batch": 64, "parallel": 4, "speculative": spec})
    with pytest.raises(ValidationError, match="not an embeddings"):
        LocalEngineConfig.model_validate({"embeddings": True, "speculative": {"type": "ngram"}})
    ok = LocalEngineConfig.model_validate({"speculative": {"type": "ngram", "draft_max": 12}})
    assert ok.speculative.draft_max == 12
