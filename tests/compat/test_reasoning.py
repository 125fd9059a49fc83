"""A thinking model (the tiny model with a QwQ-style template) through the gateway: its
thought in ``reasoning_content``, switched off per request, metered, never labelled."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import pytest

from heshi.config import AigcConfig, HeshiConfig
from heshi.gateway.app import create_app
from tests.compat.test_tools import LABEL, WEATHER, client
from tests.conftest import TINY_NAME, local_engines, tiny_engine_config
from tests.loopback import free_port, serve_app, wait_serving
from tests.tinymodel import THINKING_TEMPLATE, THINKING_TEXT, build_tiny_qwen2_gguf

ASK = [{"role": "user", "content": "hi"}]
N = len(THINKING_TEXT)  # "R</think>OK": one byte a token


@pytest.fixture(scope="session")
def thinking_gguf(tmp_path_factory: pytest.TempPathFactory) -> Path:
    path = tmp_path_factory.mktemp("models") / "tiny-thinking.gguf"
    return build_tiny_qwen2_gguf(path, greedy_text=THINKING_TEXT, chat_template=THINKING_TEMPLATE)


@pytest.fixture
def thinking_url(
    thinking_gguf: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> Iterator[str]:
    monkeypatch.setenv("HESHI_AIGC_KEY", "a-test-signing-key-of-enough-length")
    config = HeshiConfig(
        home=tmp_path / "home",
        engine=tiny_engine_config(thinking_gguf),
        aigc=AigcConfig(enabled=True, uscc="91350100M000100Y43", explicit="end"),
    )
    with serve_app(create_app(config, local_engines(config))) as url:
        yield url


def test_the_thought_is_reasoning_content_and_the_label_is_on_the_answer(
    thinking_url: str,
) -> None:
    resp = client(thinking_url).chat.completions.create(
        model=TINY_NAME,
        messages=ASK,
        max_tokens=N,
        temperature=0,  # type: ignore[arg-type]
    )
    message = resp.choices[0].message
    assert (message.model_extra or {}).get("reasoning_content") == "R"
    assert message.content == f"OK\n\n{LABEL}"
    assert resp.usage is not None and resp.usage.completion_tokens == N  # thought included


def test_streams_send_the_thought_as_its_own_deltas(thinking_url: str) -> None:
    stream = client(thinking_url).chat.completions.create(
        model=TINY_NAME, messages=ASK, max_tokens=N, temperature=0, stream=True,  # type: ignore[arg-type]
        stream_options={"include_usage": True},
    )  # fmt: skip
    chunks = list(stream)
    deltas = [c.choices[0].delta for c in chunks if c.choices]
    thought = "".join((d.model_extra or {}).get("reasoning_content") or "" for d in deltas)
    answer = "".join(d.content or "" for d in deltas)
    assert thought == "R"
    assert answer == f"OK\n\n{LABEL}"
    first_answer = next(i for i, d in enumerate(deltas) if d.content)
    assert all(not (d.model_extra or {}).get("reasoning_content") for d in deltas[first_answer:])
    (usage,) = [c.usage for c in chunks if c.usage]  # before the label's own last chunk
    assert usage.completion_tokens == N


@pytest.mark.parametrize(
    "switch",
    [
        {"extra_body": {"chat_template_kwargs": {"enable_thinking": False}}},
        {"messages": [{"role": "user", "content": "hi /no_think"}]},
    ],
)
def test_thinking_is_switched_off_per_request(thinking_url: str, switch: dict) -> None:
    on = client(thinking_url).chat.completions.create(
        model=TINY_NAME,
        messages=ASK,
        max_tokens=N,
        temperature=0,  # type: ignore[arg-type]
    )
    args = {"model": TINY_NAME, "messages": ASK, "max_tokens": N, "temperature": 0} | switch
    off = client(thinking_url).chat.completions.create(**args)
    # the prompt now holds the empty block (the tiny model still writes its cycle: a real
    # one answers at once); nothing is taken for thought
    assert off.usage is not None and on.usage is not None
    assert off.usage.prompt_tokens > on.usage.prompt_tokens
    assert not (off.choices[0].message.model_extra or {}).get("reasoning_content")
    assert (off.choices[0].message.content or "").startswith("R</think>OK")


def test_a_thinking_model_thinks_then_calls_a_tool(thinking_url: str) -> None:
    resp = client(thinking_url).chat.completions.create(
        model=TINY_NAME, messages=ASK, tools=[WEATHER], tool_choice="required",  # type: ignore[arg-type]
        parallel_tool_calls=False, max_tokens=120, temperature=0,
    )  # fmt: skip
    message = resp.choices[0].message
    assert resp.choices[0].finish_reason == "tool_calls"
    assert (message.model_extra or {}).get("reasoning_content") == "R"
    (call,) = message.tool_calls or []
    assert call.function.name == "get_weather" and json.loads(call.function.arguments)["city"]
    assert message.content is None  # no label on a call


async def test_admission_counts_the_prompt_the_thinking_model_reads(
    thinking_gguf: Path,
) -> None:
    """The exact count (admission's) is of the prompt with thinking said explicitly — the
    prompt llama.cpp then reads, whatever its own default for this template."""
    from heshi.engines.llamacpp import LlamaCppEngine

    engine = LlamaCppEngine(TINY_NAME, thinking_gguf, tiny_engine_config(thinking_gguf))
    await engine.start()
    try:
        assert engine.thinking is not None and engine.thinking.opens_block
        for body in (
            {"model": TINY_NAME, "messages": ASK, "max_tokens": N},
            {"model": TINY_NAME, "messages": ASK, "max_tokens": N,
             "chat_template_kwargs": {"enable_thinking": False}},
        ):  # fmt: skip
            counted = await engine.count_prompt_tokens("chat", body)
            result = await engine.chat(body)
            assert counted == result["usage"]["prompt_tokens"]
    finally:
        await engine.close()


def test_a_thinking_model_thinks_then_answers_in_json(thinking_url: str) -> None:
    schema = {
        "type": "object",
        "properties": {"ok": {"type": "boolean"}},
        "required": ["ok"],
        "additionalProperties": False,
    }
    resp = client(thinking_url).chat.completions.create(
        model=TINY_NAME, messages=ASK, max_tokens=60, temperature=0,  # type: ignore[arg-type]
        response_format={"type": "json_schema", "json_schema": {"name": "v", "schema": schema}},
    )  # fmt: skip
    message = resp.choices[0].message
    assert (message.model_extra or {}).get("reasoning_content") == "R"
    assert isinstance(json.loads(message.content or "")["ok"], bool)  # no label either


def test_heshi_serve_no_thinking_makes_answers_plain_unless_a_request_asks(
    thinking_gguf: Path, tmp_path: Path
) -> None:
    """``heshi serve --no-thinking`` (what ``heshi plan --emit compose`` gives a CPU
    service for a chat workload) is ``engine.thinking: false``: a request without a switch
    gets the empty block in its prompt; one that asks still thinks."""
    port = free_port()
    command = [sys.executable, "-m", "heshi", "serve", "--model", str(thinking_gguf), "--open",
               "--port", str(port), "--ctx", "256", "--parallel", "1", "--no-thinking",
               "--name", TINY_NAME]  # fmt: skip
    env = {**os.environ, "HESHI_HOME": str(tmp_path / "home")}
    proc = subprocess.Popen(command, env=env, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
    url = f"http://127.0.0.1:{port}"
    try:
        wait_serving(proc, url)
        base = {"model": TINY_NAME, "messages": ASK, "max_tokens": N, "temperature": 0}
        plain = client(url).chat.completions.create(**base)  # type: ignore[call-overload]
        asked = client(url).chat.completions.create(
            **base, extra_body={"chat_template_kwargs": {"enable_thinking": True}}
        )  # type: ignore[call-overload]
    finally:
        proc.send_signal(signal.SIGTERM)
        proc.communicate(timeout=60)
    assert not (plain.choices[0].message.model_extra or {}).get("reasoning_content")
    assert (plain.choices[0].message.content or "").startswith("R</think>OK")
    assert (asked.choices[0].message.model_extra or {}).get("reasoning_content") == "R"
    assert plain.usage.prompt_tokens > asked.usage.prompt_tokens  # the empty block
