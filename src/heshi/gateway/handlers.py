"""The OpenAI endpoints: parse, run the pipeline, send. Nothing else happens here.

For each request: an :class:`Exchange` is made first; the caller is authenticated from
the headers before a byte of the body is read; the body is read within its limit,
parsed and validated; the key's model permission and the route plan are checked; then
the pipeline (admit → guard in → route + generate → guard out → label) runs, and
whatever happens the request is recorded once (ledger row, metrics, audit).
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
from collections.abc import Mapping
from typing import Any

from pydantic import BaseModel
from starlette.requests import Request
from starlette.responses import Response

from heshi.apps.kb.engine import PREFIX as KB_PREFIX
from heshi.apps.kb.engine import TENANT_FIELD, KnowledgeEngine
from heshi.config import HeshiConfig
from heshi.engines.base import JSON, Engine
from heshi.errors import HeshiError, ModelNotFound
from heshi.gateway.edge import note_failure, parse_json, read_body
from heshi.gateway.exchange import Endpoint, Exchange
from heshi.gateway.governance import Governance
from heshi.gateway.logs import Throttle
from heshi.gateway.metrics import GatewayMetrics
from heshi.gateway.observe import StateCollector
from heshi.gateway.pipeline import OpenStream, Pipeline, Stage
from heshi.gateway.record import Recorder
from heshi.gateway.replies import Kind, Refusal, SSEReply, error_reply, json_reply
from heshi.gateway.schemas import (
    ChatCompletionRequest,
    CompletionRequest,
    EmbeddingRequest,
    RerankRequest,
    parse_request,
)
from heshi.gateway.stages import Admit, Guard, Label
from heshi.guard.labels import Labeller
from heshi.guard.stage import GuardStage
from heshi.routing.router import RoutePlan, Router
from heshi.tracing import Tracing

log = logging.getLogger("heshi.gateway")

_GUARD_MODEL_BODY = {"max_tokens": 64, "temperature": 0}


class Gateway:
    """The handlers of one app instance, with its router, pipelines and metrics."""

    def __init__(
        self, config: HeshiConfig, engines: Mapping[str, Engine], governance: Governance
    ) -> None:
        self.config = config
        self.engines = dict(engines)
        kb = self.engines.get("kb")
        if kb is None and config.kb.enabled:
            kb = self.engines["kb"] = KnowledgeEngine(config, governance.db)
        self.kb = kb if isinstance(kb, KnowledgeEngine) else None
        self.router = Router(config, self.engines)
        self.tracing = Tracing.from_config(config.tracing, config.server.log_format)
        self.router.tracing = self.tracing
        if self.kb is not None:
            self.kb.attach(self.router)
        self.gov = governance
        self.metrics = GatewayMetrics()
        # engines, breakers, ledger and tenant spend, read when /metrics is scraped
        self.state = StateCollector(self.engines, self.router, governance, config)
        self.state.register(self.metrics.registry)
        self.started = time.time()
        self._log_throttle = Throttle()  # failing backends: a line per reason per 10 s
        self.guard = GuardStage(config, suspend=self._suspend_key)
        self.guard.load()
        self.recorder = Recorder(governance, self.metrics, self.guard, self.tracing)
        admit = Admit(governance, self.engines)
        stages: list[Stage] = [admit]
        if config.aigc.enabled:
            stages.append(Label(Labeller(config.aigc)))
        guard = Guard(self.guard, self._ask, self._again)
        if not config.guard.enabled and not any(
            (t.guard or {}).get("enabled") for t in config.tenants.values()
        ):
            guard.span_in = guard.span_out = None  # off for everyone: nothing to trace
        stages.append(guard)
        self.pipeline = Pipeline(stages, self.router, self.recorder, self.tracing)
        # Requests Heshi makes itself (the guard model's): admitted and metered, no more.
        self.internal = Pipeline([admit], self.router, self.recorder, self.tracing)

    def _suspend_key(self, key_id: str, reason: str) -> None:
        """Store the suspension and reload the key cache so it takes effect at once."""
        self.gov.keys.suspend(key_id, reason)
        self.gov.auth.refresh_now()

    async def _ask(
        self, parent: Exchange, alias: str, messages: list[JSON], options: JSON | None = None
    ) -> JSON:
        """Ask a guard model (any alias the router serves) on ``parent``'s behalf; the
        answer's first choice. ``options``: more body fields (the band judge's logprobs)."""
        x = parent.child("guard")
        body = {"model": alias, "messages": messages, **_GUARD_MODEL_BODY, **(options or {})}
        result = await self._internal(x, alias, body)
        first = (result.get("choices") or [{}])[0]
        return first if isinstance(first, dict) else {}

    async def _again(self, parent: Exchange) -> JSON:
        """``parent``'s chat request asked once more, whole, as the model saw it (policy
        and placeholders in): an internal request of the caller (heshi.gateway.again)."""
        body = {k: v for k, v in parent.body.items() if k not in ("stream", "stream_options")}
        return await self._internal(parent.child("chat"), parent.model, body)

    async def _internal(self, x: Exchange, model: str, body: JSON) -> JSON:
        """Run ``x`` (a child of a caller's request) for ``model`` through the internal
        pipeline: admitted, metered and recorded, no guard or labels."""
        x.body, x.model = body, model
        x.plan = self.router.plan(model, body)
        self.recorder.started(x)
        result = await self.internal.unary(x)
        assert isinstance(result, dict)
        return result

    async def chat_completions(self, request: Request) -> Response:
        """``POST /v1/chat/completions``."""
        return await self._serve(request, ChatCompletionRequest, "chat")

    async def completions(self, request: Request) -> Response:
        """``POST /v1/completions``."""
        return await self._serve(request, CompletionRequest, "completions")

    async def embeddings(self, request: Request) -> Response:
        """``POST /v1/embeddings``."""
        return await self._serve(request, EmbeddingRequest, "embeddings")

    async def rerank(self, request: Request) -> Response:
        """``POST /v1/rerank``."""
        return await self._serve(request, RerankRequest, "rerank")

    async def _serve(
        self, request: Request, schema: type[BaseModel], endpoint: Endpoint
    ) -> Response:
        client = request.client.host if request.client else None
        x = Exchange(endpoint=endpoint, client_ip=client)
        self.tracing.start(x, request.headers)
        try:
            await self._accept(request, schema, x)
        except HeshiError as exc:
            x.fail(exc)
            await self.recorder.finish(x)
            return self.refusal(request, x, exc)
        try:
            outcome = await (self.pipeline.stream(x) if x.stream else self._whole(request, x))
        except HeshiError as exc:
            return self.refusal(request, x, exc)  # the pipeline has recorded it
        if isinstance(outcome, OpenStream):
            return SSEReply(outcome, x.response_headers())
        if isinstance(outcome, Refusal):
            kind: Kind = "chat" if endpoint == "chat" else "completions"
            return outcome.reply(kind, x.model, x.request_id, x.stream, x.response_headers())
        return json_reply(outcome, headers=x.response_headers())

    async def _whole(self, request: Request, x: Exchange) -> JSON | Refusal:
        """A whole (non-streamed) answer, stopped if the client leaves while it is made: a
        client that gave up must not keep a slot decoding for no one. What the engine did
        by then is charged (``CallControl``)."""

        async def watch() -> None:
            with contextlib.suppress(Exception):
                while (await request.receive())["type"] != "http.disconnect":
                    pass
                x.control.stop()

        watcher = asyncio.ensure_future(watch())
        try:
            return await self.pipeline.unary(x)
        finally:
            watcher.cancel()

    async def _accept(self, request: Request, schema: type[BaseModel], x: Exchange) -> None:
        """Authenticate, read, parse and validate; fill in who asks for what."""
        x.key = self.gov.auth.identify(request.headers.get("authorization"))
        x.authenticated = True  # from here on the request is the key's: it gets a ledger row
        self.gov.auth.check_usable(x.key)
        raw = await read_body(request, self.config.server.max_body_bytes)
        request.state.body_read = True
        body = parse_request(schema, parse_json(raw)).model_dump(exclude_unset=True, by_alias=True)
        limits = [body[k] for k in ("max_tokens", "max_completion_tokens") if k in body]
        if len(limits) == 2:  # whichever one a backend honours, it is the one reserved
            body["max_tokens"] = body["max_completion_tokens"] = min(limits)
        x.body, x.model = body, body["model"]
        if x.endpoint in ("chat", "completions") and body.get("stream"):
            x.stream = True
            x.include_usage = bool((body.get("stream_options") or {}).get("include_usage"))
        self.gov.auth.permit_model(x.key, x.model)
        if x.model.startswith(KB_PREFIX) and self.kb is not None:
            body[TENANT_FIELD] = x.key.tenant if x.key is not None else None
            if not self.kb.allowed(x.model, body[TENANT_FIELD]):  # as if it did not exist
                raise ModelNotFound(x.model, [])  # refusal() names what the key may use
        else:
            body.pop("session_id", None)  # a knowledge-base field; backends do not know it
        x.plan = self._plan(x.model, body)
        self.recorder.started(x)

    def _plan(self, model: str, body: JSON) -> RoutePlan:
        try:
            return self.router.plan(model, body)
        except ModelNotFound:
            if not model.startswith(KB_PREFIX) or self.kb is None:
                raise
            self.kb.forget_bases()  # a knowledge base created since the names were read
            self.router.reload_names()
            return self.router.plan(model, body)

    def refusal(self, request: Request, x: Exchange, exc: HeshiError) -> Response:
        """The error answer to ``x`` (any endpoint's), its log line written. Refused before
        the body was read (a bad key, a body too large): the connection is closed rather
        than the rest of an upload nobody wants read."""
        if isinstance(exc, ModelNotFound):  # name only what the caller's key may use
            exc = ModelNotFound(exc.model, [m.id for m in self._visible(x.key)])
        note_failure(request, x.request_id, exc, self._log_throttle)
        response = error_reply(exc, x.response_headers())
        if not getattr(request.state, "body_read", False):
            response.headers["connection"] = "close"
        return response

    async def list_models(self, request: Request) -> Response:
        """``GET /v1/models``: the models the caller's key may use."""
        return json_reply({"object": "list", "data": self._models(request)})

    async def retrieve_model(self, request: Request) -> Response:
        """``GET /v1/models/{id}``: one of them; 404 for a model the key may not use, as
        for one that does not exist (which of the two is not told)."""
        models = self._models(request)
        wanted = request.path_params["model_id"]
        for model in models:
            if model["id"] == wanted:
                return json_reply(model)
        raise ModelNotFound(wanted, [m["id"] for m in models])

    def _models(self, request: Request) -> list[dict[str, Any]]:
        try:
            key = self.gov.authenticate(request.headers.get("authorization"), None)
        except HeshiError as exc:
            self.metrics.requests.labels("-", "models", str(exc.status_code), exc.reason).inc()
            raise
        created = int(self.started)
        return [
            {
                "id": m.id,
                "object": "model",
                "created": created,
                "owned_by": m.owned_by,
                "context_length": m.context_length,
            }
            for m in self._visible(key)
        ]

    def _visible(self, key: Any) -> list[Any]:
        """The public models ``key`` may use (knowledge bases: its tenant's and shared)."""
        tenant = key.tenant if key is not None else None
        return [
            m
            for m in self.router.public_models()
            if self.gov.auth.may_use(key, m.id)
            and (not m.id.startswith(KB_PREFIX) or self.kb is None or self.kb.allowed(m.id, tenant))
        ]
