"""The fake OpenAI-compatible upstream of every test: a real HTTP server on 127.0.0.1.

``FakeUpstream`` runs an aiohttp.web server in a background thread with its own event
loop, so sync tests (httpx, a gateway under uvicorn) and async tests (an
``OpenAIHTTPEngine`` on the test's loop) use it alike. It serves ``GET /v1/models``,
``POST /v1/chat/completions``, ``/v1/completions`` and ``/v1/embeddings``: JSON answers,
and SSE streams (``data: {...}`` … ``data: [DONE]``) with a usage chunk when
``stream_options.include_usage`` is set. Every answer reports ``usage`` as the test
configured it, so a test knows exactly what the gateway must meter.

How it answers and how it misbehaves is read from its ``UpstreamState`` at each request,
so a test turns the knobs while the server runs; the state also records what the server
received and sent. ``down()`` stops listening (connections are refused, open ones are
dropped) and ``up()`` listens on the same port again.
"""

from __future__ import annotations

import asyncio
import json
import threading
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from http import HTTPStatus
from types import TracebackType
from typing import Any, Self

from aiohttp import web
from multidict import CIMultiDict, CIMultiDictProxy

from tests.fakes.gate import Gate, opened

UPSTREAM_MODEL = "Qwen/Qwen3-8B"

JSON = dict[str, Any]

# mode: how the upstream answers (read at each request)
#   "ok"                normal answers
#   "400", "500", ...   that status with an OpenAI-style error JSON (on /v1/models too)
#   "garbage"           200 with an HTML body (on /v1/models too)
#   "hang"              no answer at all until ``release`` is set or the connection is
#                       closed by either side (on /v1/models too)
#   "cut"               streams: the connection drops right after the first chunk
#   "empty"             streams: no chunk at all, only ``data: [DONE]``
#   "error-event"       streams: an error event right after the first chunk
#   "slow-first-chunk"  streams: headers at once, the first chunk ``first_chunk_delay`` later
MODES = ("ok", "garbage", "hang", "cut", "empty", "error-event", "slow-first-chunk")
ERROR_MESSAGES = {400: "max_tokens is too large", 500: "Internal Server Error"}


@dataclass(frozen=True)
class Received:
    """One request as the upstream received it."""

    method: str
    path: str
    headers: Mapping[str, str]  # case-insensitive
    body: Any  # the parsed JSON body; None for a GET


@dataclass
class UpstreamState:
    """Knobs a test turns, and what the upstream saw and sent."""

    prompt_tokens: int = 5  # reported in every usage object
    completion_tokens: int = 3  # reported when the request sets no max_tokens
    chunks: int = 3  # content chunks per stream
    reset_after: int | None = None  # streams: drop the connection after this many chunks
    hold: bool = False  # wait for ``release`` before answering (before a stream's 1st chunk)
    delay: float = 0.0  # seconds to wait before answering (to keep requests in flight)
    release: threading.Event = field(default_factory=Gate)
    calls: int = 0  # generation requests received
    bodies: list[JSON] = field(default_factory=list)
    reply: str | None = None  # answer with this text (streams: in pieces of 2 characters)
    echo: bool = False  # answer with the last message's text, as the upstream received it
    # -- what the other fakes of the suite could do --------------------------------------
    mode: str = "ok"  # see MODES above; "400", "500" etc. answer with that status
    error_message: str | None = None  # of error answers and error events
    respond: Callable[[JSON], str] | None = None  # answer with the text computed from a body
    # chat answers: the choice's ``logprobs`` computed from a body (None: the choice has none)
    logprobs: Callable[[JSON], JSON | None] | None = None
    deltas: list[str] | None = None  # streams: exactly these content pieces
    # answer with these calls ({"name", "arguments"}) and finish_reason "tool_calls"; streams
    # send each call as OpenAI does: id and name first, then the arguments in two pieces
    tool_calls: list[JSON] | None = None
    pause_after: int | None = None  # streams: after this many chunks wait for ``release``
    chunk_delay: float = 0.0  # streams: seconds between two chunks
    first_chunk_delay: float = 1.0  # mode "slow-first-chunk": seconds before the 1st chunk
    usage_from_max_tokens: bool = True  # False: always report ``completion_tokens``
    model: str = UPSTREAM_MODEL  # listed by /v1/models; answers name the request's model
    requests: list[Received] = field(default_factory=list)  # every request, /v1/models too
    sent: list[JSON] = field(default_factory=list)  # every JSON answer and SSE event payload
    disconnects: int = 0  # requests whose connection closed before they were answered

    def answer(self, body: JSON) -> str | None:
        """The text to answer with, when a test set one (else the default replies)."""
        if self.respond is not None:
            return self.respond(body)
        if self.echo:
            messages = body.get("messages") or [{"content": body.get("prompt", "")}]
            return str(messages[-1].get("content", ""))
        return self.reply

    def usage(self, body: JSON) -> dict[str, int]:
        """What this upstream says a request cost."""
        asked = body.get("max_tokens") if self.usage_from_max_tokens else None
        completion = asked or self.completion_tokens
        total = self.prompt_tokens + completion
        return {
            "prompt_tokens": self.prompt_tokens,
            "completion_tokens": completion,
            "total_tokens": total,
        }

    async def wait_turn(self) -> None:
        """Delay or hold the current request as configured."""
        if self.hold:
            await opened(self.release)
        elif self.delay:
            await asyncio.sleep(self.delay)

    def pieces(self, body: JSON) -> list[str | None]:
        """A stream's content pieces (None: the default text ``字<index>``)."""
        if self.deltas is not None:
            return list(self.deltas)
        answer = self.answer(body)
        if answer is not None:
            return [answer[i : i + 2] for i in range(0, len(answer), 2)]
        return [None] * self.chunks

    def error_body(self, status: int) -> JSON:
        """The OpenAI-style error object of a ``status`` answer."""
        message = self.error_message or ERROR_MESSAGES.get(status, HTTPStatus(status).phrase)
        kind = "BadRequestError" if status < 500 else "InternalServerError"
        return {"error": {"message": message, "type": kind, "param": None, "code": status}}


class FakeUpstream:
    """The fake upstream server; use it as a context manager (or ``start``/``close``).

    ``base_url`` (ending in ``/v1``) is what a backend config takes.
    """

    def __init__(self, state: UpstreamState | None = None, *, name: str = "upstream") -> None:
        self.state = state if state is not None else UpstreamState()
        self.name = name
        self.port = 0
        self._ready = threading.Event()
        self._failure: BaseException | None = None
        self._thread: threading.Thread | None = None
        self._loop: asyncio.AbstractEventLoop | None = None
        self._stopping: asyncio.Event | None = None
        self._runner: web.AppRunner | None = None
        self._site: web.TCPSite | None = None

    @property
    def origin(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    @property
    def base_url(self) -> str:
        return self.origin + "/v1"

    # -- lifecycle (called from the test's thread) ---------------------------------------

    def start(self) -> Self:
        """Listen on a free loopback port; returns once connections are accepted."""
        self._thread = threading.Thread(
            target=lambda: asyncio.run(self._main()), name=f"fake-{self.name}", daemon=True
        )
        self._thread.start()
        if not self._ready.wait(30):
            raise RuntimeError(f"fake upstream {self.name} did not start")
        if self._failure is not None:
            raise RuntimeError(f"fake upstream {self.name} did not start") from self._failure
        return self

    def close(self) -> None:
        """Release held requests, close every connection and stop. Safe to call twice."""
        thread, self._thread = self._thread, None
        if thread is None:
            return
        self.state.release.set()
        if self._loop is not None and self._stopping is not None:
            self._loop.call_soon_threadsafe(self._stopping.set)
        thread.join(30)
        assert not thread.is_alive(), f"fake upstream {self.name} did not stop"

    def down(self) -> None:
        """Stop listening (new connections are refused) and drop every open connection,
        as a dead server would."""
        self._run(self._down())

    def up(self) -> None:
        """Listen again, on the same port."""
        self._run(self._listen())

    def __enter__(self) -> Self:
        return self.start()

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.close()

    def _run(self, coro: Any) -> None:
        assert self._loop is not None, "start() the fake upstream first"
        asyncio.run_coroutine_threadsafe(coro, self._loop).result(30)

    # -- the server's own thread -----------------------------------------------------------

    async def _main(self) -> None:
        self._loop = asyncio.get_running_loop()
        self._stopping = asyncio.Event()
        app = web.Application(middlewares=[self._observe])
        app.router.add_post("/v1/chat/completions", self._generate)
        app.router.add_post("/v1/completions", self._generate)
        app.router.add_post("/v1/embeddings", self._embeddings)
        app.router.add_post("/v1/rerank", self._rerank)
        app.router.add_get("/v1/models", self._models)
        # handler_cancellation: a held handler ends when its client gives up, as a real
        # server notices a disconnect and stops generating.
        self._runner = web.AppRunner(
            app, handler_cancellation=True, shutdown_timeout=0.2, access_log=None
        )
        try:
            await self._runner.setup()
            await self._listen()
        except Exception as exc:  # reported by start(), in the test's thread
            self._failure = exc
            self._ready.set()
            await self._runner.cleanup()
            return
        self._ready.set()
        try:
            await self._stopping.wait()
        finally:
            await self._runner.cleanup()

    async def _listen(self) -> None:
        assert self._runner is not None
        if self._site is not None:
            return
        self._site = web.TCPSite(self._runner, "127.0.0.1", self.port, reuse_address=True)
        await self._site.start()
        self.port = int(self._runner.addresses[-1][1])

    async def _down(self) -> None:
        assert self._runner is not None and self._runner.server is not None
        if self._site is not None:
            await self._site.stop()
            self._site = None
        for connection in self._runner.server.connections:
            connection.force_close()

    @web.middleware
    async def _observe(self, request: web.Request, handler: Any) -> web.StreamResponse:
        body = await request.json() if request.body_exists else None
        headers = CIMultiDictProxy(CIMultiDict(request.headers))
        self.state.requests.append(Received(request.method, request.path, headers, body))
        try:
            response: web.StreamResponse = await handler(request)
        except (asyncio.CancelledError, ConnectionResetError):
            self.state.disconnects += 1
            raise
        return response

    async def _misbehave(self) -> web.StreamResponse | None:
        """The answer of a failing mode, or None to answer normally."""
        mode = self.state.mode
        if mode == "hang":
            await opened(self.state.release)
        elif mode == "garbage":
            return web.Response(text="<html>nginx error</html>", content_type="text/html")
        elif mode.isdigit():
            status = int(mode)
            return self._json(self.state.error_body(status), status=status)
        else:
            assert mode in MODES, f"unknown fake upstream mode {mode!r}"
        return None

    def _json(self, payload: JSON, *, status: int = 200) -> web.Response:
        self.state.sent.append(payload)
        return web.json_response(payload, status=status, dumps=_dumps)

    async def _models(self, request: web.Request) -> web.StreamResponse:
        failure = await self._misbehave()
        if failure is not None:
            return failure
        return self._json({"object": "list", "data": [{"id": self.state.model, "object": "model"}]})

    async def _embeddings(self, request: web.Request) -> web.StreamResponse:
        state = self.state
        body = await request.json()
        state.calls += 1
        state.bodies.append(body)
        failure = await self._misbehave()
        if failure is not None:
            return failure
        await state.wait_turn()
        inputs = body.get("input")
        count = len(inputs) if isinstance(inputs, list) else 1
        data = [
            {"object": "embedding", "index": i, "embedding": [0.25, -0.5]} for i in range(count)
        ]
        tokens = state.prompt_tokens
        return self._json(
            {
                "object": "list",
                "model": body.get("model") or state.model,
                "data": data,
                "usage": {"prompt_tokens": tokens, "total_tokens": tokens},
            }
        )

    async def _rerank(self, request: web.Request) -> web.StreamResponse:
        """A reranker that ranks documents by length, longest first."""
        state = self.state
        body = await request.json()
        state.calls += 1
        state.bodies.append(body)
        failure = await self._misbehave()
        if failure is not None:
            return failure
        docs = body.get("documents") or []
        order = sorted(range(len(docs)), key=lambda i: -len(str(docs[i])))
        results = [
            {"index": i, "relevance_score": 1.0 / (rank + 1)} for rank, i in enumerate(order)
        ]
        tokens = state.prompt_tokens
        return self._json(
            {
                "model": body.get("model"),
                "results": results[: body.get("top_n") or None],
                "usage": {"total_tokens": tokens},
            }
        )

    async def _generate(self, request: web.Request) -> web.StreamResponse:
        state = self.state
        body = await request.json()
        state.calls += 1
        state.bodies.append(body)
        failure = await self._misbehave()
        if failure is not None:
            return failure
        if body.get("stream"):
            return await self._stream(request, body)
        await state.wait_turn()
        text = state.answer(body)
        if request.path.endswith("/completions") and "messages" not in body:
            choice: JSON = {"index": 0, "text": "好的" if text is None else text}
            kind = "text_completion"
        else:
            message = {"role": "assistant", "content": "好的" if text is None else text}
            if state.tool_calls:
                message = {"role": "assistant", "content": None, "tool_calls": _calls(state)}
            choice = {"index": 0, "message": message}
            logprobs = state.logprobs(body) if state.logprobs is not None else None
            if logprobs is not None:
                choice["logprobs"] = logprobs
            kind = "chat.completion"
        finish = "tool_calls" if state.tool_calls and kind == "chat.completion" else "stop"
        return self._json(
            {
                "id": "cmpl-up",
                "object": kind,
                "created": 1,
                "model": body.get("model") or state.model,
                "choices": [choice | {"finish_reason": finish}],
                "usage": state.usage(body),
            }
        )

    async def _stream(self, request: web.Request, body: JSON) -> web.StreamResponse:
        state = self.state
        resp = web.StreamResponse(headers={"Content-Type": "text/event-stream"})
        await resp.prepare(request)
        await state.wait_turn()
        mode = state.mode
        if mode == "slow-first-chunk":
            await asyncio.sleep(state.first_chunk_delay)
        model = body.get("model") or state.model
        pieces = [] if mode == "empty" else state.pieces(body)
        if state.tool_calls:
            pieces = []
            for delta in _call_deltas(state):
                await self._event(resp, _chunk(model, [{"index": 0, "delta": delta}]))
            finish = {"index": 0, "delta": {}, "finish_reason": "tool_calls"}
            await self._event(resp, _chunk(model, [finish]))
        for i, piece in enumerate(pieces):
            if i == state.reset_after:
                return _drop(request, resp)
            if i == state.pause_after:
                await opened(state.release)
            if i and state.chunk_delay:
                await asyncio.sleep(state.chunk_delay)
            delta = {"content": f"字{i}" if piece is None else piece}
            choice = {"index": 0, "delta": delta, "finish_reason": None}
            await self._event(resp, _chunk(model, [choice]))
            if mode == "cut":
                return _drop(request, resp)
            if mode == "error-event":
                await self._event(resp, state.error_body(500))
                break
        if (body.get("stream_options") or {}).get("include_usage"):
            await self._event(resp, _chunk(model, []) | {"usage": state.usage(body)})
        await resp.write(b"data: [DONE]\n\n")
        return resp

    async def _event(self, resp: web.StreamResponse, payload: JSON) -> None:
        self.state.sent.append(payload)
        await resp.write(b"data: " + _dumps(payload).encode() + b"\n\n")


def _calls(state: UpstreamState) -> list[JSON]:
    return [
        {"id": f"call_up{i}", "type": "function", "function": dict(call)}
        for i, call in enumerate(state.tool_calls or ())
    ]


def _call_deltas(state: UpstreamState) -> list[JSON]:
    deltas: list[JSON] = []
    for i, call in enumerate(_calls(state)):
        args = call["function"]["arguments"]
        head = {**call, "index": i, "function": {"name": call["function"]["name"], "arguments": ""}}
        deltas.append({"tool_calls": [head]})
        for piece in (args[: len(args) // 2], args[len(args) // 2 :]):
            deltas.append({"tool_calls": [{"index": i, "function": {"arguments": piece}}]})
    return deltas


def _chunk(model: str, choices: list[JSON]) -> JSON:
    return {
        "id": "chatcmpl-up",
        "object": "chat.completion.chunk",
        "created": 1,
        "model": model,
        "choices": choices,
    }


def _drop(request: web.Request, resp: web.StreamResponse) -> web.StreamResponse:
    """Close the connection mid-stream: the client sees the body end without its final
    chunk, as when the upstream process dies."""
    assert request.transport is not None
    request.transport.close()
    return resp


def _dumps(payload: Any) -> str:
    return json.dumps(payload, ensure_ascii=False)
