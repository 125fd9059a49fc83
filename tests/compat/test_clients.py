"""The clients applications are built with, against a gateway over the tiny model: the
``openai`` SDK (sync and async), LangChain, LlamaIndex and the ``litellm`` SDK."""

from __future__ import annotations

import json
import os

import openai
import pytest
from pydantic import BaseModel, Field

from tests.compat.test_tools import CITIES, WEATHER, client, named
from tests.conftest import TINY_CTX, TINY_NAME

# Offline: litellm would fetch its model price list from GitHub when imported.
os.environ.setdefault("LITELLM_LOCAL_MODEL_COST_MAP", "True")
# litellm's own types make pydantic warn while it streams (the suite turns warnings into errors)
pytestmark = pytest.mark.filterwarnings("ignore:Item .* `ReadOnly` qualifier:UserWarning")


class Weather(BaseModel):
    """查询城市天气"""

    city: str = Field(json_schema_extra={"enum": CITIES})


def test_one_model_is_retrieved_by_its_id(gateway_url: str) -> None:
    model = client(gateway_url).models.retrieve(TINY_NAME)
    assert model.id == TINY_NAME and model.object == "model"
    assert (model.model_extra or {})["context_length"] == TINY_CTX
    with pytest.raises(openai.NotFoundError) as err:
        client(gateway_url).models.retrieve("qwen-nonexistent")
    assert TINY_NAME in str(err.value)  # the 404 says what is served


async def test_async_client_calls_tools_and_streams(gateway_url: str) -> None:
    async with openai.AsyncOpenAI(
        base_url=gateway_url + "/v1", api_key="unused", max_retries=0
    ) as c:
        resp = await c.chat.completions.create(
            model=TINY_NAME, messages=[{"role": "user", "content": "北京天气"}],
            tools=[WEATHER], tool_choice="required", parallel_tool_calls=False,
            max_tokens=150, temperature=0,
        )  # fmt: skip
        (call,) = resp.choices[0].message.tool_calls or []
        assert json.loads(call.function.arguments)["city"] in CITIES
        stream = await c.chat.completions.create(
            model=TINY_NAME, messages=[{"role": "user", "content": "你好"}], max_tokens=6,
            stream=True,
        )  # fmt: skip
        text = "".join([ch.choices[0].delta.content or "" async for ch in stream if ch.choices])
        assert text


def test_a_prompt_too_long_is_a_context_window_error_for_litellm(gateway_url: str) -> None:
    import litellm

    messages = [{"role": "user", "content": "长" * TINY_CTX}]
    with pytest.raises(litellm.ContextWindowExceededError):
        litellm.completion(
            model=f"openai/{TINY_NAME}", api_base=gateway_url + "/v1", api_key="unused",
            messages=messages, max_tokens=5, num_retries=0,
        )  # fmt: skip
    with pytest.raises(openai.BadRequestError) as err:  # the same error, as OpenAI sends it
        client(gateway_url).chat.completions.create(
            model=TINY_NAME,
            messages=messages,
            max_tokens=5,  # type: ignore[arg-type]
        )
    assert err.value.code == "context_length_exceeded"
    assert "maximum context length is 256 tokens" in err.value.message


def test_litellm_sdk_chats_streams_and_calls_tools(gateway_url: str) -> None:
    import litellm

    common = {"model": f"openai/{TINY_NAME}", "api_base": gateway_url + "/v1",
              "api_key": "unused", "temperature": 0}  # fmt: skip
    resp = litellm.completion(
        messages=[{"role": "user", "content": "你好"}], max_tokens=6, **common
    )
    assert resp.choices[0].message.content
    assert resp.usage.completion_tokens == 6
    chunks = list(
        litellm.completion(
            messages=[{"role": "user", "content": "你好"}], max_tokens=6, stream=True, **common
        )
    )
    assert "".join(c.choices[0].delta.content or "" for c in chunks)
    called = litellm.completion(
        messages=[{"role": "user", "content": "杭州天气"}], tools=[WEATHER],
        tool_choice=named("get_weather"), max_tokens=150, **common,
    )  # fmt: skip
    (call,) = called.choices[0].message.tool_calls
    assert call.function.name == "get_weather"
    assert json.loads(call.function.arguments)["city"] in CITIES


def test_langchain_binds_tools_and_gets_structured_output(gateway_url: str) -> None:
    from langchain_openai import ChatOpenAI

    llm = ChatOpenAI(
        model=TINY_NAME, base_url=gateway_url + "/v1", api_key="unused",  # type: ignore[arg-type]
        temperature=0, max_tokens=150, max_retries=0,
    )  # fmt: skip
    reply = llm.invoke("你好")
    assert isinstance(reply.content, str) and reply.content

    bound = llm.bind_tools([Weather], tool_choice="Weather")
    message = bound.invoke("上海天气怎么样")
    (call,) = message.tool_calls  # type: ignore[attr-defined]
    assert call["name"] == "Weather" and call["args"]["city"] in CITIES

    streamed = None
    for chunk in bound.stream("上海天气怎么样"):
        streamed = chunk if streamed is None else streamed + chunk
    assert streamed is not None
    assert [c["name"] for c in streamed.tool_calls] == ["Weather"]  # type: ignore[attr-defined]

    for method in ("function_calling", "json_schema"):
        structured = llm.with_structured_output(Weather, method=method)  # type: ignore[arg-type]
        out = structured.invoke("杭州天气")
        assert isinstance(out, Weather) and out.city in CITIES, method


def test_llamaindex_openai_like_chats_and_streams(gateway_url: str) -> None:
    from llama_index.core.llms import ChatMessage
    from llama_index.llms.openai_like import OpenAILike

    llm = OpenAILike(
        model=TINY_NAME, api_base=gateway_url + "/v1", api_key="unused", is_chat_model=True,
        is_function_calling_model=True, context_window=TINY_CTX, max_tokens=6, temperature=0,
        max_retries=0,
    )  # fmt: skip
    hello = [ChatMessage(role="user", content="你好")]
    assert llm.chat(hello).message.content
    text = "".join(r.delta or "" for r in llm.stream_chat(hello))
    assert text
    assert llm.complete("你好").text
