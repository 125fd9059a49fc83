"""The official ``openai`` client against a real gateway over the tiny model."""

from __future__ import annotations

import json

import httpx
import openai
import pytest

from tests.conftest import TINY_CTX, TINY_NAME


def client(url: str) -> openai.OpenAI:
    return openai.OpenAI(base_url=url + "/v1", api_key="unused", max_retries=0, timeout=60)


def test_model_list_names_the_served_model(gateway_url: str) -> None:
    models = client(gateway_url).models.list()
    ids = [m.id for m in models.data]
    assert ids == [TINY_NAME]
    raw = httpx.get(gateway_url + "/v1/models").json()
    assert raw["data"][0]["context_length"] == TINY_CTX


def test_chat_returns_message_and_usage(gateway_url: str) -> None:
    resp = client(gateway_url).chat.completions.create(
        model=TINY_NAME,
        messages=[{"role": "user", "content": "你好"}],
        max_tokens=8,
        temperature=0,
    )
    assert resp.model == TINY_NAME
    assert resp.object == "chat.completion"
    assert isinstance(resp.choices[0].message.content, str)
    assert resp.choices[0].finish_reason in {"stop", "length"}
    assert resp.usage is not None
    assert resp.usage.prompt_tokens > 0
    assert 0 < resp.usage.completion_tokens <= 8
    assert resp.usage.total_tokens == resp.usage.prompt_tokens + resp.usage.completion_tokens


def test_stream_sends_chunks_and_final_usage(gateway_url: str) -> None:
    stream = client(gateway_url).chat.completions.create(
        model=TINY_NAME,
        messages=[{"role": "user", "content": "写一首关于长江的诗"}],
        max_tokens=24,
        temperature=0.8,
        seed=7,
        stream=True,
        stream_options={"include_usage": True},
    )
    chunks = list(stream)
    assert all(c.model == TINY_NAME for c in chunks)
    text = "".join(c.choices[0].delta.content or "" for c in chunks if c.choices)
    usage = chunks[-1].usage
    assert usage is not None and usage.completion_tokens > 0
    assert not chunks[-1].choices
    assert isinstance(text, str)


def test_stream_is_valid_utf8_even_when_tokens_split_characters(gateway_url: str) -> None:
    # The tiny model's vocabulary is raw bytes, so it emits halves of Chinese characters;
    # every SSE frame must still be whole UTF-8 and whole JSON.
    body = {
        "model": TINY_NAME,
        "messages": [{"role": "user", "content": "请用中文回答：今天天气怎么样？"}],
        "max_tokens": 64,
        "temperature": 1.0,
        "seed": 3,
        "stream": True,
    }
    with httpx.stream("POST", gateway_url + "/v1/chat/completions", json=body, timeout=60) as r:
        assert r.status_code == 200
        assert r.headers["content-type"].startswith("text/event-stream")
        raw = b"".join(r.iter_bytes())
    frames = [f for f in raw.split(b"\n\n") if f]
    assert frames[-1] == b"data: [DONE]"
    for frame in frames[:-1]:
        assert frame.startswith(b"data: ")
        chunk = json.loads(frame[6:].decode("utf-8", errors="strict"))
        assert "usage" not in chunk  # not asked for
        assert chunk["object"] == "chat.completion.chunk"


def test_same_seed_same_answer(gateway_url: str) -> None:
    c = client(gateway_url)
    kwargs = {
        "model": TINY_NAME,
        "messages": [{"role": "user", "content": "随便说点什么"}],
        "max_tokens": 12,
        "temperature": 1.0,
        "top_p": 0.9,
        "seed": 42,
    }
    a = c.chat.completions.create(**kwargs).choices[0].message.content  # type: ignore[call-overload]
    b = c.chat.completions.create(**kwargs).choices[0].message.content  # type: ignore[call-overload]
    assert a == b


def test_json_schema_response_format_is_enforced(gateway_url: str) -> None:
    schema = {
        "type": "object",
        "properties": {"answer": {"type": "string", "enum": ["是", "否"]}},
        "required": ["answer"],
        "additionalProperties": False,
    }
    resp = client(gateway_url).chat.completions.create(
        model=TINY_NAME,
        messages=[{"role": "user", "content": "回答是或否"}],
        max_tokens=48,
        temperature=1.0,
        seed=1,
        response_format={"type": "json_schema", "json_schema": {"name": "yn", "schema": schema}},
    )
    content = resp.choices[0].message.content
    assert content is not None
    assert json.loads(content) in ({"answer": "是"}, {"answer": "否"})


def test_text_completion_and_stream(gateway_url: str) -> None:
    c = client(gateway_url)
    resp = c.completions.create(model=TINY_NAME, prompt="从前有座山", max_tokens=6, temperature=0)
    assert resp.object == "text_completion"
    assert resp.usage is not None and 0 < resp.usage.completion_tokens <= 6
    chunks = list(
        c.completions.create(
            model=TINY_NAME, prompt="从前有座山", max_tokens=6, temperature=0, stream=True
        )
    )
    streamed = "".join(ch.choices[0].text for ch in chunks if ch.choices)
    assert streamed == resp.choices[0].text


def test_embeddings_on_a_generation_model_is_a_clear_400(gateway_url: str) -> None:
    with pytest.raises(openai.BadRequestError) as info:
        client(gateway_url).embeddings.create(model=TINY_NAME, input="你好")
    assert "embed" in str(info.value)


def test_stop_string_cuts_the_answer(gateway_url: str) -> None:
    c = client(gateway_url)
    kwargs = {
        "model": TINY_NAME,
        "messages": [{"role": "user", "content": "hello"}],
        "max_tokens": 24,
        "temperature": 0,
    }
    full = c.chat.completions.create(**kwargs).choices[0].message.content or ""  # type: ignore[call-overload]
    assert len(full) >= 6, f"need a longer answer to cut: {full!r}"
    stop = full[4:6]
    cut = c.chat.completions.create(stop=[stop], **kwargs).choices[0]  # type: ignore[call-overload]
    assert cut.finish_reason == "stop"
    assert cut.message.content == full[: full.index(stop)]
