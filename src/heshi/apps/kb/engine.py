"""Knowledge bases as models: ``kb:NAME`` on ``/v1/chat/completions``.

The gateway treats a knowledge base like any other model, so its pipeline applies to
every question: admission and quotas, the guard on the question and the answer, the
ledger, the audit log and the AIGC label. The answer is written by ``kb.model`` (default:
the embedded chat model), called through the router; its token usage is the request's.

Beyond OpenAI's fields, an answer carries ``citations``, ``grounded``, ``handoff`` (and
``session_id`` when the request gave one) at the top level of the response — and, when
streamed, on the last chunk. Requests may send ``session_id`` to continue a conversation
the store keeps (else the client's ``messages`` are the conversation).
"""

from __future__ import annotations

import math
import secrets
import time
from collections.abc import AsyncIterator
from typing import Any

import httpx

from heshi.apps.kb.answer import Answer, KnowledgeBot
from heshi.apps.kb.index import E5Vectors, Vectors
from heshi.apps.kb.sessions import SessionStore
from heshi.apps.kb.store import KnowledgeBaseNotFound, KnowledgeBaseStore
from heshi.config import HeshiConfig
from heshi.engines.base import JSON, ServedModel
from heshi.errors import CapabilityMissing, ModelNotFound
from heshi.store.db import Database

PREFIX = "kb:"
TENANT_FIELD = "_heshi_tenant"  # set by the gateway after authentication, never by clients
_NAMES_TTL = 2.0  # seconds the list of bases is reused


class KnowledgeEngine:
    """The engine behind every ``kb:NAME`` model."""

    name = "kb"

    def __init__(self, config: HeshiConfig, db: Database, embed: Vectors | None = None) -> None:
        self.config = config
        self.store = KnowledgeBaseStore(db)
        self.sessions = SessionStore(db)
        self.embed = embed if embed is not None else E5Vectors()
        self.router: Any = None
        judge = self._judge if config.kb.doubt_limit < 1.0 else None
        self.bot = KnowledgeBot(
            self.store, self.sessions, self.embed, self._generate, config.kb, self._notify,
            judge,
        )  # fmt: skip
        self._names: tuple[float, list[Any]] = (0.0, [])

    def attach(self, router: Any) -> None:
        """The router the answer model is called through (it is built after the engines)."""
        self.router = router

    # ------------------------------------------------------------------ Engine

    def served_models(self) -> list[ServedModel]:
        return [
            ServedModel(PREFIX + b.name, owned_by="heshi-kb", meta={"tenant": b.tenant})
            for b in self._bases()
        ]

    def forget_bases(self) -> None:
        """Read the list of bases again next time (a base was created since)."""
        self._names = (float("-inf"), self._names[1])

    def _bases(self) -> list[Any]:
        at, bases = self._names
        if time.monotonic() - at > _NAMES_TTL:
            try:
                bases = self.store.bases()
            except Exception:  # the store is down: the last list stands
                return bases
            self._names = (time.monotonic(), bases)
        return bases

    def allowed(self, model: str, tenant: str | None) -> bool:
        """Whether ``tenant`` may use the knowledge base ``model`` names (None: the gateway
        runs without keys, where every caller may use every base)."""
        name = model.removeprefix(PREFIX)
        if tenant is None:
            return any(b.name == name for b in self._bases()) or self._exists(name)
        for base in self._bases():
            if base.name == name:
                return base.tenant is None or base.tenant == tenant
        try:
            base = self.store.get(name)
        except KnowledgeBaseNotFound:
            return False
        return base.tenant is None or base.tenant == tenant

    def _exists(self, name: str) -> bool:
        try:
            self.store.get(name)
        except KnowledgeBaseNotFound:
            return False
        return True

    async def start(self) -> None:
        return None

    async def close(self) -> None:
        return None

    async def chat(self, body: JSON) -> JSON:
        answer = await self._answer(body)
        return _completion(body["model"], answer)

    def stream_chat(self, body: JSON) -> AsyncIterator[JSON]:
        return self._stream(body)

    async def _stream(self, body: JSON) -> AsyncIterator[JSON]:
        answer = await self._answer(body)
        base = {
            "id": _id(),
            "object": "chat.completion.chunk",
            "created": int(time.time()),
            "model": body["model"],
        }
        yield {**base, "choices": [{"index": 0, "delta": {"role": "assistant", "content": ""}}]}
        yield {**base, "choices": [{"index": 0, "delta": {"content": answer.answer}}]}
        yield {
            **base,
            "choices": [{"index": 0, "delta": {}, "finish_reason": "stop"}],
            **_extras(answer),
        }
        if answer.usage:
            yield {**base, "choices": [], "usage": answer.usage}

    async def most_tokens(self, op: str, body: JSON) -> int | None:
        """The most a request can be charged, tokens (:mod:`heshi.apps.kb.cost`): what
        admission reserves, since an answer's model calls read the retrieved passages
        and ``max_tokens`` does not bound them."""
        if op != "chat":
            return None
        from heshi.apps.kb.cost import most_tokens

        name = str(body["model"]).removeprefix(PREFIX)
        tenant = body.get(TENANT_FIELD)
        if not self.allowed(PREFIX + name, tenant):
            raise ModelNotFound(PREFIX + name, [])
        return await most_tokens(
            self.bot, name, list(body.get("messages") or []), session_id=body.get("session_id"),
            tenant=tenant,
        )  # fmt: skip

    async def completion(self, body: JSON) -> JSON:
        raise _chat_only(body.get("model", ""))

    def stream_completion(self, body: JSON) -> AsyncIterator[JSON]:
        raise _chat_only(body.get("model", ""))

    async def embeddings(self, body: JSON) -> JSON:
        raise _chat_only(body.get("model", ""))

    # ------------------------------------------------------------------ internals

    async def _answer(self, body: JSON) -> Answer:
        name = str(body["model"]).removeprefix(PREFIX)
        tenant = body.get(TENANT_FIELD)
        if not self.allowed(PREFIX + name, tenant):
            raise ModelNotFound(PREFIX + name, [])
        return await self.bot.ask(
            name, list(body.get("messages") or []), session_id=body.get("session_id"),
            tenant=tenant,
        )  # fmt: skip

    async def _generate(self, messages: list[JSON], max_tokens: int) -> tuple[str, JSON | None]:
        if self.router is None:
            raise RuntimeError("KnowledgeEngine.attach(router) was not called")
        model = self.config.kb.model or self.config.engine.name
        body = {"model": model, "messages": messages, "max_tokens": max_tokens, "temperature": 0}
        routed = await self.router.call(self.router.plan(model, body), "chat", body)
        result = routed.value
        message = (result.get("choices") or [{}])[0].get("message") or {}
        return str(message.get("content") or ""), result.get("usage")

    async def _judge(self, messages: list[JSON]) -> tuple[float | None, JSON | None]:
        """The answer model's probability of "没有" (no) as its first token."""
        if self.router is None:
            raise RuntimeError("KnowledgeEngine.attach(router) was not called")
        model = self.config.kb.model or self.config.engine.name
        body = judge_body(model, messages)
        routed = await self.router.call(self.router.plan(model, body), "chat", body)
        return doubt_of(routed.value), routed.value.get("usage")

    async def _notify(self, record: JSON) -> str:
        url = self.config.kb.handoff_webhook
        if not url:
            return "none"
        try:
            async with httpx.AsyncClient(timeout=self.config.kb.webhook_timeout_seconds) as client:
                response = await client.post(url, json=record)
            return "sent" if response.status_code < 300 else "failed"
        except (httpx.HTTPError, OSError):
            return "failed"


def judge_body(model: str, messages: list[JSON]) -> JSON:
    """The judge's chat request: one token, greedy, with the probabilities
    :func:`doubt_of` reads."""
    return {
        "model": model, "messages": messages, "max_tokens": 1, "temperature": 0,
        "logprobs": True, "top_logprobs": 10,
    }  # fmt: skip


def doubt_of(result: JSON) -> float | None:
    """P(no) / (P(yes) + P(no)) over the first token's top log-probabilities of a chat
    result answering 有 / 没有; None without log-probabilities."""
    choice = (result.get("choices") or [{}])[0]
    content = (choice.get("logprobs") or {}).get("content") or []
    top = content[0].get("top_logprobs") if content else None
    if not top:
        return None
    yes = sum(math.exp(t["logprob"]) for t in top if str(t.get("token", "")).startswith("有"))
    no = sum(
        math.exp(t["logprob"])
        for t in top
        if str(t.get("token", "")).startswith(("没", "无", "不"))
    )
    return no / (yes + no) if yes + no > 0 else None


def _completion(model: str, answer: Answer) -> JSON:
    out: JSON = {
        "id": _id(),
        "object": "chat.completion",
        "created": int(time.time()),
        "model": model,
        "choices": [
            {
                "index": 0,
                "message": {"role": "assistant", "content": answer.answer},
                "finish_reason": "stop",
            }
        ],
        **_extras(answer),
    }
    if answer.usage:
        out["usage"] = answer.usage
    return out


def _extras(answer: Answer) -> JSON:
    out: JSON = {
        "citations": [c.as_json() for c in answer.citations],
        "grounded": answer.grounded,
        "handoff": answer.handoff,
    }
    if answer.session_id:
        out["session_id"] = answer.session_id
    return out


def _id() -> str:
    return "chatcmpl-kb" + secrets.token_hex(10)


def _chat_only(model: str) -> CapabilityMissing:
    return CapabilityMissing(
        f"知识库 '{model}' 只支持 /v1/chat/completions / knowledge base '{model}' answers "
        "chat completions only",
        param="model",
    )
