"""Tool calling through the gateway with the official ``openai`` client: the embedded engine
(the tiny model, held to the tool-call grammar) and a remote backend (passed through)."""

from __future__ import annotations

import json
import logging
from collections.abc import Iterator
from pathlib import Path

import httpx
import openai
import pytest
from pydantic import BaseModel

from heshi.config import AigcConfig, HeshiConfig
from heshi.engines.base import JSON
from heshi.engines.llamacpp import LlamaCppEngine
from heshi.gateway.app import create_app
from heshi.store.keys import KeyStore
from tests.conftest import TINY_NAME, local_engines
from tests.governance.conftest import GatewayFactory, Upstream, gateway_config
from tests.loopback import serve_app

CITIES = ["北京", "上海", "杭州"]
WEATHER = {
    "type": "function",
    "function": {
        "name": "get_weather",
        "description": "查询城市天气",
        "parameters": {
            "type": "object",
            "properties": {"city": {"type": "string", "enum": CITIES}},
            "required": ["city"],
        },
    },
}
ORDER = {
    "type": "function",
    "function": {
        "name": "query_order",
        "description": "按订单号查询订单状态",
        "parameters": {
            "type": "object",
            "properties": {"order_id": {"type": "integer", "minimum": 1, "maximum": 99}},
            "required": ["order_id"],
        },
    },
}
ASK = [{"role": "user", "content": "北京今天天气怎么样？"}]
LABEL = "本内容由人工智能生成 / AI-generated content"


def client(url: str, key: str = "unused") -> openai.OpenAI:
    return openai.OpenAI(base_url=url + "/v1", api_key=key, max_retries=0, timeout=60)


def named(name: str) -> dict:
    return {"type": "function", "function": {"name": name}}


@pytest.fixture
def labelled_config(tiny_config: HeshiConfig, monkeypatch: pytest.MonkeyPatch) -> HeshiConfig:
    monkeypatch.setenv("HESHI_AIGC_KEY", "a-test-signing-key-of-enough-length")
    aigc = AigcConfig(enabled=True, uscc="91350100M000100Y43", explicit="end")
    return tiny_config.model_copy(update={"aigc": aigc})


@pytest.fixture
def labelled_url(labelled_config: HeshiConfig) -> Iterator[str]:
    """The tiny model behind a gateway that labels answers (explicit label at the end)."""
    with serve_app(create_app(labelled_config, local_engines(labelled_config))) as url:
        yield url


def test_a_named_function_fills_tool_calls(gateway_url: str) -> None:
    resp = client(gateway_url).chat.completions.create(
        model=TINY_NAME, messages=ASK, tools=[WEATHER, ORDER], tool_choice=named("query_order"),
        max_tokens=150, temperature=0,
    )  # fmt: skip
    choice = resp.choices[0]
    assert choice.finish_reason == "tool_calls"
    assert choice.message.content is None
    (call,) = choice.message.tool_calls or []
    assert call.type == "function" and call.id.startswith("call_")
    assert call.function.name == "query_order"
    assert 1 <= json.loads(call.function.arguments)["order_id"] <= 99
    assert resp.usage is not None and resp.usage.completion_tokens > 0


def test_required_calls_stream_as_tool_call_deltas(gateway_url: str) -> None:
    stream = client(gateway_url).chat.completions.create(
        model=TINY_NAME, messages=ASK, tools=[WEATHER], tool_choice="required",
        parallel_tool_calls=False, max_tokens=150, temperature=0, stream=True,
        stream_options={"include_usage": True},
    )  # fmt: skip
    chunks = list(stream)
    deltas = [c.choices[0].delta for c in chunks if c.choices]
    calls = [tc for d in deltas for tc in d.tool_calls or ()]
    assert [c.function.name for c in calls if c.function and c.function.name] == ["get_weather"]
    assert calls[0].index == 0 and calls[0].id and calls[0].id.startswith("call_")
    args = "".join(c.function.arguments or "" for c in calls if c.function)
    assert json.loads(args)["city"] in CITIES
    assert not any(d.content for d in deltas)
    finishes = [c.choices[0].finish_reason for c in chunks if c.choices]
    assert finishes[-1] == "tool_calls" and finishes.count("tool_calls") == 1
    assert chunks[-1].usage is not None and chunks[-1].usage.completion_tokens > 0


def test_tool_results_are_read_in_the_next_turn(gateway_url: str) -> None:
    first = client(gateway_url).chat.completions.create(
        model=TINY_NAME, messages=ASK, tools=[WEATHER], tool_choice="required",
        parallel_tool_calls=False, max_tokens=150, temperature=0,
    )  # fmt: skip
    message = first.choices[0].message
    (call,) = message.tool_calls or []
    turn = [
        *ASK,
        message.model_dump(exclude_none=True),
        {"role": "tool", "tool_call_id": call.id, "content": "晴，25°C"},
    ]
    second = client(gateway_url).chat.completions.create(
        model=TINY_NAME, messages=turn, tools=[WEATHER], max_tokens=6, temperature=0
    )
    assert second.choices[0].finish_reason == "length"
    assert second.choices[0].message.content  # prose: the grammar lets it answer in words
    assert not second.choices[0].message.tool_calls
    # the tool's result is in the prompt: it is longer than the first turn's
    assert second.usage and first.usage
    assert second.usage.prompt_tokens > first.usage.prompt_tokens + len("晴，25°C".encode())


def test_tool_choice_none_answers_in_prose(gateway_url: str) -> None:
    resp = client(gateway_url).chat.completions.create(
        model=TINY_NAME, messages=ASK, tools=[WEATHER], tool_choice="none", max_tokens=6,
        temperature=0,
    )  # fmt: skip
    assert resp.choices[0].message.content and not resp.choices[0].message.tool_calls
    assert resp.choices[0].finish_reason == "length"


@pytest.mark.parametrize(
    ("extra", "param"),
    [
        ({"tools": [WEATHER], "tool_choice": named("nope")}, "tool_choice"),
        (
            {"tools": [{"type": "function", "function": {"name": "两个 词"}}]},
            "tools[0].function.name",
        ),
        (
            {
                "tools": [WEATHER],
                "response_format": {
                    "type": "json_schema",
                    "json_schema": {
                        "name": "v",
                        "schema": {
                            "type": "object",
                            "properties": {"ok": {"type": "boolean"}},
                            "required": ["ok"],
                            "additionalProperties": False,
                        },
                    },
                },
            },
            "response_format",
        ),
    ],
)
def test_bad_tool_requests_are_400s_naming_the_field(
    gateway_url: str, extra: dict, param: str
) -> None:
    with pytest.raises(openai.BadRequestError) as err:
        client(gateway_url).chat.completions.create(
            model=TINY_NAME, messages=ASK, max_tokens=5, **extra
        )
    assert err.value.param == param
    assert err.value.status_code == 400


class Verdict(BaseModel):
    satisfied: bool
    score: int


def test_labels_never_break_tool_calls_or_json(labelled_url: str) -> None:
    c = client(labelled_url)
    resp = c.chat.completions.create(
        model=TINY_NAME, messages=ASK, tools=[WEATHER], tool_choice=named("get_weather"),
        max_tokens=150, temperature=0,
    )  # fmt: skip
    assert resp.choices[0].message.content is None
    (call,) = resp.choices[0].message.tool_calls or []
    assert json.loads(call.function.arguments)["city"] in CITIES
    assert (resp.model_extra or {}).get("AIGC")  # the implicit label is still there

    parsed = c.chat.completions.parse(
        model=TINY_NAME, messages=ASK, response_format=Verdict, max_tokens=40, temperature=0
    )
    assert isinstance(parsed.choices[0].message.parsed, Verdict)
    assert (parsed.model_extra or {}).get("AIGC")

    raw = httpx.post(
        labelled_url + "/v1/chat/completions",
        json={"model": TINY_NAME, "messages": ASK, "max_tokens": 40, "stream": True,
              "response_format": {"type": "json_schema", "json_schema": {"name": "v", "schema": {
                  "type": "object", "properties": {"ok": {"type": "boolean"}},
                  "required": ["ok"], "additionalProperties": False}}}},
        timeout=60,
    )  # fmt: skip
    events = [json.loads(line[6:]) for line in raw.text.splitlines()
              if line.startswith("data: {")]  # fmt: skip
    text = "".join((e["choices"][0]["delta"].get("content") or "") for e in events if e["choices"])
    assert LABEL not in text and isinstance(json.loads(text), dict)
    assert events[-1]["AIGC"]

    prose = c.chat.completions.create(model=TINY_NAME, messages=ASK, max_tokens=6)
    assert (prose.choices[0].message.content or "").endswith(LABEL)  # people still see it


def test_remote_backends_get_tools_unchanged_and_return_calls_unlabelled(
    upstream: Upstream, start_gateway: GatewayFactory, keys: KeyStore, home: Path,
    monkeypatch: pytest.MonkeyPatch,
) -> None:  # fmt: skip
    monkeypatch.setenv("HESHI_AIGC_KEY", "a-test-signing-key-of-enough-length")
    plaintext, _ = keys.create("acme", "agent")
    aigc = AigcConfig(enabled=True, uscc="91350100M000100Y43", explicit="end")
    gw = start_gateway(gateway_config(home, upstream.base_url).model_copy(update={"aigc": aigc}))
    upstream.state.tool_calls = [{"name": "get_weather", "arguments": '{"city": "杭州"}'}]
    c = client(gw.url, plaintext)
    model = upstream.state.model
    resp = c.chat.completions.create(
        model=model, messages=ASK, tools=[WEATHER, ORDER], tool_choice="required",
        parallel_tool_calls=False, max_tokens=50,
    )  # fmt: skip
    sent = upstream.state.bodies[-1]
    assert sent["tools"] == [WEATHER, ORDER]
    assert sent["tool_choice"] == "required" and sent["parallel_tool_calls"] is False
    assert resp.choices[0].finish_reason == "tool_calls"
    (call,) = resp.choices[0].message.tool_calls or []
    assert (call.id, call.function.name, call.function.arguments) == (
        "call_up0", "get_weather", '{"city": "杭州"}'
    )  # fmt: skip
    assert resp.choices[0].message.content is None

    stream = c.chat.completions.create(
        model=model, messages=ASK, tools=[WEATHER], max_tokens=50, stream=True
    )
    chunks = [ch for ch in stream if ch.choices]
    calls = [tc for ch in chunks for tc in ch.choices[0].delta.tool_calls or ()]
    assert "".join(tc.function.arguments or "" for tc in calls if tc.function) == '{"city": "杭州"}'
    assert chunks[-1].choices[0].finish_reason == "tool_calls"
    assert not any(ch.choices[0].delta.content for ch in chunks)  # no label after the call


def _gbnf_of_weather_call(schema: str) -> str:
    """What llama.cpp's converter gives for the weather call's schema in an engine built
    without llguidance (its rule shapes: ``root``, ``space``, a rule per object)."""
    assert '"const": "get_weather"' in schema or '"const":"get_weather"' in schema
    return (
        'root ::= "{" space "\\"name\\"" space ":" space "\\"get_weather\\"" space "," space '
        '"\\"arguments\\"" space ":" space arguments space "}" space\n'
        'arguments ::= "{" space "\\"city\\"" space ":" space ("\\"北京\\"" | "\\"上海\\"") '
        'space "}"\n'
        'space ::= | " "\n'
    )


@pytest.mark.parametrize("choice", ["required", "auto"])
async def test_gbnf_grammars_for_engines_without_llguidance(
    tiny_engine: object, choice: str
) -> None:
    from heshi.engines.llamacpp import LlamaCppEngine
    from heshi.engines.toolcalls import ToolRequest
    from heshi.engines.toolparse import ToolCallParser, chat_message

    assert isinstance(tiny_engine, LlamaCppEngine)
    tools = ToolRequest.of({"tools": [WEATHER], "tool_choice": choice})
    assert tools is not None
    grammar = tools.grammar(constrain_auto=True, gbnf=_gbnf_of_weather_call)
    assert grammar is not None and not grammar.startswith("%llguidance")
    prompt = "<|im_start|>user\n北京天气<|im_end|>\n<|im_start|>assistant\n"
    if choice == "auto":  # the tiny model writes prose when it may
        prompt = prompt.replace("北京天气", "你好")
    result = await tiny_engine.completion(
        {"model": TINY_NAME, "prompt": prompt, "max_tokens": 120, "grammar": grammar}
    )
    text = result["choices"][0]["text"]
    message, called = chat_message(text, ToolCallParser(tools.names))
    if choice == "required":
        assert called, text
        assert json.loads(message["tool_calls"][0]["function"]["arguments"])["city"] in CITIES
    else:
        assert text and text[0] not in "<{`[ \t\n"


async def test_the_model_is_told_when_to_call_and_the_count_includes_it(
    tmp_path: Path,
) -> None:
    from heshi.config import DEFAULT_TOOL_INSTRUCTIONS
    from heshi.engines.llamacpp import LlamaCppEngine
    from heshi.engines.toolcalls import ToolRequest
    from tests.conftest import tiny_engine_config
    from tests.tinymodel import TOOLS_TEMPLATE, build_tiny_qwen2_gguf

    gguf = build_tiny_qwen2_gguf(tmp_path / "tools.gguf", chat_template=TOOLS_TEMPLATE)
    body = {"model": TINY_NAME, "messages": ASK, "tools": [WEATHER], "tool_choice": "auto"}
    tools = ToolRequest.of(body)
    assert tools is not None
    prompts = {}
    for told in (DEFAULT_TOOL_INSTRUCTIONS, ""):
        engine = LlamaCppEngine(TINY_NAME, gguf, tiny_engine_config(gguf, tool_instructions=told))
        await engine.start()
        try:
            request = (await engine.tool_completion_body(body, tools, None)).body
            prompts[told] = request["prompt"]
            if told:  # admission counts what the model reads
                with_tools = await engine.count_prompt_tokens("chat", body)
                plain = {**body, "tool_choice": "none"}
                without = await engine.count_prompt_tokens("chat", plain)
                assert with_tools is not None and without is not None
                assert with_tools > without + len(told.encode()) // 4
        finally:
            await engine.close()
    prompt = prompts[DEFAULT_TOOL_INSTRUCTIONS]
    at = prompt.index(DEFAULT_TOOL_INSTRUCTIONS)
    assert prompt.index("</tools>") < at < prompt.index("<|im_end|>", at)
    assert DEFAULT_TOOL_INSTRUCTIONS not in prompts[""]
    assert prompts[""] == prompt.replace("\n\n" + DEFAULT_TOOL_INSTRUCTIONS, "")


def tiny_tools_engine(
    tmp_path: Path, ctx: int, greedy_text: str | None = None, **changes: object
) -> LlamaCppEngine:
    """The tiny model with a template that describes tools, as an engine not yet started;
    ``greedy_text`` (default the tiny model's own) is what it answers every prompt with."""
    from tests.conftest import tiny_engine_config
    from tests.tinymodel import TOOLS_TEMPLATE, build_tiny_qwen2_gguf

    extra = {} if greedy_text is None else {"greedy_text": greedy_text}
    gguf = build_tiny_qwen2_gguf(
        tmp_path / f"tools-{ctx}-{greedy_text}.gguf",
        chat_template=TOOLS_TEMPLATE,
        context_length=ctx,
        **extra,
    )
    return LlamaCppEngine(TINY_NAME, gguf, tiny_engine_config(gguf, ctx=ctx, **changes))


async def answered_both_ways(engine: LlamaCppEngine, body: JSON) -> tuple[JSON, list[JSON]]:
    """``body`` answered by a started ``engine`` unstreamed, then streamed (its chunks)."""
    await engine.start()
    try:
        answer = await engine.chat(body)
        chunks = [c async for c in engine.stream_chat(body)]
    finally:
        await engine.close()
    return answer, chunks


PATTERNED_ORDER = {
    "type": "function",
    "function": {
        "name": "query_order",
        "parameters": {
            "type": "object",
            "properties": {"order_id": {"type": "string", "pattern": "^DD[0-9]{6}$"}},
            "required": ["order_id"],
        },
    },
}


@pytest.mark.parametrize("grounding", [False, True])
async def test_a_call_with_a_made_up_order_number_becomes_an_answer_in_words(
    tmp_path: Path, grounding: bool
) -> None:
    """The tiny model is pushed into a call (a bias on "<"); the grammar makes it write
    some DD number the user never gave. With grounding on, the engine answers again in
    words, streamed or not, and counts both generations."""
    engine = tiny_tools_engine(tmp_path, 2048, tool_call_grounding=grounding)
    body = {
        "model": TINY_NAME,
        "messages": [{"role": "user", "content": "hi"}],
        "tools": [PATTERNED_ORDER],
        "tool_choice": "auto",
        "parallel_tool_calls": False,
        "logit_bias": {str(ord("<")): 100},  # byte tokens: id = the byte
        "max_tokens": 120,
    }
    answer, chunks = await answered_both_ways(engine, body)
    message = answer["choices"][0]["message"]
    deltas = [c["choices"][0]["delta"] for c in chunks if c.get("choices")]
    streamed_calls = [d for d in deltas if d.get("tool_calls")]
    if not grounding:
        assert json.loads(message["tool_calls"][0]["function"]["arguments"])["order_id"]
        assert answer["choices"][0]["finish_reason"] == "tool_calls"
        assert streamed_calls
        return
    assert "tool_calls" not in message and message["content"]
    assert answer["choices"][0]["finish_reason"] != "tool_calls"
    assert answer["usage"]["completion_tokens"] > 120  # the made-up call, then the answer
    assert not streamed_calls and any(d.get("content") for d in deltas)
    finishes = [c["choices"][0]["finish_reason"] for c in chunks if c.get("choices")]
    assert [f for f in finishes if f] == ["length"]  # one end, the second answer's


@pytest.mark.parametrize("answer", ["B", "A"])
async def test_the_which_function_question_decides_before_the_answer(
    tmp_path: Path, answer: str, caplog: pytest.LogCaptureFixture
) -> None:
    """The tiny model answers every prompt's first token with the first byte of its greedy
    text: built to answer "B" (the function), its answer is a call, streamed or not, where
    without the question it writes "BBB…" in words; built to answer "A" (nothing to do),
    it answers in words where, pushed by a bias on "<", it would otherwise call."""
    body = {
        "model": TINY_NAME,
        "messages": [{"role": "user", "content": "北京天气"}],
        "tools": [WEATHER],
        "tool_choice": "auto",
        "max_tokens": 120,
    }
    if answer == "A":
        body["logit_bias"] = {str(ord("<")): 100}  # byte tokens: id = the byte
    answers = {}
    caplog.set_level(logging.DEBUG, logger="heshi.engines.local_tools")
    for decide in (True, False):
        engine = tiny_tools_engine(tmp_path, 2048, answer, tool_decision=decide)
        await engine.start()
        try:
            message = (await engine.chat(body))["choices"][0]["message"]
            chunks = [c async for c in engine.stream_chat(body)]
        finally:
            await engine.close()
        deltas = [c["choices"][0]["delta"] for c in chunks if c.get("choices")]
        streamed = [tc for d in deltas for tc in d.get("tool_calls") or ()]
        answers[decide] = message, streamed, deltas
    (message, streamed, deltas), (free, free_streamed, _) = answers[True], answers[False]
    verdicts = [r.getMessage().rsplit(" ", 1)[1] for r in caplog.records if "decision" in r.msg]
    assert verdicts == ["call" if answer == "B" else "words"] * 2  # chat, then the stream
    if answer == "B":
        (call,) = message["tool_calls"]
        assert call["function"]["name"] == "get_weather"
        assert json.loads(call["function"]["arguments"])["city"] in CITIES
        names = [tc["function"]["name"] for tc in streamed if tc["function"].get("name")]
        assert names == ["get_weather"]
        assert "tool_calls" not in free and free["content"].startswith("BBB")
        return
    assert "tool_calls" not in message and message["content"]
    assert not streamed and any(d.get("content") for d in deltas)
    assert free["tool_calls"] and free_streamed


async def test_a_question_that_does_not_fit_leaves_the_answer_to_the_model(
    tmp_path: Path,
) -> None:
    """The question quotes the latest message: near the end of the context it may not fit
    where the answer does. The answer is then given as without the question."""
    engine = tiny_tools_engine(tmp_path, 1024, tool_decision=True)
    body = {
        "model": TINY_NAME,
        "messages": [{"role": "user", "content": "weather " * 40}],
        "tools": [WEATHER],
        "tool_choice": "auto",
        "max_tokens": 8,
    }
    await engine.start()
    try:
        prompt = await engine.count_prompt_tokens("chat", body)
        assert prompt is not None
        answer = await engine.chat(body)
        chunks = [c async for c in engine.stream_chat(body)]
    finally:
        await engine.close()
    assert prompt + 8 <= 1024, prompt  # the answer fits…
    assert answer["choices"][0]["finish_reason"] == "length"
    finishes = [c["choices"][0]["finish_reason"] for c in chunks if c.get("choices")]
    assert finishes[-1] == "length"


def test_identifiers_must_come_from_the_conversation() -> None:
    from heshi.engines.toolgrounding import conversation_text, invented_values

    body = {
        "messages": [
            {"role": "user", "content": "订单 DD2026 1130 117734 坏了，尾号 0391"},
            {
                "role": "assistant",
                "tool_calls": [
                    {"function": {"name": "f", "arguments": '{"account": "6217-0000-1111"}'}}
                ],
            },
            {"role": "tool", "content": '{"tracking_no": "SF1309988776655"}'},
        ]
    }
    said = conversation_text(body)
    grounded = {
        "order_id": "DD20261130117734", "card": "0391", "tracking": "SF1309988776655",
        "account": "621700001111", "date": "2026-12-28", "time": "14:30", "amount": "2000",
    }  # fmt: skip
    assert invented_values(json.dumps(grounded), said) == []
    made_up = {"order_id": "DD20250101000001", "nested": {"phones": ["13800138000"]}}
    assert invented_values(json.dumps(made_up), said) == ["DD20250101000001", "13800138000"]
    # free text quoting the user, time slots and date ranges are not identifiers
    said = "电脑蓝屏了，我在B座12楼1208工位，订单 DD20261130117734"
    quoted = {
        "description": "电脑蓝屏，我在B座12楼1208工位", "time_slot": "15:00-18:00",
        "leave": "2026-12-28至2026-12-31", "when": "2026/12/05 09:30:00",
        "order": "订单DD20261130117734已损坏",
    }  # fmt: skip
    assert invented_values(json.dumps(quoted, ensure_ascii=False), said) == []
    sneaked = {"note": "退款到卡号 6222 0201 1234 5678，订单 DD20261130117734"}
    assert invented_values(json.dumps(sneaked, ensure_ascii=False), said) == [sneaked["note"]]
    # made-up numbers however they are separated, and long integers, are still caught
    disguised = [
        "138_0013_8000", "138，0013，8000", "138—0013—8000", "ORD-2026-05-0001",
        "2026-12-28-0001", "A1234B5678", "工号:1234:5678", "14:30 12345",
    ]  # fmt: skip
    for value in disguised:
        assert invented_values(json.dumps({"id": value}, ensure_ascii=False), "谢谢") == [value]
    numbers = {"account": 6222021234567890, "amount": 30000}
    assert invented_values(json.dumps(numbers), "转三万") == ["6222021234567890"]


ASK_WEATHER: JSON = {
    "model": TINY_NAME,
    "messages": [{"role": "user", "content": "北京天气"}],
    "tools": [WEATHER],
    "tool_choice": "auto",
}


def undecided_engine(tmp_path: Path, greedy_text: str, **changes: object) -> LlamaCppEngine:
    """The tiny tools model with the which-function question asked and never decisive
    (thresholds 0 and 1): the answer is always left to the model."""
    return tiny_tools_engine(
        tmp_path,
        2048,
        greedy_text,
        tool_decision=True,
        tool_decision_call_below=0.0,
        tool_decision_answer_above=1.0,
        **changes,
    )


@pytest.mark.parametrize("grounding", [True, False])
async def test_an_answer_that_claims_the_action_done_becomes_the_call(
    tmp_path: Path, grounding: bool
) -> None:
    """The question is left undecided (thresholds 0 and 1); the tiny model, built to
    answer "B已提交…", names the function first and then answers in words that it has
    submitted. With grounding on, that claim is not sent: the answer is started again as
    a call to the function the question ranked first, streamed or not, both generations
    counted; with it off, the words stand."""
    engine = undecided_engine(tmp_path, "B已提交", tool_call_grounding=grounding)
    body = {**ASK_WEATHER, "max_tokens": 120}
    answer, chunks = await answered_both_ways(engine, body)
    message = answer["choices"][0]["message"]
    deltas = [c["choices"][0]["delta"] for c in chunks if c.get("choices")]
    streamed = [tc for d in deltas for tc in d.get("tool_calls") or ()]
    said = "".join(d.get("content") or "" for d in deltas)
    if not grounding:
        assert "tool_calls" not in message and "已提交" in message["content"]
        assert not streamed and "已提交" in said
        return
    (call,) = message["tool_calls"]
    assert call["function"]["name"] == "get_weather"
    assert answer["choices"][0]["finish_reason"] == "tool_calls"
    assert answer["usage"]["completion_tokens"] > 120  # the claim, then the call
    assert [tc["function"]["name"] for tc in streamed if tc["function"].get("name")] == [
        "get_weather"
    ]
    assert "已提交" not in said  # the held claim was never sent
    finishes = [c["choices"][0]["finish_reason"] for c in chunks if c.get("choices")]
    assert [f for f in finishes if f] == ["tool_calls"]


async def test_words_held_while_undecided_are_all_sent_when_they_claim_nothing(
    tmp_path: Path,
) -> None:
    """An undecided answer's first characters are held back; an answer that claims
    nothing reaches a stream whole and in order, as the same answer unstreamed."""
    engine = undecided_engine(tmp_path, "B好的")
    body = ASK_WEATHER
    await engine.start()
    try:
        for max_tokens in (14, 217):  # whole characters, fewer and more than the hold
            asked = {**body, "max_tokens": max_tokens}
            answer = await engine.chat(asked)
            chunks = [c async for c in engine.stream_chat(asked)]
            deltas = [c["choices"][0]["delta"] for c in chunks if c.get("choices")]
            said = "".join(d.get("content") or "" for d in deltas)
            assert said == answer["choices"][0]["message"]["content"]
            assert said.startswith("B好的B好的") and "tool_calls" not in str(deltas)
            assert answer["usage"]["completion_tokens"] == max_tokens  # one generation
    finally:
        await engine.close()


def test_placeholders_and_claims() -> None:
    from heshi.engines.toolgrounding import claims_action, invented_values

    said = "尾号5836那张卡还剩多少，快递 773048129956 四天没动了，转给张三 1234 元"
    for made_up in ("李四", "新的收货地址", "您的手机号", "xxx", "<name>", "0000", "6789", "4321"):
        assert invented_values(json.dumps({"v": made_up}, ensure_ascii=False), said) == [made_up]
    for given in ("5836", "申通773048129956", "张三", "1234", "2000", "101", "投诉建议"):
        assert invented_values(json.dumps({"v": given}, ensure_ascii=False), said) == []
    claims = (
        "好的，我已经提交了调休申请。", "已为您充值 50 元。", "好的，我会在下周一再送。",
        "已经帮你转过去了", "这边马上为您办理退款",
    )  # fmt: skip
    for text in claims:
        assert claims_action(text), text
    not_claims = (
        "请提供订单号，我会帮您办理退款。", "已为您查到订单，状态是已签收。",
        "我无法为您办理转账。", "要退货退款，您需要提供以下信息：订单号", "您要提交吗？",
        "北京今天晴。", "",
    )  # fmt: skip
    for text in not_claims:
        assert not claims_action(text), text
    # the report of an action a tool carried out earlier, said again, is no new claim
    said = "已为您冻结尾号 1024 的银行卡，冻结时间 10:02。"
    assert not claims_action(said, said) and not claims_action(said[:20], said)
    assert claims_action("好的。已为您冻结尾号 2048 的银行卡。", said)
    # a question about a call already made is answered, not acted on again
    from heshi.engines.toolgrounding import asked_after_call

    made = {"role": "assistant", "tool_calls": [{"function": {"name": "transfer_funds"}}]}
    asked = [made, {"role": "tool", "content": "{}"}, {"role": "user", "content": "转成功了吗"}]
    assert asked_after_call({"messages": asked}, "transfer_funds")
    again = [*asked[:2], {"role": "user", "content": "再给李四转一千"}]
    assert not asked_after_call({"messages": again}, "transfer_funds")
    assert not asked_after_call({"messages": asked[2:]}, "transfer_funds")
    # placeholders the user did say, in another case or spacing, are theirs
    said_user = "我的用户名是 User，尺码 XXXL"
    for given in ("user", "xxxl"):
        assert invented_values(json.dumps({"v": given}), said_user) == []
