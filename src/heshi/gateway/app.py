"""The ASGI app: a thin router over the model registry and engines."""

from __future__ import annotations

import contextlib
import logging
import time
from collections.abc import AsyncIterator, Callable, Mapping
from typing import Any

import orjson
from pydantic import BaseModel
from starlette.applications import Starlette
from starlette.exceptions import HTTPException
from starlette.requests import Request
from starlette.responses import Response, StreamingResponse
from starlette.routing import Route

from heshi.config import HeshiConfig
from heshi.engines.base import JSON, Engine
from heshi.errors import HeshiError, InvalidRequest
from heshi.gateway.errors import on_heshi_error, on_http_error, on_unexpected
from heshi.gateway.metrics import GatewayMetrics
from heshi.gateway.schemas import (
    ChatCompletionRequest,
    CompletionRequest,
    EmbeddingRequest,
    parse_request,
)
from heshi.gateway.streaming import StreamAccount, first_chunk, sse_frames
from heshi.routing.registry import ModelRegistry
from heshi.routing.registry import Route as ModelRoute

log = logging.getLogger("heshi.gateway")
_SSE_HEADERS = {"cache-control": "no-cache", "x-accel-buffering": "no"}


def json_response(
    data: Any, status: int = 200, headers: Mapping[str, str] | None = None
) -> Response:
    """A JSON response serialised with orjson."""
    return Response(orjson.dumps(data), status, headers=headers, media_type="application/json")


class Gateway:
    """Request handlers; one instance per app, holding the registry and metrics."""

    def __init__(self, config: HeshiConfig, engines: Mapping[str, Engine]) -> None:
        self.config = config
        self.engines = dict(engines)
        self.registry = ModelRegistry(self.engines, config.aliases)
        self.metrics = GatewayMetrics()
        self.started = time.time()

    async def read_json(self, request: Request) -> Any:
        """The request body as JSON; 400 on oversize or malformed input."""
        limit = self.config.server.max_body_bytes
        declared = request.headers.get("content-length")
        if declared is not None and declared.isdigit() and int(declared) > limit:
            raise InvalidRequest(f"请求体超过 {limit} 字节 / request body exceeds {limit} bytes")
        body = await request.body()
        if len(body) > limit:
            raise InvalidRequest(f"请求体超过 {limit} 字节 / request body exceeds {limit} bytes")
        try:
            return orjson.loads(body)
        except orjson.JSONDecodeError as exc:
            raise InvalidRequest(f"请求体不是合法 JSON / malformed JSON body: {exc}") from None

    async def parse(self, request: Request, model: type[BaseModel]) -> tuple[JSON, ModelRoute]:
        """Validate, resolve the model and rewrite it to the upstream name."""
        parsed = parse_request(model, await self.read_json(request))
        body = parsed.model_dump(exclude_unset=True, by_alias=True)
        route = self.registry.resolve(body["model"])
        body["model"] = route.upstream_model
        return body, route

    async def chat_completions(self, request: Request) -> Response:
        """``POST /v1/chat/completions``."""
        body, route = await self.parse(request, ChatCompletionRequest)
        engine = route.engine
        return await self._generate(body, route, "chat", engine.chat, engine.stream_chat)

    async def completions(self, request: Request) -> Response:
        """``POST /v1/completions``."""
        body, route = await self.parse(request, CompletionRequest)
        engine = route.engine
        return await self._generate(
            body, route, "completions", engine.completion, engine.stream_completion
        )

    async def _generate(
        self,
        body: JSON,
        route: ModelRoute,
        endpoint: str,
        once: Callable[[JSON], Any],
        stream: Callable[[JSON], AsyncIterator[JSON]],
    ) -> Response:
        started = time.perf_counter()
        name = route.public_name
        headers = {"x-heshi-backend": route.engine.name}
        self.metrics.in_flight.labels(name).inc()
        if not body.get("stream"):
            status = "200"
            try:
                result: JSON = await once(body)
            except HeshiError as exc:
                status = str(exc.status_code)
                raise
            finally:
                self._count(name, endpoint, status, started)
            result["model"] = name
            self.metrics.record_usage(name, result.get("usage"))
            return json_response(result, headers=headers)
        include_usage = bool((body.get("stream_options") or {}).get("include_usage"))
        # Always ask for usage so tokens are counted, and drop it later if not wanted.
        body["stream_options"] = {"include_usage": True}
        source = stream(body)
        try:
            first = await first_chunk(source)
        except HeshiError as exc:
            self._count(name, endpoint, str(exc.status_code), started)
            raise
        account = StreamAccount(name, endpoint, started, include_usage)
        frames = sse_frames(first, source, account, self.metrics)
        return StreamingResponse(
            frames, media_type="text/event-stream", headers=_SSE_HEADERS | headers
        )

    def _count(self, model: str, endpoint: str, status: str, started: float) -> None:
        self.metrics.in_flight.labels(model).dec()
        self.metrics.requests.labels(model, endpoint, status).inc()
        self.metrics.latency.labels(model, endpoint).observe(time.perf_counter() - started)

    async def embeddings(self, request: Request) -> Response:
        """``POST /v1/embeddings``."""
        body, route = await self.parse(request, EmbeddingRequest)
        started = time.perf_counter()
        self.metrics.in_flight.labels(route.public_name).inc()
        status = "200"
        try:
            result = await route.engine.embeddings(body)
        except HeshiError as exc:
            status = str(exc.status_code)
            raise
        finally:
            self._count(route.public_name, "embeddings", status, started)
        result["model"] = route.public_name
        self.metrics.record_usage(route.public_name, result.get("usage"))
        return json_response(result, headers={"x-heshi-backend": route.engine.name})

    async def list_models(self, request: Request) -> Response:
        """``GET /v1/models``."""
        created = int(self.started)
        data = [
            {
                "id": r.public_name,
                "object": "model",
                "created": created,
                "owned_by": r.model.owned_by,
                "context_length": r.model.context_length,
            }
            for r in self.registry.routes()
        ]
        return json_response({"object": "list", "data": data})

    async def healthz(self, request: Request) -> Response:
        """``GET /healthz``: liveness plus what is served."""
        return json_response(
            {
                "status": "ok",
                "uptime_s": round(time.time() - self.started, 1),
                "models": [r.public_name for r in self.registry.routes()],
                "engines": sorted(self.engines),
            }
        )

    async def prometheus(self, request: Request) -> Response:
        """``GET /metrics`` in Prometheus text format."""
        return Response(self.metrics.render(), media_type="text/plain; version=0.0.4")


def create_app(config: HeshiConfig, engines: Mapping[str, Engine]) -> Starlette:
    """Build the gateway app. Engines are started on app startup and closed on shutdown."""
    gateway = Gateway(config, engines)

    @contextlib.asynccontextmanager
    async def lifespan(app: Starlette) -> AsyncIterator[None]:
        started: list[Engine] = []
        try:
            for engine in gateway.engines.values():
                await engine.start()
                started.append(engine)
            yield
        finally:
            for engine in reversed(started):
                await engine.close()

    routes = [
        Route("/v1/chat/completions", gateway.chat_completions, methods=["POST"]),
        Route("/v1/completions", gateway.completions, methods=["POST"]),
        Route("/v1/embeddings", gateway.embeddings, methods=["POST"]),
        Route("/v1/models", gateway.list_models, methods=["GET"]),
        Route("/healthz", gateway.healthz, methods=["GET"]),
        Route("/metrics", gateway.prometheus, methods=["GET"]),
    ]
    app = Starlette(
        routes=routes,
        lifespan=lifespan,
        exception_handlers={
            HeshiError: on_heshi_error,
            HTTPException: on_http_error,
            Exception: on_unexpected,
        },
    )
    app.state.gateway = gateway
    return app
