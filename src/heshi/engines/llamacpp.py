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
import contextlib
import logging
import secrets
import threading
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any

import aiohttp
import orjson

from heshi.config import LocalEngineConfig
from heshi.engines.base import JSON, ServedModel, asked_completion_tokens
from heshi.engines.llamacpp_params import check_files, server_params
from heshi.engines.llamacpp_requests import (
    apply_template,
    for_template,
    plain_chat,
    thought_of,
)
from heshi.engines.local_embed import EmbeddingCalls
from heshi.engines.local_streams import ThinkStream, ToolStream
from heshi.engines.local_tools import ToolCalling
from heshi.engines.local_unary import call_whole
from heshi.engines.local_worker import Handler, LocalStream
from heshi.engines.reasoning import OPEN as THINK_OPEN
from heshi.engines.reasoning import Thinking, soft_switch, split_text
from heshi.engines.toolcalls import (
    with_instructions,
)
from heshi.errors import (
    EngineError,
    HeshiError,
    InvalidRequest,
    ModelFileError,
)
from heshi.hub.gguf_info import require_gguf_file
from heshi.hub.store import ModelStore

log = logging.getLogger(__name__)
_COUNTER_CONNECTIONS = 2  # to llama-server's own listener, for counting prompt tokens


class LlamaCppEngine(ToolCalling, EmbeddingCalls):
    """An in-process llama.cpp server holding one GGUF model."""

    def __init__(
        self, name: str, model_path: Path, config: LocalEngineConfig, draft_path: Path | None = None
    ) -> None:
        self.name = "local"
        self.model_name = name
        self.model_path = model_path
        self.draft_path = draft_path  # speculative.type "draft": the draft model's GGUF
        self.config = config
        self._server: Any = None
        self._executor: ThreadPoolExecutor | None = None
        self._listener_key = secrets.token_urlsafe(32)
        self._counter: aiohttp.ClientSession | None = None
        self._counter_loop: asyncio.AbstractEventLoop | None = None
        self.thinking: Thinking | None = None  # known once started
        # generations in llama.cpp at once: one per slot (``local_worker.in_slot``)
        self.slots = threading.Semaphore(config.parallel)

    @classmethod
    def from_store(cls, store: ModelStore, config: LocalEngineConfig) -> LlamaCppEngine:
        """The engine for a ``models`` entry, its model (and draft model) found in the
        store; refuses a missing, non-GGUF or unpulled one with a clear message."""
        path = store.resolve(config.model)
        draft = config.speculative.draft_model
        if draft is None:
            return cls(config.name, path, config)
        try:
            draft_path = store.resolve(draft)
        except ModelFileError as exc:
            raise ModelFileError(f"speculative.draft_model: {exc.message}") from exc
        return cls(config.name, path, config, draft_path)

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
        if not self.config.vectors_only:
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
                await apply_template(
                    session, orjson.dumps(probe | {"chat_template_kwargs": {"enable_thinking": v}})
                )
                for v in (True, False)
            ]
        if on == off and THINK_OPEN not in on:
            return None
        return Thinking(opens_block=on.rstrip().endswith(THINK_OPEN), switchable=on != off)

    def _load(self) -> Any:
        import xllamacpp

        check_files(self.config, self.model_path, self.draft_path)
        params = server_params(
            self.config, self.model_path, self.model_name, self.draft_path, self._listener_key
        )
        return xllamacpp.Server(params)

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
            body = for_template(self._think(body)[0])
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
        payload = orjson.dumps(for_template(body))
        try:
            if asyncio.get_running_loop() is not self._counter_loop:
                async with self._counting_session() as session:
                    return await apply_template(session, payload)
            return await apply_template(self._listener(), payload)
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
                rendered = await apply_template(counter, orjson.dumps(body))
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

    async def _call_once(self, handler: Handler, body: JSON, *, charged: bool = True) -> JSON:
        """One whole answer, generated as a stream so that it stops when its client
        leaves (``heshi.engines.local_unary``); ``charged=False``: its tokens are the
        engine's overhead, not reported to the gateway's control."""
        self._check_budget(body)
        return await call_whole(handler, body, self._executor, self.slots, charged=charged)

    def _stream(self, handler: Handler, body: JSON) -> LocalStream:
        self._check_budget(body)
        # Every chunk then carries llama.cpp's running counts (prompt_n, predicted_n): what
        # a stream cost is known however it ends, tokens decoded after the client left too.
        payload = orjson.dumps(body | {"stream": True, "timings_per_token": True})
        return LocalStream(handler, payload, self._executor, self.slots)

    async def chat(self, body: JSON) -> JSON:
        """Non-streaming chat completion."""
        body, opened = self._think(body)
        tools = self._tools(body)
        if tools is not None:
            return await self._chat_with_tools(body, tools, opened)
        result = await self._call_once(
            self._require_server().handle_chat_completions,
            plain_chat(body, thought_of(body, opened)),
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
            self._require_server().handle_chat_completions,
            plain_chat(body, thought_of(body, opened)),
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

    async def completion(self, body: JSON) -> JSON:
        """Non-streaming text completion."""
        return await self._call_once(self._require_server().handle_completions, body)

    def stream_completion(self, body: JSON) -> LocalStream:
        """Streaming text completion; closing the iterator cancels generation."""
        return self._stream(self._require_server().handle_completions, body)


def _drop(server: Any) -> None:
    # Deleting the last reference runs ~Server, which joins llama.cpp's loop thread.
    del server
