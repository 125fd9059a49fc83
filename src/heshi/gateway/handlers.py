"""Request handlers: validate → authenticate → route → admit → generate → settle.

The order matters: nothing that can fail cheaply (bad JSON, a bad key, an unknown model,
an exhausted quota) ever reaches an engine, and every admitted request is settled exactly
once — after the response for plain requests, when the stream ends for streams, however
it ends.
"""

from __future__ import annotations

import dataclasses
import time
from collections.abc import AsyncIterator, Mapping
from typing import Any

import anyio
import orjson
from pydantic import BaseModel
from starlette.requests import Request
from starlette.responses import Response, StreamingResponse

from heshi.config import HeshiConfig
from heshi.engines.base import JSON, Engine, prepend
from heshi.errors import HeshiError, InvalidRequest
from heshi.gateway.governance import Governance, Ticket
from heshi.gateway.metrics import GatewayMetrics
from heshi.gateway.refusal import refusal_response
from heshi.gateway.schemas import (
    ChatCompletionRequest,
    CompletionRequest,
    EmbeddingRequest,
    parse_request,
)
from heshi.gateway.streaming import StreamAccount, sse_frames
from heshi.guard.aigc import new_produce_id
from heshi.guard.labels import Labeller
from heshi.guard.safety import most_severe
from heshi.guard.stage import GuardStage, Inbound
from heshi.routing.router import Routed, RoutePlan, Router, StreamOp

_SSE_HEADERS = {"cache-control": "no-cache", "x-accel-buffering": "no"}


def json_response(
    data: Any, status: int = 200, headers: Mapping[str, str] | None = None
) -> Response:
    """A JSON response serialised with orjson."""
    return Response(orjson.dumps(data), status, headers=headers, media_type="application/json")


def _headers(ticket: Ticket, routed: Routed[Any]) -> dict[str, str]:
    ticket.backend = routed.target.backend
    ticket.route = routed.route_header
    return {
        "x-heshi-backend": routed.backend_header,
        "x-heshi-route": routed.route_header,
        "x-request-id": ticket.request_id,
    }


class Gateway:
    """The handlers of one app instance, with its router, governance and metrics."""

    def __init__(
        self, config: HeshiConfig, engines: Mapping[str, Engine], governance: Governance
    ) -> None:
        self.config = config
        self.engines = dict(engines)
        self.router = Router(config, self.engines)
        self.gov = governance
        self.metrics = GatewayMetrics()
        self.started = time.time()
        self._context = {m.id: m.context_length for m in self.router.public_models()}
        self.guard = GuardStage(config, suspend=self._suspend_key, classify=self._classify)
        self.labeller = Labeller(config.aigc) if config.aigc.enabled else None

    async def _classify(self, alias: str, messages: list[JSON]) -> str:
        """Ask the guard model (served by the router like any alias) about a conversation."""
        body: JSON = {"model": alias, "messages": messages, "max_tokens": 64, "temperature": 0}
        routed = await self.router.call(self.router.plan(alias, body), "chat", body)
        choices = routed.value.get("choices") or [{}]
        return str((choices[0].get("message") or {}).get("content") or "")

    def _suspend_key(self, key_id: str, reason: str) -> None:
        """Store the suspension and reload the key cache so it takes effect at once."""
        self.gov.keys.suspend(key_id, reason)
        self.gov.auth.refresh_now()

    async def read_json(self, request: Request) -> Any:
        """The request body as JSON; 400 on oversize or malformed input."""
        limit = self.config.server.max_body_bytes
        declared = request.headers.get("content-length")
        too_big = f"请求体超过 {limit} 字节 / request body exceeds {limit} bytes"
        if declared is not None and declared.isdigit() and int(declared) > limit:
            raise InvalidRequest(too_big)
        body = await request.body()
        if len(body) > limit:
            raise InvalidRequest(too_big)
        try:
            return orjson.loads(body)
        except orjson.JSONDecodeError as exc:
            raise InvalidRequest(f"请求体不是合法 JSON / malformed JSON body: {exc}") from None

    async def _admit(
        self, request: Request, model: type[BaseModel], endpoint: str
    ) -> tuple[JSON, RoutePlan, Ticket]:
        body = parse_request(model, await self.read_json(request)).model_dump(
            exclude_unset=True, by_alias=True
        )
        key = self.gov.authenticate(request.headers.get("authorization"), body["model"])
        plan = self.router.plan(body["model"], body)
        ticket = await self.gov.admit(
            key, body, plan.model, endpoint, self._context.get(plan.resolved)
        )
        self.metrics.in_flight.labels(plan.model).inc()
        return body, plan, ticket

    async def _finish(self, ticket: Ticket, usage: Any, status: int) -> None:
        """Settle, meter and count — shielded, so a client leaving cannot skip it."""
        with anyio.CancelScope(shield=True):
            await self.gov.settle(ticket, usage, status)
        m, model = self.metrics, ticket.public_model
        m.in_flight.labels(model).dec()
        m.requests.labels(model, ticket.endpoint, str(status)).inc()
        m.latency.labels(model, ticket.endpoint).observe(time.perf_counter() - ticket.started)
        if ticket.first_token_at is not None:
            m.ttft.labels(model).observe(ticket.first_token_at - ticket.started)
        m.record_usage(model, usage)

    async def chat_completions(self, request: Request) -> Response:
        """``POST /v1/chat/completions``."""
        return await self._generate(request, ChatCompletionRequest, "chat")

    async def completions(self, request: Request) -> Response:
        """``POST /v1/completions``."""
        return await self._generate(request, CompletionRequest, "completions")

    async def embeddings(self, request: Request) -> Response:
        """``POST /v1/embeddings``."""
        body, plan, ticket = await self._admit(request, EmbeddingRequest, "embeddings")
        return await self._unary(body, plan, ticket)

    async def _generate(self, request: Request, model: type[BaseModel], endpoint: str) -> Response:
        body, plan, ticket = await self._admit(request, model, endpoint)
        key = ticket.key
        try:
            inbound = await self.guard.inbound(
                key.tenant if key else None, key.id if key else None, body
            )
        except BaseException as exc:
            await self._finish(ticket, None, _failed(ticket, exc))
            raise
        if inbound.blocked:
            self._audit(request, ticket, inbound)
            return await self._refuse(body, plan, ticket, inbound, endpoint)
        if not body.get("stream"):
            return await self._unary(body, plan, ticket, inbound, request)
        include_usage = bool((body.get("stream_options") or {}).get("include_usage"))
        # Always ask for usage so tokens are metered; dropped later if the client didn't ask.
        body["stream_options"] = {"include_usage": True}
        op: StreamOp = "chat" if endpoint == "chat" else "completion"
        try:
            routed = await self.router.open_stream(plan, op, body)
        except BaseException as exc:
            await self._finish(ticket, None, _failed(ticket, exc))
            raise
        headers = _headers(ticket, routed)
        account = StreamAccount(plan.model, include_usage)

        async def on_close(acc: StreamAccount) -> None:
            ticket.first_token_at = acc.first_token_at
            usage = acc.usage or {"completion_tokens": acc.token_chunks}
            await self._finish(ticket, usage, int(acc.status))
            self._audit(request, ticket, inbound)

        first: JSON | None = routed.value.first
        rest: AsyncIterator[JSON] = routed.value.rest
        if inbound.config.enabled:
            rest = self.guard.outbound_stream(inbound, first, rest)
            first = None
            headers["x-heshi-guard"] = inbound.verdict
        if self.labeller is not None:
            produce_id = new_produce_id()
            rest = self.labeller.label_stream(produce_id, prepend(first, rest))
            first = None
            headers["x-aigc-produce-id"] = produce_id
        frames = sse_frames(first, rest, account, on_close)
        return StreamingResponse(
            frames, media_type="text/event-stream", headers=_SSE_HEADERS | headers
        )

    async def _unary(
        self,
        body: JSON,
        plan: RoutePlan,
        ticket: Ticket,
        inbound: Inbound | None = None,
        request: Request | None = None,
    ) -> Response:
        op = {"chat": "chat", "completions": "completion", "embeddings": "embeddings"}
        status, usage = 200, None
        try:
            routed = await self.router.call(plan, op[ticket.endpoint], body)  # type: ignore[arg-type]
            headers = _headers(ticket, routed)  # before settling: the ledger row records it
            result = routed.value
            usage = result.get("usage") or _estimated_usage(result)
        except BaseException as exc:
            status = _failed(ticket, exc)
            raise
        finally:
            await self._finish(ticket, usage, status)
        result["model"] = plan.model
        if inbound is not None and inbound.config.enabled:
            outbound = self.guard.outbound_result(inbound, result)
            if outbound != "block":
                outbound = await self.guard.outbound_model(inbound, result) or outbound
            headers["x-heshi-guard"] = most_severe([outbound, inbound.action]) or "pass"
            self._audit(request, ticket, inbound)
        if self.labeller is not None and ticket.endpoint != "embeddings":
            label = self.labeller.label_result(result)
            if label is not None:
                headers["x-aigc-label"] = label
        return json_response(result, headers=headers)

    def _audit(self, request: Request | None, ticket: Ticket, inbound: Inbound) -> None:
        """Queue the guarded request's audit record (masked texts, verdicts, versions)."""
        if not inbound.config.enabled:
            return
        key = ticket.key
        client = request.client.host if request is not None and request.client else None
        self.gov.audit.submit(
            self.guard.audit_entry(
                inbound,
                tenant=key.tenant if key else "-",
                key_id=key.id if key else None,
                request_id=ticket.request_id,
                client_ip=client,
                model=f"{ticket.public_model}->{ticket.backend or '-'}",
            )
        )

    async def _refuse(
        self, body: JSON, plan: RoutePlan, ticket: Ticket, inbound: Inbound, endpoint: str
    ) -> Response:
        """Answer a blocked prompt with the refusal text; no backend is called."""
        ticket.backend, ticket.route = "guard", "guard:block"
        await self._finish(ticket, None, 200)  # no model ran: nothing is charged
        refusal = inbound.engine.refusal if inbound.engine else inbound.config.refusal
        headers = {"x-heshi-guard": "block", "x-request-id": ticket.request_id}
        return refusal_response(body, plan.model, ticket.request_id, refusal, endpoint, headers)

    async def list_models(self, request: Request) -> Response:
        """``GET /v1/models`` (needs a key when keys exist)."""
        self.gov.authenticate(request.headers.get("authorization"), None)
        created = int(self.started)
        data = [
            {
                "id": m.id,
                "object": "model",
                "created": created,
                "owned_by": m.owned_by,
                "context_length": m.context_length,
            }
            for m in self.router.public_models()
        ]
        return json_response({"object": "list", "data": data})

    async def healthz(self, request: Request) -> Response:
        """``GET /healthz``: liveness plus what is served and the backends' state."""
        backends = {
            name: {"state": s.state, "in_flight": s.in_flight, "healthy": s.healthy}
            for name, s in self.router.status().items()
        }
        return json_response(
            {
                "status": "ok",
                "uptime_s": round(time.time() - self.started, 1),
                "models": [m.id for m in self.router.public_models()],
                "engines": sorted(self.engines),
                "backends": backends,
                "ledger": dataclasses.asdict(self.gov.ledger.stats()),
                "admission": self.gov.admission_status(),
            }
        )

    async def prometheus(self, request: Request) -> Response:
        """``GET /metrics`` in Prometheus text format."""
        return Response(self.metrics.render(), media_type="text/plain; version=0.0.4")


def _failed(ticket: Ticket, exc: BaseException) -> int:
    """Note where a failed request went (as the router recorded it on the error) for the
    ledger, add the request id to the error response; return the status to meter."""
    if isinstance(exc, HeshiError):
        ticket.backend, ticket.route = exc.routed_backend, exc.route
        exc.headers = {**(exc.headers or {}), "x-request-id": ticket.request_id}
    return _status_of(exc)


def _status_of(exc: BaseException) -> int:
    if isinstance(exc, HeshiError):
        return exc.status_code
    return 499 if isinstance(exc, anyio.get_cancelled_exc_class()) else 500


def _estimated_usage(result: JSON) -> JSON:
    # The backend reported no usage: count one token per character of the answer (an
    # upper bound for Chinese), so such a backend cannot be used to bypass budgets.
    text = 0
    for choice in result.get("choices") or ():
        message = choice.get("message") or {}
        text += len(str(message.get("content") or choice.get("text") or ""))
    return {"completion_tokens": text}
