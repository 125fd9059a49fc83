"""OpenAIHTTPEngine against real loopback upstreams.

Most tests talk to the suite's fake upstream (``tests.fakes.upstream``). Protocol tests
where the exact bytes on the wire are the point keep their own servers: ``serve`` (an
aiohttp.web handler per test, for bodies the fake never sends) and ``serve_raw`` (raw
asyncio sockets, for byte-level framing).
"""

from __future__ import annotations

import asyncio
import contextlib
import socket
import sys
import time
from collections.abc import AsyncIterator, Awaitable, Callable, Iterator
from typing import Any

import orjson
import pytest
from aiohttp import web

from heshi.config import BackendConfig
from heshi.engines.base import Engine, ServedModel
from heshi.engines.openai_http import OpenAIHTTPEngine
from heshi.errors import ConfigError, UpstreamError, UpstreamRejected, UpstreamTimeout
from tests.fakes.upstream import FakeUpstream
from tests.fakes.waiting import wait_until_async
from tests.loopback import free_port

Handler = Callable[[web.Request], Awaitable[web.StreamResponse]]
Serve = Callable[[Handler], Awaitable[str]]
Script = Callable[[asyncio.StreamWriter], Awaitable[None]]
ServeRaw = Callable[[Script], Awaitable[str]]
MakeEngine = Callable[..., Awaitable[OpenAIHTTPEngine]]

MODEL = "qwen2.5-7b-instruct"
CHAT_BODY: dict[str, Any] = {"model": MODEL, "messages": [{"role": "user", "content": "你好"}]}
SSE_HEAD = b"HTTP/1.1 200 OK\r\nContent-Type: text/event-stream\r\nConnection: close\r\n\r\n"


def chunk(text: str) -> dict[str, Any]:
    return {
        "object": "chat.completion.chunk",
        "choices": [{"index": 0, "delta": {"content": text}}],
    }


def sse(obj: Any) -> bytes:
    return b"data: " + orjson.dumps(obj) + b"\n\n"


async def sse_response(request: web.Request) -> web.StreamResponse:
    resp = web.StreamResponse(headers={"Content-Type": "text/event-stream"})
    await resp.prepare(request)
    return resp


@pytest.fixture
async def serve() -> AsyncIterator[Serve]:
    """Start an aiohttp.web upstream on 127.0.0.1 whose every POST /v1/* goes to a handler."""
    runners: list[web.AppRunner] = []

    async def start(handler: Handler) -> str:
        app = web.Application()
        app.router.add_route("POST", "/v1/{tail:.*}", handler)
        # handler_cancellation: the handler is cancelled when the client disconnects,
        # which is how a real upstream notices and stops generating.
        runner = web.AppRunner(app, handler_cancellation=True, shutdown_timeout=0.2)
        await runner.setup()
        runners.append(runner)
        site = web.TCPSite(runner, "127.0.0.1", 0)
        await site.start()
        host, port = runner.addresses[0][:2]
        return f"http://{host}:{port}/v1"

    yield start
    for runner in runners:
        await runner.cleanup()


@pytest.fixture
def fake() -> Iterator[FakeUpstream]:
    """The suite's fake OpenAI-compatible upstream."""
    with FakeUpstream(name="vllm-a") as upstream:
        yield upstream


@pytest.fixture
async def serve_raw() -> AsyncIterator[ServeRaw]:
    """Start a raw asyncio upstream: reads one request, then runs a script of writes."""
    servers: list[asyncio.Server] = []

    async def start(script: Script) -> str:
        async def handle(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
            try:
                head = await reader.readuntil(b"\r\n\r\n")
                length = next(
                    int(line.split(b":", 1)[1])
                    for line in head.lower().split(b"\r\n")
                    if line.startswith(b"content-length:")
                )
                await reader.readexactly(length)
                await script(writer)
            finally:
                writer.close()
                with contextlib.suppress(ConnectionError):
                    await writer.wait_closed()

        server = await asyncio.start_server(handle, "127.0.0.1", 0)
        servers.append(server)
        port = server.sockets[0].getsockname()[1]
        return f"http://127.0.0.1:{port}/v1"

    yield start
    for server in servers:
        server.close()
        await server.wait_closed()


@pytest.fixture
async def make_engine() -> AsyncIterator[MakeEngine]:
    engines: list[OpenAIHTTPEngine] = []

    async def make(
        base_url: str, *, environ: dict[str, str] | None = None, **config: Any
    ) -> OpenAIHTTPEngine:
        engine = OpenAIHTTPEngine(
            "vllm-a",
            BackendConfig(base_url=base_url, models=[MODEL], **config),
            environ=environ or {},
        )
        await engine.start()
        engines.append(engine)
        return engine

    yield make
    for engine in engines:
        await engine.close()


async def collect(agen: AsyncIterator[dict[str, Any]]) -> list[dict[str, Any]]:
    return [item async for item in agen]


# ---------------------------------------------------------------- lifecycle


async def test_served_models_are_owned_by_the_backend_and_it_is_an_engine() -> None:
    config = BackendConfig(base_url="http://127.0.0.1:1/v1", models=["a", "b"])
    engine = OpenAIHTTPEngine("sglang-1", config, environ={})
    assert isinstance(engine, Engine)
    assert engine.served_models() == [
        ServedModel(name="a", owned_by="sglang-1"),
        ServedModel(name="b", owned_by="sglang-1"),
    ]
    await engine.start()
    await engine.close()
    await engine.close()  # twice is fine


async def test_missing_api_key_env_is_a_config_error() -> None:
    config = BackendConfig(base_url="http://127.0.0.1:1/v1", api_key_env="DASHSCOPE_API_KEY")
    engine = OpenAIHTTPEngine("dashscope", config, environ={"OTHER": "x"})
    with pytest.raises(ConfigError, match="DASHSCOPE_API_KEY"):
        await engine.start()
    await engine.close()


# ---------------------------------------------------------------- non-streaming


async def test_chat_round_trip_forwards_body_and_bearer_key(
    fake: FakeUpstream, make_engine: MakeEngine
) -> None:
    fake.state.reply = "你好！"
    body = {**CHAT_BODY, "temperature": 0.3, "extra_vendor_field": {"x": [1, 2]}}
    engine = await make_engine(
        fake.base_url, api_key_env="VLLM_KEY", environ={"VLLM_KEY": "sk-secret-123"}
    )
    result = await engine.chat(body)
    assert result == fake.state.sent[-1]  # the upstream's JSON object, as it sent it
    assert (result["object"], result["choices"][0]["message"]["content"]) == (
        "chat.completion",
        "你好！",
    )
    # forwarded as given, with the output limit every request carries upstream
    seen = [(r.path, r.headers.get("Authorization"), r.body) for r in fake.state.requests]
    assert seen == [("/v1/chat/completions", "Bearer sk-secret-123", body | {"max_tokens": 8192})]


async def test_every_request_upstream_carries_an_output_limit(
    fake: FakeUpstream, make_engine: MakeEngine
) -> None:
    seen = fake.state.bodies
    url = fake.base_url
    capped = await make_engine(url, max_output_tokens=300)
    await capped.chat(CHAT_BODY)
    await capped.chat(CHAT_BODY | {"max_tokens": 5000})  # the caller's own limit is kept
    await capped.chat(CHAT_BODY | {"max_completion_tokens": 7})
    assert [b.get("max_tokens") for b in seen] == [300, 5000, None]
    assert seen[2]["max_completion_tokens"] == 7
    # with a known context, never more than the context: the prompt is only estimated
    # here, so it is not subtracted (the backend refuses a prompt it cannot fit)
    windowed = await make_engine(url, context=1000)
    await windowed.chat(CHAT_BODY)
    assert seen[-1]["max_tokens"] == 1000
    assert windowed.default_completion(999) == 1000 and windowed.completion_cap(2000) == 1000
    assert capped.completion_cap(10**6) is None
    assert await capped.count_prompt_tokens("chat", CHAT_BODY) is None


async def test_the_backends_chat_template_defaults_go_under_the_requests_own(
    fake: FakeUpstream, make_engine: MakeEngine
) -> None:
    """``chat_template_kwargs`` in heshi.yaml (thinking off for a customer-service bot on an
    engine without a server switch) reaches the upstream with every chat request, streamed
    or not; what a request sets itself wins, key by key; /completions is left alone."""
    seen = fake.state.bodies
    quiet = await make_engine(
        fake.base_url, chat_template_kwargs={"enable_thinking": False, "x": 1}
    )
    await quiet.chat(CHAT_BODY)
    await quiet.chat(CHAT_BODY | {"chat_template_kwargs": {"enable_thinking": True}})
    await collect(quiet.stream_chat(CHAT_BODY))
    await quiet.completion({"model": MODEL, "prompt": "1+1="})
    kwargs = [b.get("chat_template_kwargs") for b in seen]
    assert kwargs == [
        {"enable_thinking": False, "x": 1},
        {"enable_thinking": True, "x": 1},
        {"enable_thinking": False, "x": 1},
        None,
    ]
    plain = await make_engine(fake.base_url)
    await plain.chat(CHAT_BODY)
    assert "chat_template_kwargs" not in seen[-1]


async def test_no_authorization_header_without_api_key_env(
    fake: FakeUpstream, make_engine: MakeEngine
) -> None:
    engine = await make_engine(fake.base_url)
    result = await engine.completion({"model": MODEL, "prompt": "1+1="})
    assert result == fake.state.sent[-1] and result["object"] == "text_completion"
    assert [r.headers.get("Authorization") for r in fake.state.requests] == [None]


async def test_embeddings_round_trip(fake: FakeUpstream, make_engine: MakeEngine) -> None:
    engine = await make_engine(fake.base_url)
    result = await engine.embeddings({"model": MODEL, "input": ["发票", "合同"]})
    assert [r.path for r in fake.state.requests] == ["/v1/embeddings"]
    assert fake.state.bodies[-1]["input"] == ["发票", "合同"]
    # the fake answers one embedding [0.25, -0.5] per input
    assert [d["embedding"] for d in result["data"]] == [[0.25, -0.5], [0.25, -0.5]]


async def test_upstream_400_is_rejected_with_its_own_message(
    fake: FakeUpstream, make_engine: MakeEngine
) -> None:
    fake.state.mode = "400"
    fake.state.error_message = "max_tokens must be at most 4096"
    engine = await make_engine(fake.base_url)
    with pytest.raises(UpstreamRejected) as info:
        await engine.chat(CHAT_BODY)
    assert info.value.status_code == 400
    assert info.value.message == "vllm-a: max_tokens must be at most 4096"


async def test_upstream_500_is_a_502_naming_the_status(
    fake: FakeUpstream, make_engine: MakeEngine
) -> None:
    fake.state.mode = "500"
    engine = await make_engine(fake.base_url)
    with pytest.raises(UpstreamError, match="HTTP 500") as info:
        await engine.chat(CHAT_BODY)
    assert info.value.status_code == 502
    assert not isinstance(info.value, UpstreamTimeout)


async def test_upstream_401_blames_our_key_without_showing_it(
    fake: FakeUpstream, make_engine: MakeEngine
) -> None:
    fake.state.mode, fake.state.error_message = "401", "invalid api key"
    engine = await make_engine(
        fake.base_url, api_key_env="VLLM_KEY", environ={"VLLM_KEY": "sk-secret-123"}
    )
    with pytest.raises(UpstreamError, match="VLLM_KEY") as info:
        await engine.chat(CHAT_BODY)
    assert info.value.status_code == 502  # the client's own key is fine; ours is not
    assert "sk-secret-123" not in info.value.message


@pytest.mark.parametrize("payload", [b"<html>502 Bad Gateway</html>", b"[1, 2, 3]", b""])
async def test_200_with_garbage_body_is_an_upstream_error(
    serve: Serve, make_engine: MakeEngine, payload: bytes
) -> None:
    async def handler(request: web.Request) -> web.StreamResponse:
        return web.Response(body=payload, content_type="application/json")

    engine = await make_engine(await serve(handler))
    with pytest.raises(UpstreamError, match="returned garbage"):
        await engine.chat(CHAT_BODY)


async def test_upstream_down_fails_fast_naming_the_backend(make_engine: MakeEngine) -> None:
    engine = await make_engine(f"http://127.0.0.1:{free_port()}/v1")
    started = time.perf_counter()
    with pytest.raises(UpstreamError, match="cannot connect to backend vllm-a") as info:
        await engine.chat(CHAT_BODY)
    # Refused at once, not after the 5 s connect timeout (loose bound: shared machines).
    assert time.perf_counter() - started < 4.0
    assert "无法连接" in info.value.message
    assert not isinstance(info.value, UpstreamTimeout)


async def test_upstream_slower_than_timeout_is_an_upstream_timeout(
    fake: FakeUpstream, make_engine: MakeEngine
) -> None:
    fake.state.delay = 10  # seconds before it answers
    engine = await make_engine(fake.base_url, timeout=0.2)
    started = time.perf_counter()
    with pytest.raises(UpstreamTimeout, match=r"sent nothing for 0\.2s"):
        await engine.chat(CHAT_BODY)
    assert time.perf_counter() - started < 8.0  # the 0.2 s timeout, not the 10 s delay


@pytest.mark.skipif(sys.platform != "linux", reason="relies on Linux dropping SYNs on overflow")
async def test_connect_timeout_when_upstream_never_accepts(make_engine: MakeEngine) -> None:
    listener = socket.socket()
    listener.bind(("127.0.0.1", 0))
    listener.listen(0)
    port = listener.getsockname()[1]
    fillers = [socket.socket() for _ in range(3)]  # fill the accept queue; later SYNs drop
    try:
        for filler in fillers:
            filler.setblocking(False)
            with contextlib.suppress(BlockingIOError):
                filler.connect(("127.0.0.1", port))
        engine = await make_engine(f"http://127.0.0.1:{port}/v1", connect_timeout=0.2)
        with pytest.raises(UpstreamTimeout, match=r"timed out after 0\.2s"):
            await engine.chat(CHAT_BODY)
    finally:
        for filler in fillers:
            filler.close()
        listener.close()


async def test_calling_before_start_is_a_programming_error() -> None:
    engine = OpenAIHTTPEngine("x", BackendConfig(base_url="http://127.0.0.1:1/v1"), environ={})
    with pytest.raises(RuntimeError, match="before start"):
        await engine.chat(CHAT_BODY)


# ---------------------------------------------------------------- streaming


async def test_stream_yields_each_chunk_before_the_next_is_sent(
    fake: FakeUpstream, make_engine: MakeEngine
) -> None:
    fake.state.deltas = ["你", "好"]
    fake.state.pause_after = 1  # only the test can release chunk 2, after chunk 1 arrived
    engine = await make_engine(fake.base_url)
    stream = engine.stream_chat(CHAT_BODY)
    first = await asyncio.wait_for(anext(stream), 2)  # a buffering client would hang here
    fake.state.release.set()
    rest = await asyncio.wait_for(collect(stream), 2)
    assert [first, *rest] == fake.state.sent  # each chunk as the upstream sent it
    assert [c["choices"][0]["delta"]["content"] for c in [first, *rest]] == ["你", "好"]
    assert [b.get("stream") for b in fake.state.bodies] == [True]


async def test_stream_parses_events_split_byte_by_byte(
    serve_raw: ServeRaw, make_engine: MakeEngine
) -> None:
    body = (
        b": ping\r\n\r\n"
        + sse(chunk("合")).replace(b"\n", b"\r\n")
        + b"event: message\ndata: "
        + orjson.dumps(chunk("适"))
        + b"\n\n"
        + b"data: [DONE]\r\n\r\n"
    )

    async def script(writer: asyncio.StreamWriter) -> None:
        writer.write(SSE_HEAD)
        for i in range(len(body)):
            writer.write(body[i : i + 1])
            await writer.drain()
            await asyncio.sleep(0)

    engine = await make_engine(await serve_raw(script))
    assert await collect(engine.stream_chat(CHAT_BODY)) == [chunk("合"), chunk("适")]


async def test_stream_handles_many_events_in_one_write_and_stops_at_done(
    serve_raw: ServeRaw, make_engine: MakeEngine
) -> None:
    async def script(writer: asyncio.StreamWriter) -> None:
        events = b"".join(sse(chunk(str(i))) for i in range(50))
        # Anything after [DONE] must be ignored, not parsed.
        writer.write(SSE_HEAD + b": keep-alive\n\n" + events + b"data: [DONE]\n\nnot sse at all\n")
        await writer.drain()

    engine = await make_engine(await serve_raw(script))
    chunks = await collect(engine.stream_completion({"model": MODEL, "prompt": "x"}))
    assert chunks == [chunk(str(i)) for i in range(50)]


async def test_stream_status_error_is_raised_before_any_chunk(
    fake: FakeUpstream, make_engine: MakeEngine
) -> None:
    fake.state.mode, fake.state.error_message = "404", "model 'x' not found"
    engine = await make_engine(fake.base_url)
    with pytest.raises(UpstreamRejected, match="model 'x' not found") as info:
        await anext(engine.stream_chat(CHAT_BODY))
    assert info.value.status_code == 404


async def test_stream_error_event_raises_with_its_message(
    fake: FakeUpstream, make_engine: MakeEngine
) -> None:
    fake.state.deltas = ["a"]
    fake.state.mode, fake.state.error_message = "error-event", "CUDA out of memory"
    engine = await make_engine(fake.base_url)
    stream = engine.stream_chat(CHAT_BODY)
    assert await anext(stream) == fake.state.sent[0]  # chunk "a", then the error event
    with pytest.raises(UpstreamError, match="CUDA out of memory"):
        await anext(stream)


@pytest.mark.parametrize("line", [b"data: not json\n\n", b'{"id": "ndjson"}\n', b"data: [1]\n\n"])
async def test_stream_garbage_is_an_upstream_error(
    serve: Serve, make_engine: MakeEngine, line: bytes
) -> None:
    async def handler(request: web.Request) -> web.StreamResponse:
        resp = await sse_response(request)
        await resp.write(line + b"data: [DONE]\n\n")
        return resp

    engine = await make_engine(await serve(handler))
    with pytest.raises(UpstreamError, match="returned garbage"):
        await collect(engine.stream_chat(CHAT_BODY))


async def test_stream_ending_without_done_is_an_upstream_error(
    serve: Serve, make_engine: MakeEngine
) -> None:
    async def handler(request: web.Request) -> web.StreamResponse:
        resp = await sse_response(request)
        await resp.write(sse(chunk("a")))
        return resp  # a clean end of the HTTP body, but no [DONE]

    engine = await make_engine(await serve(handler))
    stream = engine.stream_chat(CHAT_BODY)
    assert await anext(stream) == chunk("a")
    with pytest.raises(UpstreamError, match="closed the stream early"):
        await anext(stream)


async def test_stream_cut_mid_chunk_is_an_upstream_error(
    serve_raw: ServeRaw, make_engine: MakeEngine
) -> None:
    async def script(writer: asyncio.StreamWriter) -> None:
        head = b"HTTP/1.1 200 OK\r\nContent-Type: text/event-stream\r\n"
        event = sse(chunk("a"))
        # Chunked body that promises 100 more bytes, then the socket closes.
        writer.write(head + b"Transfer-Encoding: chunked\r\n\r\n")
        writer.write(b"%x\r\n%s\r\n" % (len(event), event) + b"64\r\ndata: {")
        await writer.drain()

    engine = await make_engine(await serve_raw(script))
    stream = engine.stream_chat(CHAT_BODY)
    assert await anext(stream) == chunk("a")
    with pytest.raises(UpstreamError, match="vllm-a"):
        await anext(stream)


async def test_stream_silent_upstream_times_out_between_chunks(
    fake: FakeUpstream, make_engine: MakeEngine
) -> None:
    fake.state.deltas = ["a", "b"]
    fake.state.pause_after = 1  # silent after chunk "a" until the test ends
    engine = await make_engine(fake.base_url, timeout=0.2)
    stream = engine.stream_chat(CHAT_BODY)
    assert await anext(stream) == fake.state.sent[0]
    with pytest.raises(UpstreamTimeout):
        await asyncio.wait_for(anext(stream), 2)


async def test_closing_the_stream_early_disconnects_the_upstream(
    fake: FakeUpstream, make_engine: MakeEngine
) -> None:
    fake.state.deltas = ["a", "b"]
    fake.state.pause_after = 1  # "still generating" after chunk "a"
    engine = await make_engine(fake.base_url)
    stream = engine.stream_chat(CHAT_BODY)
    assert await anext(stream) == fake.state.sent[0]
    await stream.aclose()  # what the gateway does when its client disconnects
    await wait_until_async(
        lambda: fake.state.disconnects == 1,
        timeout=2,
        message="the upstream never saw the connection close",
    )
