"""The tiny Qwen2 GGUF must be a real model: readable by gguf and served by llama.cpp."""

from __future__ import annotations

import json
import pathlib
from typing import Any

import gguf
import pytest
import xllamacpp

from tests.tinymodel import (
    CHAT_TEMPLATE,
    ENDOFTEXT_ID,
    GREEDY_TEXT,
    IM_END_ID,
    IM_START_ID,
    MODEL_NAME,
    VOCAB_SIZE,
    build_tiny_qwen2_gguf,
)

# "<|im_start|>user\n你好<|im_end|>\n<|im_start|>assistant\n": 3 control tokens, "user" as
# u+s+"er", 6 bytes for 你好, 9 single-byte tokens for "assistant", three "\n".
CHAT_PROMPT_TOKENS = 24


def _start_server(path: pathlib.Path) -> Any:
    params = xllamacpp.CommonParams()
    params.model.path = str(path)
    params.n_ctx = 512
    params.n_parallel = 2
    # One thread each: the CI box has two cores and may be running a build alongside.
    params.cpuparams.n_threads = 1
    params.cpuparams_batch.n_threads = 1
    params.port = 0
    return xllamacpp.Server(params)


def _chat_request(max_tokens: int) -> dict[str, Any]:
    return {
        "messages": [{"role": "user", "content": "你好"}],
        "max_tokens": max_tokens,
        "temperature": 0,
    }


@pytest.fixture
def model_path(tmp_path: pathlib.Path) -> pathlib.Path:
    return build_tiny_qwen2_gguf(tmp_path / "tiny.gguf")


def test_gguf_reads_back(model_path: pathlib.Path) -> None:
    reader = gguf.GGUFReader(model_path)

    def field(key: str) -> Any:
        found = reader.get_field(key)
        assert found is not None, key
        return found.contents()

    assert field("general.architecture") == "qwen2"
    assert field("general.name") == MODEL_NAME
    assert field("tokenizer.chat_template") == CHAT_TEMPLATE
    assert field("tokenizer.ggml.model") == "gpt2"
    assert field("tokenizer.ggml.pre") == "qwen2"
    assert field("qwen2.context_length") == 512
    tokens = field("tokenizer.ggml.tokens")
    assert len(tokens) == VOCAB_SIZE
    assert tokens[ENDOFTEXT_ID : IM_END_ID + 1] == ["<|endoftext|>", "<|im_start|>", "<|im_end|>"]
    assert tokens[ord("\n")] == "Ċ"  # GPT-2 byte symbols
    assert tokens[ord(" ")] == "Ġ"
    types = field("tokenizer.ggml.token_type")
    assert types[IM_START_ID] == gguf.TokenType.CONTROL
    assert types[ord("a")] == gguf.TokenType.NORMAL
    assert field("tokenizer.ggml.eos_token_id") == IM_END_ID
    assert field("tokenizer.ggml.add_bos_token") is False
    assert "output.weight" in {t.name for t in reader.tensors}


def test_same_seed_gives_identical_file(tmp_path: pathlib.Path) -> None:
    first = build_tiny_qwen2_gguf(tmp_path / "a.gguf", seed=7).read_bytes()
    second = build_tiny_qwen2_gguf(tmp_path / "b.gguf", seed=7).read_bytes()
    third = build_tiny_qwen2_gguf(tmp_path / "c.gguf", seed=8).read_bytes()
    assert first == second
    assert first != third


def test_rejects_cycle_text_with_repeated_bytes(tmp_path: pathlib.Path) -> None:
    # "好" is e5 a5 bd and "你" is e4 bd a0: the shared bd would need two successors.
    with pytest.raises(ValueError, match="distinct"):
        build_tiny_qwen2_gguf(tmp_path / "x.gguf", greedy_text="你好")


def test_tokenizer_applies_merges_and_byte_fallback(model_path: pathlib.Path) -> None:
    server = _start_server(model_path)
    try:
        # 15 byte tokens for the five CJK characters, then "Ġthe" and "Ġ"+"hello" via merges.
        result = server.handle_completions(
            {"prompt": "你好，世界 the hello", "max_tokens": 1, "temperature": 0}
        )
        assert result["usage"]["prompt_tokens"] == 18
    finally:
        del server


def test_chat_completion_non_streaming(model_path: pathlib.Path) -> None:
    server = _start_server(model_path)
    try:
        # 15 tokens = five whole 3-byte characters, so the expected text is exact.
        result = server.handle_chat_completions(_chat_request(max_tokens=15))
    finally:
        del server

    assert result["object"] == "chat.completion"
    assert result["id"].startswith("chatcmpl-")
    (choice,) = result["choices"]
    assert choice["message"]["role"] == "assistant"
    assert choice["message"]["content"] == GREEDY_TEXT * 5
    assert choice["finish_reason"] == "length"
    usage = result["usage"]
    assert usage["completion_tokens"] == 15
    # Matching our own count proves the ChatML template from the GGUF was rendered.
    assert usage["prompt_tokens"] == CHAT_PROMPT_TOKENS
    assert usage["total_tokens"] == CHAT_PROMPT_TOKENS + 15


def test_chat_completion_streaming_reassembles_utf8(model_path: pathlib.Path) -> None:
    raw_chunks: list[bytes] = []

    def on_chunk(chunk: bytes) -> bool:
        raw_chunks.append(chunk)
        return False  # keep streaming

    request = json.dumps({**_chat_request(max_tokens=16), "stream": True}).encode()
    server = _start_server(model_path)
    try:
        server.handle_chat_completions(request, on_chunk)
    finally:
        del server

    chunks = [json.loads(raw) for raw in raw_chunks]
    assert chunks
    assert all(chunk["object"] == "chat.completion.chunk" for chunk in chunks)
    assert len({chunk["id"] for chunk in chunks}) == 1
    deltas = [chunk["choices"][0]["delta"].get("content") or "" for chunk in chunks]
    text = "".join(deltas)
    assert isinstance(text, str)
    assert "\ufffd" not in text
    # Each character arrives as three byte tokens; llama.cpp holds bytes back until a character
    # is complete and drops the dangling 16th byte.
    assert text == GREEDY_TEXT * 5
    assert all(delta in ("", GREEDY_TEXT) for delta in deltas)
    assert chunks[-1]["choices"][0]["finish_reason"] == "length"
