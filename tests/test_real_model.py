"""The embedded default model (Qwen2.5-Coder-1.5B-Instruct Q4_K_M) end to end.

Slow: each test decodes real tokens on the CPU. ``make test`` and CI run them.
"""

from __future__ import annotations

import asyncio
import contextlib
import io
import json
import re
import subprocess
from collections.abc import Iterator
from pathlib import Path

import httpx
import openai
import pytest

from heshi.config import HeshiConfig, LocalEngineConfig
from heshi.engines.llamacpp import LlamaCppEngine
from heshi.gateway.app import create_app
from tests.conftest import RunningGateway
from tests.fakes.waiting import wait_until
from tests.loopback import serve_app

pytestmark = pytest.mark.slow
NAME = "qwen2.5-coder-1.5b-instruct"
CJK = re.compile(r"[\u4e00-\u9fff]")


@pytest.fixture(scope="module")
def real_gateway(
    default_model_path: Path, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[RunningGateway]:
    engine_cfg = LocalEngineConfig(model=str(default_model_path), name=NAME, parallel=4, ctx=1024)
    config = HeshiConfig(home=tmp_path_factory.mktemp("home"), engine=engine_cfg)
    engine = LlamaCppEngine(NAME, default_model_path, engine_cfg)
    with serve_app(create_app(config, {"local": engine}), startup_timeout=300) as url:
        yield RunningGateway(url, engine)


def client(url: str) -> openai.OpenAI:
    return openai.OpenAI(base_url=url + "/v1", api_key="unused", max_retries=0, timeout=600)


def test_answers_in_chinese(real_gateway: RunningGateway) -> None:
    resp = client(real_gateway.url).chat.completions.create(
        model=NAME,
        messages=[{"role": "user", "content": "中国的首都是哪座城市？请用中文一句话回答。"}],
        max_tokens=32,
        temperature=0,
    )
    answer = resp.choices[0].message.content or ""
    assert "北京" in answer, answer
    assert resp.usage is not None and resp.usage.completion_tokens > 0


def test_streams_chinese_with_usage(real_gateway: RunningGateway) -> None:
    stream = client(real_gateway.url).chat.completions.create(
        model=NAME,
        messages=[{"role": "user", "content": "用中文列出三种常见的水果。"}],
        max_tokens=40,
        temperature=0,
        stream=True,
        stream_options={"include_usage": True},
    )
    chunks = list(stream)
    text = "".join(c.choices[0].delta.content or "" for c in chunks if c.choices)
    assert CJK.search(text), text
    assert "\ufffd" not in text
    assert chunks[0].choices[0].delta.role == "assistant"
    usage = chunks[-1].usage
    assert usage is not None and 0 < usage.completion_tokens <= 40
    content_chunks = sum(1 for c in chunks if c.choices and c.choices[0].delta.content)
    assert content_chunks > 5  # streamed piece by piece, not in one lump


def test_four_concurrent_streams_are_batched(real_gateway: RunningGateway) -> None:
    questions = ["介绍一下长城。", "介绍一下故宫。", "介绍一下西湖。", "介绍一下黄山。"]

    async def one(http: httpx.AsyncClient, q: str) -> str:
        body = {
            "model": NAME,
            "messages": [{"role": "user", "content": q}],
            "max_tokens": 24,
            "temperature": 0,
            "stream": True,
        }
        text = ""
        async with http.stream("POST", real_gateway.url + "/v1/chat/completions", json=body) as r:
            assert r.status_code == 200
            async for line in r.aiter_lines():
                if line.startswith("data: {"):
                    for choice in httpx.Response(200, content=line[6:]).json()["choices"]:
                        text += choice["delta"].get("content") or ""
        return text

    async def run() -> list[str]:
        async with httpx.AsyncClient(timeout=600) as http:
            return await asyncio.gather(*(one(http, q) for q in questions))

    before = real_gateway.engine.stats()
    answers = asyncio.run(run())
    after = real_gateway.engine.stats()
    assert all(CJK.search(a) for a in answers), answers
    decodes = after["n_decode_total"] - before["n_decode_total"]
    tokens = after["tokens_predicted_total"] - before["tokens_predicted_total"]
    # batched: far fewer decode calls than tokens generated (one call serves several slots)
    assert decodes < tokens * 0.6, (decodes, tokens)


def test_disconnect_stops_real_generation(real_gateway: RunningGateway) -> None:
    before = real_gateway.engine.stats()["tokens_predicted_total"]
    body = {
        "model": NAME,
        "messages": [{"role": "user", "content": "详细介绍中国的历史，至少写一千字。"}],
        "max_tokens": 400,
        "stream": True,
    }
    with httpx.stream(
        "POST", real_gateway.url + "/v1/chat/completions", json=body, timeout=600
    ) as r:
        for line in r.iter_lines():
            if '"content":"' in line:
                break  # the first real token arrived: hang up
    wait_until(
        lambda: real_gateway.engine.stats()["requests_processing"] == 0,
        timeout=120,
        interval=0.05,
        message="the slot was still busy 120 s after the client hung up",
    )
    produced = real_gateway.engine.stats()["tokens_predicted_total"] - before
    assert produced < 100, produced  # at ~10 tok/s, 400 tokens would take 40 s


TOOLS = [
    {
        "type": "function",
        "function": {
            "name": "get_weather",
            "description": "查询某个城市今天的天气",
            "parameters": {
                "type": "object",
                "properties": {"city": {"type": "string", "description": "城市名"}},
                "required": ["city"],
            },
        },
    },
    {
        "type": "function",
        "function": {
            "name": "query_order",
            "description": "按订单号查询物流状态",
            "parameters": {
                "type": "object",
                "properties": {"order_id": {"type": "string"}},
                "required": ["order_id"],
            },
        },
    },
]


def test_calls_the_right_tool_on_its_own_and_streams_it(real_gateway: RunningGateway) -> None:
    c = client(real_gateway.url)
    ask = [{"role": "user", "content": "帮我查一下订单 SF1234567 现在到哪了"}]
    resp = c.chat.completions.create(
        model=NAME, messages=ask, tools=TOOLS, max_tokens=80, temperature=0
    )
    assert resp.choices[0].finish_reason == "tool_calls"
    (call,) = resp.choices[0].message.tool_calls or []
    assert call.function.name == "query_order"
    assert "SF1234567" in call.function.arguments

    stream = c.chat.completions.create(
        model=NAME, messages=ask, tools=TOOLS, max_tokens=80, temperature=0, stream=True
    )
    chunks = [ch for ch in stream if ch.choices]
    calls = [tc for ch in chunks for tc in ch.choices[0].delta.tool_calls or ()]
    assert [tc.function.name for tc in calls if tc.function] == ["query_order"]
    assert chunks[-1].choices[0].finish_reason == "tool_calls"

    hello = c.chat.completions.create(
        model=NAME, messages=[{"role": "user", "content": "你好，请用一句话介绍你自己。"}],
        tools=TOOLS, max_tokens=40, temperature=0,
    )  # fmt: skip
    assert not hello.choices[0].message.tool_calls
    assert CJK.search(hello.choices[0].message.content or "")


REFUND = {
    "type": "function",
    "function": {
        "name": "apply_refund",
        "description": "为订单提交退款申请",
        "parameters": {
            "type": "object",
            "properties": {"order_id": {"type": "string"}, "reason": {"type": "string"}},
            "required": ["order_id", "reason"],
        },
    },
}


def test_a_second_request_after_a_tool_result_is_a_call(real_gateway: RunningGateway) -> None:
    """After a tool result the model alone answers a new request in words ("已为您申请退款")
    without calling; the which-function question makes it call (docs/decisions.md)."""
    c = client(real_gateway.url)
    lookup = {
        "id": "call_1",
        "type": "function",
        "function": {"name": "query_order", "arguments": '{"order_id": "DD20261201884420"}'},
    }
    messages = [
        {"role": "user", "content": "订单 DD20261201884420 到了没"},
        {"role": "assistant", "content": None, "tool_calls": [lookup]},
        {
            "role": "tool",
            "tool_call_id": "call_1",
            "content": '{"status": "已签收", "items": [{"name": "陶瓷马克杯", "qty": 2}]}',
        },
        {"role": "assistant", "content": "您的订单已签收，是两个陶瓷马克杯。"},
        {"role": "user", "content": "到是到了，可两个杯子都摔裂了，帮我退款"},
    ]
    resp = c.chat.completions.create(
        model=NAME, messages=messages, tools=[TOOLS[1], REFUND], max_tokens=120, temperature=0
    )  # type: ignore[arg-type]
    (call,) = resp.choices[0].message.tool_calls or []
    assert call.function.name == "apply_refund"
    assert json.loads(call.function.arguments)["order_id"] == "DD20261201884420"


def test_the_tool_calling_example_in_serving_md_runs(real_gateway: RunningGateway) -> None:
    doc = (Path(__file__).parents[1] / "docs" / "serving.md").read_text(encoding="utf-8")
    section = doc.split("## Tool calling", 1)[1].split("\n## ", 1)[0]
    code = section.split("```python\n", 1)[1].split("```", 1)[0]
    code = code.replace("http://127.0.0.1:8000", real_gateway.url).replace("hs-…", "unused")
    scope: dict[str, object] = {}
    exec(compile(code, "serving.md", "exec"), scope)  # our own docs, run as written
    call = scope["call"]
    assert call.function.name == "query_order"  # type: ignore[attr-defined]
    assert "SF1234567" in call.function.arguments  # type: ignore[attr-defined]


def test_the_readme_tour_runs_as_written(real_gateway: RunningGateway) -> None:
    """README's curl commands and Python example, verbatim but for the port."""
    readme = (Path(__file__).parents[1] / "README.md").read_text(encoding="utf-8")
    tour = readme.split("## A short tour", 1)[1].split("\n## ", 1)[0]
    shell = tour.split("```bash\n", 1)[1].split("```", 1)[0]
    python = tour.split("```python\n", 1)[1].split("```", 1)[0]
    assert shell.count("curl ") == 2 and NAME in shell and NAME in python
    for command in shell.replace("\\\n", " ").strip().splitlines():
        done = subprocess.run(
            ["bash", "-c", command.replace("http://127.0.0.1:8000", real_gateway.url)],
            capture_output=True, text=True, timeout=600, check=True,
        )  # fmt: skip
        answer = json.loads(done.stdout)
        assert answer.get("data") or answer["choices"][0]["message"]["content"], done.stdout
    out = io.StringIO()
    with contextlib.redirect_stdout(out):
        code = python.replace("http://127.0.0.1:8000", real_gateway.url)
        exec(compile(code, "README.md", "exec"), {})  # our own docs, run as written
    assert CJK.search(out.getvalue())
