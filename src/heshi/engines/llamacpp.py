"""The embedded engine: llama.cpp's own server loop, in process, through ``xllamacpp``.

Why this shape: xllamacpp runs llama-server's slot scheduler (continuous batching over
``parallel`` slots, prompt-prefix reuse per slot) on its own thread and hands us each
SSE chunk through a callback, with the GIL released while it computes. Each request
blocks one worker thread in ``handle_*``; chunks cross to the event loop through a
queue. Returning ``True`` from the callback makes llama.cpp drop the task, which frees
the slot — that is how a client disconnect stops generation.

llama.cpp itself holds back incomplete UTF-8 sequences before it emits text, so chunk
strings are always whole characters (tests assert this with a byte-level tiny model).
"""

from __future__ import annotations

import asyncio
import collections
import contextlib
import functools
import logging
import secrets
import threading
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any

import aiohttp
import orjson

from heshi.config import LocalEngineConfig
from heshi.engines.base import JSON, ServedModel, asked_completion_tokens
from heshi.engines.reasoning import CLOSE as THINK_CLOSE
from heshi.engines.reasoning import OPEN as THINK_OPEN
from heshi.engines.reasoning import Kind, Thinking, ThinkSplitter, soft_switch, split_text
from heshi.engines.rerank import documents_text, from_llamacpp, rerank_by_embeddings
from heshi.engines.toolcalls import (
    Event,
    Thought,
    ToolCallParser,
    ToolRequest,
    chat_message,
    conversation_text,
    invented_values,
    json_grammar,
    prose_grammar,
    with_instructions,
)
from heshi.errors import (
    CapabilityMissing,
    ContextLengthExceeded,
    EngineError,
    HeshiError,
    InvalidRequest,
    ModelFileError,
)
from heshi.hub.gguf_info import read_gguf_info, require_gguf_file

log = logging.getLogger(__name__)
_END = object()
_COUNTER_CONNECTIONS = 2  # to llama-server's own listener, for counting prompt tokens
Handler = Callable[[bytes, Callable[[bytes], bool]], None]


def _error_from(payload: JSON) -> HeshiError:
    """Turn llama.cpp's error JSON into our typed error."""
    err = payload.get("error", payload)
    if not isinstance(err, dict):
        return EngineError(f"llama.cpp error: {err}")
    message = str(err.get("message", "unknown llama.cpp error"))
    if err.get("type") == "exceed_context_size_error":
        return ContextLengthExceeded(
            prompt_tokens=int(err.get("n_prompt_tokens", 0)),
            max_tokens=None,
            context=int(err.get("n_ctx", 0)),
        )
    if int(err.get("code", 500)) == 400 or err.get("type") == "invalid_request_error":
        return InvalidRequest(f"llama.cpp: {message}")
    return EngineError(f"llama.cpp: {message}")


def _message_of(payload: Any) -> str:
    err = payload.get("error", payload) if isinstance(payload, dict) else payload
    return str(err.get("message", err)) if isinstance(err, dict) else str(err)


def _is_error(payload: JSON) -> bool:
    return "error" in payload or ("code" in payload and "message" in payload)


class LlamaCppEngine:
    """An in-process llama.cpp server holding one GGUF model."""

    def __init__(self, name: str, model_path: Path, config: LocalEngineConfig) -> None:
        self.name = "local"
        self.model_name = name
        self.model_path = model_path
        self.config = config
        self._server: Any = None
        self._executor: ThreadPoolExecutor | None = None
        self._listener_key = secrets.token_urlsafe(32)
        self._counter: aiohttp.ClientSession | None = None
        self._counter_loop: asyncio.AbstractEventLoop | None = None
        self.thinking: Thinking | None = None  # known once started

    def served_models(self) -> list[ServedModel]:
        """The one model this engine holds."""
        return [
            ServedModel(
                name=self.model_name,
                context_length=self.config.ctx,
                can_embed=self.config.embeddings,
                owned_by="heshi-local",
                meta={
                    "kind": (
                        "rerank"
                        if self.config.pooling == "rank"
                        else "embed"
                        if self.config.embeddings
                        else "chat"
                    ),
                    "path": str(self.model_path),
                    "parallel": self.config.parallel,
                    "thinking": self.thinking is not None,
                },
            )
        ]

    async def start(self) -> None:
        """Load the model and start llama.cpp's slot loop (seconds for 1 GB). Idempotent;
        the event loop of the latest call is the one this engine serves in."""
        self._counter_loop = asyncio.get_running_loop()
        if self._server is not None:
            return
        require_gguf_file(self.model_path)
        self._executor = ThreadPoolExecutor(
            max_workers=self.config.executor_threads, thread_name_prefix="heshi-llama"
        )
        try:
            self._server = await asyncio.to_thread(self._load)
        except HeshiError:
            raise
        except Exception as exc:
            raise ModelFileError(
                f"llama.cpp 无法加载模型 / llama.cpp could not load {self.model_path}: {exc}"
            ) from exc
        if not (self.config.embeddings or self.config.pooling == "rank"):
            try:
                self.thinking = await self._probe_thinking()
            except (HeshiError, aiohttp.ClientError, OSError, KeyError, ValueError) as exc:
                # a model whose template cannot render a chat is served all the same
                log.warning(
                    "无法读取对话模板 / cannot read %s's chat template: %s", self.model_name, exc
                )

    async def _probe_thinking(self) -> Thinking | None:
        """Whether the model thinks before it answers, read off its chat template: it can
        switch thinking (the prompt differs with ``enable_thinking``) or it opens a
        ``<think>`` block itself. None for a model that does not think."""
        probe: JSON = {"messages": [{"role": "user", "content": "你好"}]}
        # A session of its own: start() may run in a loop other than the serving one.
        async with self._counting_session() as session:
            on, off = [
                await _apply_template(
                    session, orjson.dumps(probe | {"chat_template_kwargs": {"enable_thinking": v}})
                )
                for v in (True, False)
            ]
        if on == off and THINK_OPEN not in on:
            return None
        return Thinking(opens_block=on.rstrip().endswith(THINK_OPEN), switchable=on != off)

    def _load(self) -> Any:
        import xllamacpp

        cfg = self.config
        params = xllamacpp.CommonParams()
        params.model.path = str(self.model_path)
        params.model_alias = {self.model_name}
        params.n_parallel = cfg.parallel
        # Each slot gets the full per-request context; the KV pool holds all of them.
        params.kv_unified = False
        params.n_ctx = cfg.ctx * cfg.parallel
        params.n_batch = cfg.batch
        params.cont_batching = True
        params.cache_prompt = cfg.cache_prompt
        params.cpuparams.n_threads = cfg.threads or -1
        params.cpuparams_batch.n_threads = cfg.threads or -1
        params.use_jinja = True
        pooling = self._pooling()
        if pooling is not None:
            params.pooling_type = xllamacpp.llama_pooling_type(pooling)
        # Heshi separates a thinking model's <think> block itself (heshi.engines.reasoning),
        # the same way for every template and for tool-call answers.
        params.reasoning_format = xllamacpp.common_reasoning_format.COMMON_REASONING_FORMAT_NONE
        params.embedding = cfg.embeddings or cfg.pooling == "rank"
        # xllamacpp also opens llama-server's own HTTP listener. Only this engine uses it
        # (its /apply-template and /tokenize count prompt tokens exactly): it is bound to
        # loopback and locked with a random key no one else knows. In-process calls
        # bypass that check.
        params.hostnames = ["127.0.0.1"]
        params.port = 0
        params.api_keys = [self._listener_key]
        params.endpoint_metrics = True
        return xllamacpp.Server(params)

    def _pooling(self) -> int | None:
        """The pooling type to ask llama.cpp for (None: the GGUF's own). A model loaded
        to embed whose GGUF names none (a chat model) pools by mean: llama.cpp's default
        then, "none", gives no sentence vector at all."""
        cfg = self.config
        if cfg.pooling is not None:
            return _POOLING[cfg.pooling]
        if not cfg.embeddings:
            return None
        info = read_gguf_info(self.model_path)
        return _POOLING["mean"] if info.pooling_type in (None, 0) else None

    def stats(self) -> dict[str, float]:
        """llama.cpp's own counters, e.g. ``requests_processing``, ``tokens_predicted_total``."""
        server = self._require_server()
        out: dict[str, float] = {}
        for line in str(server.handle_metrics()).splitlines():
            if line.startswith("llamacpp:"):
                key, _, value = line.partition(" ")
                with contextlib.suppress(ValueError):
                    out[key.removeprefix("llamacpp:")] = float(value)
        return out

    async def close(self) -> None:
        """Stop the slot loop and join its threads."""
        counter, self._counter = self._counter, None
        if counter is not None:
            await counter.close()
        server, self._server = self._server, None
        if server is not None:
            await asyncio.to_thread(_drop, server)
        if self._executor is not None:
            self._executor.shutdown(wait=False, cancel_futures=True)
            self._executor = None

    def _require_server(self) -> Any:
        if self._server is None:
            raise EngineError("本地引擎未启动 / the local engine is not running")
        return self._server

    def _check_budget(self, body: JSON) -> None:
        asked = asked_completion_tokens(body)
        if asked is not None and asked > self.config.ctx:
            raise InvalidRequest(
                f"max_tokens {asked} 超出模型上下文长度 {self.config.ctx} / "
                f"max_tokens {asked} exceeds the model's context of {self.config.ctx} tokens",
                param="max_tokens",
            )

    async def count_prompt_tokens(self, op: str, body: JSON) -> int | None:
        """The prompt's length in tokens exactly as this model will see it: the chat
        template applied (tools included), then tokenized. None when it cannot be counted
        (an embeddings body; the listener failed) — the caller then estimates."""
        if self._server is None or op not in {"chat", "completions"}:
            return None
        if op == "chat":
            body = _for_template(self._think(body)[0])
        if asyncio.get_running_loop() is not self._counter_loop:
            # Called from outside the serving loop (a script, a test): a session of its own.
            async with self._counting_session() as session:
                return await self._count(session, op, body)
        return await self._count(self._listener(), op, body)

    def _listener(self) -> aiohttp.ClientSession:
        if self._counter is None:
            self._counter = self._counting_session()
        return self._counter

    async def render_prompt(self, body: JSON) -> str:
        """A chat request's prompt as the model will read it: its chat template applied to
        the messages (and tools)."""
        self._require_server()
        payload = orjson.dumps(_for_template(body))
        try:
            if asyncio.get_running_loop() is not self._counter_loop:
                async with self._counting_session() as session:
                    return await _apply_template(session, payload)
            return await _apply_template(self._listener(), payload)
        except (aiohttp.ClientError, OSError, KeyError, TypeError, ValueError) as exc:
            raise EngineError(
                f"llama.cpp 无法套用对话模板 / llama.cpp could not apply the chat template: {exc}"
            ) from exc

    def _counting_session(self) -> aiohttp.ClientSession:
        # Two kept-alive connections: llama-server gives each open connection one of its
        # few HTTP threads and holds it for 5 s of idleness, so more connections than
        # threads make a burst of requests wait seconds for a thread (measured: 5-10 s).
        return aiohttp.ClientSession(
            base_url=str(self._server.listening_address),
            headers={"Authorization": f"Bearer {self._listener_key}"},
            timeout=aiohttp.ClientTimeout(total=30),
            connector=aiohttp.TCPConnector(limit=_COUNTER_CONNECTIONS),
        )

    async def _count(self, counter: aiohttp.ClientSession, op: str, body: JSON) -> int | None:
        try:
            if op == "chat":
                rendered = await _apply_template(counter, orjson.dumps(body))
                if body.get("tools") and body.get("tool_choice") != "none":
                    rendered = with_instructions(rendered, self.config.tool_instructions)
                prompts: list[Any] = [rendered]
            else:
                prompt = body.get("prompt")
                prompts = prompt if isinstance(prompt, list) else [prompt]
                if all(isinstance(p, int) for p in prompts):
                    return len(prompts)  # already token ids
            total = 0
            for text in prompts:
                if isinstance(text, list):  # one prompt given as token ids
                    total += len(text)
                    continue
                payload = {"content": text, "add_special": True, "parse_special": True}
                async with counter.post("/tokenize", data=orjson.dumps(payload)) as resp:
                    total += len(orjson.loads(await resp.read())["tokens"])
        except (aiohttp.ClientError, OSError, KeyError, TypeError, ValueError):
            return None
        return total

    def completion_cap(self, prompt_tokens: int, model: str | None = None) -> int:
        """The most a request with this prompt can generate: the rest of its context."""
        return self.config.ctx - prompt_tokens

    def default_completion(self, prompt_tokens: int, model: str | None = None) -> int:
        """What a request without ``max_tokens`` may generate: the rest of its context."""
        return self.config.ctx - prompt_tokens

    async def _call_once(self, handler: Handler, body: JSON) -> JSON:
        self._check_budget(body)
        result: list[bytes] = []

        def on_result(data: bytes) -> bool:
            result.append(data)
            return False

        loop = asyncio.get_running_loop()
        payload = orjson.dumps(body | {"stream": False})
        await loop.run_in_executor(self._executor, handler, payload, on_result)
        if not result:
            raise EngineError("llama.cpp 没有返回结果 / llama.cpp returned nothing")
        parsed = orjson.loads(result[0])
        if _is_error(parsed):
            raise _error_from(parsed)
        return dict(parsed)

    def _stream(self, handler: Handler, body: JSON) -> LocalStream:
        self._check_budget(body)
        # Every chunk then carries llama.cpp's running counts (prompt_n, predicted_n): what
        # a stream cost is known however it ends, tokens decoded after the client left too.
        payload = orjson.dumps(body | {"stream": True, "timings_per_token": True})
        return LocalStream(handler, payload, self._executor)

    async def chat(self, body: JSON) -> JSON:
        """Non-streaming chat completion."""
        body, opened = self._think(body)
        tools = self._tools(body)
        if tools is not None:
            return await self._chat_with_tools(body, tools, opened)
        result = await self._call_once(
            self._require_server().handle_chat_completions, _plain(body, _thought(body, opened))
        )
        if opened is not None:
            for choice in result.get("choices") or ():
                message = choice.get("message")
                if isinstance(message, dict) and isinstance(message.get("content"), str):
                    reasoning, message["content"] = split_text(message["content"], opened=opened)
                    if reasoning:
                        message["reasoning_content"] = reasoning
        return result

    def stream_chat(self, body: JSON) -> LocalStream | ToolStream | ThinkStream:
        """Streaming chat completion; closing the iterator cancels generation."""
        body, opened = self._think(body)
        tools = self._tools(body)
        if tools is not None:
            self._check_budget(body)
            return ToolStream(self, body, tools, opened)
        stream = self._stream(
            self._require_server().handle_chat_completions, _plain(body, _thought(body, opened))
        )
        return stream if opened is None else ThinkStream(stream, opened)

    def _think(self, body: JSON) -> tuple[JSON, bool | None]:
        """For a thinking model: the body with ``enable_thinking`` said explicitly (the
        request's ``chat_template_kwargs``, else Qwen's ``/think`` / ``/no_think`` in the
        latest user turn that has one, else ``engine.thinking``), and whether the prompt
        leaves a think block open. ``(body, None)`` for other models."""
        if self.thinking is None:
            return body, None
        kwargs = body.get("chat_template_kwargs")
        kwargs = dict(kwargs) if isinstance(kwargs, dict) else {}
        enabled = kwargs.get("enable_thinking")
        if not isinstance(enabled, bool):
            switch = soft_switch(body.get("messages"))
            enabled = self.config.thinking if switch is None else switch
            kwargs["enable_thinking"] = enabled
            body = body | {"chat_template_kwargs": kwargs}
        return body, enabled and self.thinking.opens_block

    def _tools(self, body: JSON) -> ToolRequest | None:
        tools = ToolRequest.of(body)
        if tools is not None:
            for name in ("grammar", "response_format"):
                if body.get(name) is not None:
                    raise InvalidRequest(
                        f"本地引擎不支持 {name} 与 tools 同用 / the embedded engine cannot "
                        f"combine {name} with tools",
                        param=name,
                    )
        return tools

    async def tool_completion_body(
        self, body: JSON, tools: ToolRequest, opened: bool | None, *, prose_only: bool = False
    ) -> tuple[JSON, bool | None]:
        """The text completion that answers a chat request with tools, and whether its
        answer begins inside a think block (see :meth:`_think`). ``prose_only``: the
        answer may not be a call (the model's first answer made one up)."""
        prompt = with_instructions(await self.render_prompt(body), self.config.tool_instructions)
        out: JSON = {k: body[k] for k in _SAMPLING if body.get(k) is not None}
        asked = asked_completion_tokens(body)
        if asked is not None:
            out["max_tokens"] = asked
        gbnf = None if llguidance_built() else _json_schema_to_grammar
        thought = _thought(body, opened)
        if gbnf is not None and thought != "none":  # GBNF cannot say "a thought, then a call"
            if opened:
                prompt += "\n" + THINK_CLOSE + "\n\n"  # so the block is closed, empty
                opened = False
            thought = "none"
        out.update(model=self.model_name, prompt=prompt)
        grammar = (
            prose_grammar(thought, gbnf=gbnf is not None)
            if prose_only
            else tools.grammar(constrain_auto=self.config.tool_grammar, gbnf=gbnf, thought=thought)
        )
        if grammar is not None:
            out["grammar"] = grammar
        return out, opened

    async def _chat_with_tools(self, body: JSON, tools: ToolRequest, opened: bool | None) -> JSON:
        first = opened
        request, opened = await self.tool_completion_body(body, tools, first)
        completion = await self._call_once(self._require_server().handle_completions, request)
        message, called, reasoning = _read_tool_answer(completion, tools, opened)
        if called and self._invented(body, message.get("tool_calls") or []):
            # a call whose order/account/phone number the conversation never gave: ask
            # again for an answer in words (which may ask the user for the number)
            spent = completion.get("usage")
            request, opened = await self.tool_completion_body(body, tools, first, prose_only=True)
            completion = await self._call_once(self._require_server().handle_completions, request)
            completion["usage"] = _added(spent, completion.get("usage"))
            # words only: a call written into this answer's prose is not read as one
            message, called, reasoning = _read_tool_answer(completion, tools, opened, calls=False)
        choice = completion["choices"][0]
        if reasoning:
            message["reasoning_content"] = reasoning
        finish = choice.get("finish_reason")
        result: JSON = {
            "id": completion.get("id"),
            "object": "chat.completion",
            "created": completion.get("created"),
            "model": completion.get("model", self.model_name),
            "choices": [
                {
                    "index": 0,
                    "message": message,
                    "finish_reason": "tool_calls" if called and finish == "stop" else finish,
                }
            ],
        }
        for name in ("usage", "timings"):
            if name in completion:
                result[name] = completion[name]
        return result

    def _invented(self, body: JSON, calls: list[JSON]) -> bool:
        """Whether any call carries an identifier the conversation never gave (and the
        engine is told to check: ``engine.tool_call_grounding``)."""
        if not self.config.tool_call_grounding or body.get("tool_choice") not in (None, "auto"):
            return False
        said = conversation_text(body)
        return any(invented_values(c["function"]["arguments"], said) for c in calls)

    async def completion(self, body: JSON) -> JSON:
        """Non-streaming text completion."""
        return await self._call_once(self._require_server().handle_completions, body)

    def stream_completion(self, body: JSON) -> LocalStream:
        """Streaming text completion; closing the iterator cancels generation."""
        return self._stream(self._require_server().handle_completions, body)

    async def embeddings(self, body: JSON) -> JSON:
        """Embeddings, when the engine was started with ``embeddings: true``."""
        if not self.config.embeddings or self.config.pooling == "rank":
            raise CapabilityMissing(
                f"模型 '{self.model_name}' 未启用向量嵌入 / model '{self.model_name}' "
                "cannot embed: it was started for generation (load it with embeddings: true "
                "— a models: entry of heshi.yaml, or heshi models load --embeddings — to "
                "serve it as an embedding model)"
                if self.config.pooling != "rank"
                else f"模型 '{self.model_name}' 是重排序模型 / model '{self.model_name}' is a "
                "reranker: use /v1/rerank",
                param="model",
            )
        server = self._require_server()
        loop = asyncio.get_running_loop()
        raw = await loop.run_in_executor(
            self._executor, server.handle_embeddings, orjson.dumps(body)
        )
        parsed = orjson.loads(raw)
        if _is_error(parsed):
            raise _error_from(parsed)
        return dict(parsed)

    async def rerank(self, body: JSON) -> JSON:
        """``/v1/rerank``: a reranker (``pooling: rank``) scores the pairs itself; an
        embedding model ranks by cosine similarity (:mod:`heshi.engines.rerank`)."""
        if self.config.pooling != "rank":
            if not self.config.embeddings:
                raise CapabilityMissing(
                    f"模型 '{self.model_name}' 不能重排序（需要向量或重排序模型）/ model "
                    f"'{self.model_name}' cannot rerank: load an embedding model "
                    "(embeddings: true) or a reranker (pooling: rank)",
                    param="model",
                )
            return await rerank_by_embeddings(self.embeddings, body)
        server = self._require_server()
        payload = {"query": body["query"], "documents": documents_text(body)}
        loop = asyncio.get_running_loop()
        raw = await loop.run_in_executor(
            self._executor, server.handle_rerank, orjson.dumps(payload)
        )
        parsed = orjson.loads(raw)
        if isinstance(parsed, dict) and _is_error(parsed):
            raise _error_from(parsed)
        return from_llamacpp(body, parsed)


# llama.cpp's pooling types by name (heshi.yaml's ``pooling``)
_POOLING = {"mean": 1, "cls": 2, "last": 3, "rank": 4}


# What a chat request's sampling becomes when it is answered as a text completion.
_SAMPLING = (
    "frequency_penalty", "logit_bias", "presence_penalty", "seed", "stop", "temperature",
    "top_p", "top_k", "min_p", "repeat_penalty", "cache_prompt", "stream_options",
)  # fmt: skip
_TOOL_FIELDS = ("tools", "tool_choice", "parallel_tool_calls")


def _for_template(body: JSON) -> JSON:
    """What llama.cpp's template step reads: the messages and tools (it warns about, then
    ignores, a ``tool_choice`` naming a function)."""
    if body.get("tool_choice") == "none":
        return _without_tools(body)
    if isinstance(body.get("tool_choice"), dict):
        return {k: v for k, v in body.items() if k != "tool_choice"}
    return body


def _without_tools(body: JSON) -> JSON:
    """A chat request whose tools are not to be called (``tool_choice: "none"``) is a plain
    chat: llama.cpp is not given them."""
    if any(k in body for k in _TOOL_FIELDS):
        return {k: v for k, v in body.items() if k not in _TOOL_FIELDS}
    return body


@functools.cache
def llguidance_built() -> bool:
    """Whether this llama.cpp was built with llguidance (the PyPI wheel is; a native build
    without Rust, ``make native-engine``, is not: its grammars are GBNF only)."""
    return _json_schema_to_grammar("{}").lstrip().startswith("%llguidance")


def _json_schema_to_grammar(schema: str) -> str:
    import xllamacpp

    return str(xllamacpp.json_schema_to_grammar(schema))


def _thought(body: JSON, opened: bool | None) -> Thought:
    """Where a thinking model's thought may go before a grammar-held answer: the prompt
    opened the block (``open``), or thinking is on and the model may open one."""
    if opened:
        return "open"
    kwargs = body.get("chat_template_kwargs") or {}
    return "optional" if opened is not None and kwargs.get("enable_thinking") else "none"


def _plain(body: JSON, thought: Thought = "none") -> JSON:
    """A chat request without tools to call, as llama.cpp's chat handler takes it: a JSON
    ``response_format`` becomes a grammar that writes the JSON compactly (after the
    thought of a thinking model)."""
    body = _without_tools(body)
    fmt = body.get("response_format")
    kind = fmt.get("type") if isinstance(fmt, dict) else None
    if kind not in ("json_object", "json_schema") or body.get("grammar") is not None:
        return body
    if not llguidance_built():
        return body  # llama.cpp's own GBNF for the schema (its whitespace is bounded)
    assert isinstance(fmt, dict)
    described = fmt.get("json_schema")
    schema = fmt.get("schema")
    if isinstance(described, dict):
        schema = described.get("schema", schema)
    if not isinstance(schema, dict):
        schema = {"type": "object"}
    rest = {k: v for k, v in body.items() if k != "response_format"}
    return rest | {"grammar": json_grammar(schema, thought)}


async def _apply_template(session: aiohttp.ClientSession, payload: bytes) -> str:
    async with session.post("/apply-template", data=payload) as resp:
        templated = orjson.loads(await resp.read())
    if resp.status == 400:
        raise InvalidRequest(f"llama.cpp: {_message_of(templated)}")
    return str(templated["prompt"])


def _drop(server: Any) -> None:
    # Deleting the last reference runs ~Server, which joins llama.cpp's loop thread.
    del server


def _is_finish(chunk: JSON) -> bool:
    return any(c.get("finish_reason") for c in chunk.get("choices") or ()) or bool(
        chunk.get("usage")
    )


def _read_tool_answer(
    completion: JSON, tools: ToolRequest, opened: bool | None, *, calls: bool = True
) -> tuple[JSON, bool, str]:
    """The assistant message a tool-call completion holds, whether it calls, its thought
    (``calls=False``: an answer that may not call, read as prose whatever it holds)."""
    text = completion["choices"][0].get("text") or ""
    reasoning = ""
    if opened is not None:
        reasoning, text = split_text(text, opened=opened)
    message, called = chat_message(text, ToolCallParser(tools.names if calls else frozenset()))
    return message, called, reasoning


def _added(a: JSON | None, b: JSON | None) -> JSON | None:
    """Two generations' usage, summed (both were computed, both are paid for)."""
    if not a or not b:
        return b or a
    keys = ("prompt_tokens", "completion_tokens", "total_tokens")
    return {**b, **{k: int(a.get(k) or 0) + int(b.get(k) or 0) for k in keys}}


def _usage_of(timings: JSON) -> JSON:
    prompt = int(timings.get("prompt_n", 0)) + int(timings.get("cache_n", 0))
    return {"prompt_tokens": prompt, "completion_tokens": int(timings.get("predicted_n", 0))}


class LocalStream:
    """One streamed generation on llama.cpp's slot loop (see the module docstring).

    The request runs on a worker thread that hands each chunk to the event loop through a
    queue. ``abort()`` (or ``aclose()``) makes llama.cpp drop the task at its next chunk,
    which frees the slot; ``aclose()`` also waits for the worker to return, so ``usage``
    then counts every token the engine decoded — those no one read included.
    """

    def __init__(self, handler: Handler, payload: bytes, executor: Any) -> None:
        self.usage: JSON | None = None
        self._queue: asyncio.Queue[object] = asyncio.Queue()
        self._cancelled = threading.Event()
        self._last_timings: bytes | None = None  # the newest chunk that carried counts
        self._done = False
        loop = asyncio.get_running_loop()

        def on_chunk(data: bytes) -> bool:
            if b'"timings"' in data:
                self._last_timings = data  # a reference swap: safe from this thread
            if self._cancelled.is_set():
                return True  # tells llama.cpp to drop the task and free the slot
            loop.call_soon_threadsafe(self._queue.put_nowait, data)
            return False

        def run() -> None:
            try:
                handler(payload, on_chunk)
            except Exception as exc:
                loop.call_soon_threadsafe(self._queue.put_nowait, exc)
            finally:
                loop.call_soon_threadsafe(self._queue.put_nowait, _END)

        self._job = loop.run_in_executor(executor, run)

    def __aiter__(self) -> LocalStream:
        return self

    async def __anext__(self) -> JSON:
        if self._done:
            raise StopAsyncIteration
        item = await self._queue.get()
        if item is _END:
            self._done = True
            self._count()
            raise StopAsyncIteration
        if isinstance(item, Exception):
            raise EngineError(f"llama.cpp: {item}") from item
        assert isinstance(item, bytes)
        chunk: JSON = orjson.loads(item)
        if _is_error(chunk):
            raise _error_from(chunk)
        timings = chunk.get("timings")
        if isinstance(timings, dict):
            self.usage = _usage_of(timings)
            if "usage" not in chunk:
                del chunk["timings"]  # llama.cpp sends them only at the end unless asked
        return chunk

    def abort(self) -> None:
        """Stop generating at the next token; a pending ``__anext__`` ends at once."""
        if not self._cancelled.is_set():
            self._cancelled.set()
            self._queue.put_nowait(_END)

    async def aclose(self) -> None:
        """Stop generating and wait for the worker thread, then count what it decoded."""
        self.abort()
        self._done = True
        if not self._job.done():
            with contextlib.suppress(Exception):
                await asyncio.shield(self._job)
        self._count()

    def _count(self) -> None:
        data = self._last_timings
        if data is None:
            return
        with contextlib.suppress(ValueError):
            timings = orjson.loads(data).get("timings")
            if isinstance(timings, dict):
                self.usage = _usage_of(timings)


class ToolStream:
    """A streamed chat answer with tools: the rendered prompt completed as text (see
    :mod:`heshi.engines.toolcalls`), read back as ``chat.completion.chunk`` deltas — prose
    as ``content``, each call as one ``tool_calls`` delta once its JSON is complete — and a
    last ``finish_reason`` of ``tool_calls`` when the model called any."""

    def __init__(
        self, engine: LlamaCppEngine, body: JSON, tools: ToolRequest, opened: bool | None
    ) -> None:
        self._engine = engine
        self._body = body
        self._tools = tools
        self._parser = ToolCallParser(tools.names)
        self._opened = opened
        self._thoughts = None if opened is None else ThinkSplitter(opened=opened)
        self._inner: LocalStream | None = None
        self._out: collections.deque[JSON] = collections.deque()
        self._aborted = False
        self._ended = False
        self._sent = 0  # calls sent so far: the next one's index
        self._said = False  # prose sent: the answer can no longer be started again
        self._retry = False  # the first answer made a call up: answer again, in words
        self._prose_only = False
        self._spent: JSON | None = None  # usage of an answer given up
        self._base: JSON = {"object": "chat.completion.chunk", "model": engine.model_name}

    @property
    def usage(self) -> JSON | None:
        now = self._inner.usage if self._inner is not None else None
        return _added(self._spent, now) if self._spent else now

    def __aiter__(self) -> ToolStream:
        return self

    async def __anext__(self) -> JSON:
        if self._retry and not self._aborted and self._inner is not None:
            await self._inner.aclose()
            self._spent = _added(self._spent, self._inner.usage)
            self._inner, self._retry, self._prose_only = None, False, True
            self._parser = ToolCallParser(frozenset())  # the second answer is words only
            self._out = collections.deque(c for c in self._out if not _is_finish(c))
            self._ended = False
        if self._inner is None and not self._aborted:
            body, opened = await self._engine.tool_completion_body(
                self._body, self._tools, self._opened, prose_only=self._prose_only
            )
            if self._thoughts is not None:
                self._thoughts = ThinkSplitter(opened=bool(opened))
            if self._aborted:
                raise StopAsyncIteration
            server = self._engine._require_server()
            self._inner = self._engine._stream(server.handle_completions, body)
        while not self._out or self._retry:
            if self._retry:
                return await self.__anext__()
            if self._ended or self._inner is None:
                raise StopAsyncIteration
            try:
                chunk = await self._inner.__anext__()
            except StopAsyncIteration:
                self._ended = True
                continue
            self._translate(chunk)
        return self._out.popleft()

    def _translate(self, chunk: JSON) -> None:
        if "id" not in self._base:
            self._base.update(id=chunk.get("id"), created=chunk.get("created"))
            self._emit({"role": "assistant", "content": None})
        for choice in chunk.get("choices") or ():
            self._text(choice.get("text") or "", final=False)
            finish = choice.get("finish_reason")
            if finish is not None:
                self._text("", final=True)
                if finish == "stop" and self._parser.calls:
                    finish = "tool_calls"
                self._emit({}, finish)
        if chunk.get("usage"):
            extra: JSON = {k: chunk[k] for k in ("usage", "timings") if k in chunk}
            self._out.append({**self._base, "choices": [], **extra})

    def _text(self, text: str, *, final: bool) -> None:
        """Generated text: thought (a thinking model's) straight out, the answer through
        the tool-call parser."""
        pieces: list[tuple[Kind, str]] = [("content", text)]
        if self._thoughts is not None:
            pieces = self._thoughts.feed(text) + (self._thoughts.finish() if final else [])
        for kind, piece in pieces:
            if kind == "reasoning":
                self._emit({"reasoning_content": piece})
            else:
                self._events(self._parser.feed(piece))
        if final:
            self._events(self._parser.finish())

    def _events(self, events: list[Event]) -> None:
        for event in events:
            if self._retry:
                return
            if event.call is not None:
                if (
                    not self._sent
                    and not self._said
                    and self._engine._invented(self._body, [event.call.as_json()])
                ):
                    self._retry = True  # nothing of this answer has been sent: start again
                    return
                self._emit({"tool_calls": [event.call.as_json(self._sent)]})
                self._sent += 1
            elif event.text:
                self._said = True
                self._emit({"content": event.text})

    def _emit(self, delta: JSON, finish: str | None = None) -> None:
        choice = {"index": 0, "delta": delta, "finish_reason": finish}
        self._out.append({**self._base, "choices": [choice]})

    def abort(self) -> None:
        self._aborted = True
        if self._inner is not None:
            self._inner.abort()

    async def aclose(self) -> None:
        self._aborted = True
        self._ended = True
        if self._inner is not None:
            await self._inner.aclose()


class ThinkStream:
    """A thinking model's chat stream with its thought moved from ``content`` deltas into
    ``reasoning_content`` deltas (:mod:`heshi.engines.reasoning`)."""

    def __init__(self, inner: LocalStream, opened: bool) -> None:
        self._inner = inner
        self._splitter = ThinkSplitter(opened=opened)
        self._out: collections.deque[JSON] = collections.deque()

    @property
    def usage(self) -> JSON | None:
        return self._inner.usage

    def __aiter__(self) -> ThinkStream:
        return self

    async def __anext__(self) -> JSON:
        while not self._out:
            chunk = await self._inner.__anext__()
            self._translate(chunk)
        return self._out.popleft()

    def _translate(self, chunk: JSON) -> None:
        choices = chunk.get("choices") or []
        delta = choices[0].get("delta") if choices else None
        if not isinstance(delta, dict):
            self._out.append(chunk)  # the usage chunk
            return
        choice = choices[0]
        text = delta.get("content")
        final = choice.get("finish_reason") is not None
        pieces = self._splitter.feed(text) if isinstance(text, str) else []
        if final:
            pieces += self._splitter.finish()
        rest = {k: v for k, v in delta.items() if k != "content"}
        if not pieces:
            # A text held back (it may be the start of a tag) is dropped for now; a chunk
            # with something else to say (the role, the finish) is kept.
            if text is None or rest or final:
                self._out.append(
                    {**chunk, "choices": [{**choice, "delta": delta if text is None else rest}]}
                )
            return
        for i, (kind, piece) in enumerate(pieces):
            field = "reasoning_content" if kind == "reasoning" else "content"
            out = {**choice, "delta": {**(rest if i == 0 else {}), field: piece}}
            if i < len(pieces) - 1:
                out["finish_reason"] = None
            self._out.append({**chunk, "choices": [out]})

    def abort(self) -> None:
        self._inner.abort()

    async def aclose(self) -> None:
        await self._inner.aclose()
