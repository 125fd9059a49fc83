"""Operator endpoints: liveness and readiness for probes, details and metrics for admins.

``/healthz`` (liveness) and ``/readyz`` (readiness) answer anyone, with a status and
nothing else. What the gateway serves, its backends' breaker states, the ledger's queue
and every tenant's token totals in ``/metrics`` are for operators: they need
``Authorization: Bearer <admin token>``, the token read from the environment variable
``server.admin_token_env`` (``HESHI_ADMIN_TOKEN``). Without that variable they stay
closed (403) — there is no default token.
"""

from __future__ import annotations

import dataclasses
import hmac
import os
import time
from collections.abc import Mapping
from typing import Any

from pydantic import ValidationError
from starlette.requests import Request
from starlette.responses import Response

from heshi.config import HeshiConfig, LocalEngineConfig
from heshi.engines.base import Engine
from heshi.engines.local import LocalModels
from heshi.errors import (
    AuthenticationFailed,
    CapabilityMissing,
    ConfigError,
    HeshiError,
    HubError,
    InvalidRequest,
    ModelFileError,
    PermissionDenied,
)
from heshi.gateway.governance import Governance
from heshi.gateway.metrics import GatewayMetrics
from heshi.gateway.replies import error_reply, json_reply
from heshi.routing.router import Router


class Admin:
    """``/healthz``, ``/readyz`` and ``/metrics`` of one gateway."""

    def __init__(
        self,
        config: HeshiConfig,
        engines: Mapping[str, Engine],
        router: Router,
        gov: Governance,
        metrics: GatewayMetrics,
        environ: Mapping[str, str] | None = None,
    ) -> None:
        env = os.environ if environ is None else environ
        # Stripped: a token read from a secret file usually ends in a newline.
        self._token = env.get(config.server.admin_token_env, "").strip().encode() or None
        self._token_env = config.server.admin_token_env
        self.config = config
        self.engines = engines
        self.router = router
        self.gov = gov
        self.metrics = metrics
        self.started = time.time()

    def _admin(self, request: Request) -> bool:
        """True for a request carrying the admin token; raises for a wrong one."""
        header = request.headers.get("authorization")
        if header is None:
            return False
        scheme, _, token = header.partition(" ")
        if self._token is None:
            raise self._disabled()
        if scheme.lower() != "bearer" or not hmac.compare_digest(
            token.strip().encode(), self._token
        ):
            raise AuthenticationFailed(
                f"管理令牌无效：这些运维接口只认环境变量 {self._token_env} 的值（heshi admin "
                f"tokens create 创建的令牌用于 /admin/v1 与控制台）/ invalid admin token: these "
                f"operator endpoints take the value of {self._token_env} (tokens made by heshi "
                "admin tokens create are for /admin/v1 and the console)",
                param="authorization",
                reason="admin.denied",
            )
        return True

    def _disabled(self) -> PermissionDenied:
        """Operator endpoints are closed while no admin token is configured."""
        return PermissionDenied(
            f"管理接口未启用：请设置环境变量 {self._token_env} / admin endpoints are "
            f"disabled: set the environment variable {self._token_env}",
            reason="admin.disabled",
        )

    def _refused(self, exc: HeshiError) -> Response:
        self.metrics.requests.labels("-", "admin", str(exc.status_code), exc.reason).inc()
        return error_reply(exc)

    async def healthz(self, request: Request) -> Response:
        """``GET /healthz``: liveness for anyone; the details with the admin token."""
        try:
            admin = self._admin(request)
        except HeshiError as exc:
            return self._refused(exc)
        if not admin:
            return json_reply({"status": "ok"})
        return json_reply({"status": "ok", **self.details()})

    def details(self) -> dict[str, Any]:
        """What an operator sees: models, engines, backends, ledger, admission."""
        backends = {
            name: {"state": s.state, "in_flight": s.in_flight, "healthy": s.healthy}
            for name, s in self.router.status().items()
        }
        return {
            "ready": not self.not_ready(),
            "uptime_s": round(time.time() - self.started, 1),
            "models": [m.id for m in self.router.public_models()],
            "engines": sorted(self.engines),
            "backends": backends,
            "ledger": dataclasses.asdict(self.gov.ledger.stats()),
            "admission": self.gov.admission_status(),
        }

    def not_ready(self) -> list[str]:
        """Why this gateway cannot serve now (empty: ready). A failing or frozen ledger
        database is not a reason: rows wait in memory and on disk, and taking every
        replica out of the load balancer for it would turn a database outage into a
        gateway outage. It shows in the details (``ledger.healthy``) for alerting."""
        return [] if self.gov.auth.ready else ["keys"]

    async def readyz(self, request: Request) -> Response:
        """``GET /readyz``: 200 when this gateway should get traffic, else 503."""
        if self.not_ready():
            return json_reply({"status": "not_ready"}, status=503)
        return json_reply({"status": "ready"})

    # ------------------------------------------------------------------ local models

    def _require_admin(self, request: Request) -> None:
        if self._token is None:  # closed, whatever the request carries (docs/serving.md)
            raise self._disabled()
        if not self._admin(request):
            raise AuthenticationFailed(
                "需要管理令牌 / the admin token is required: Authorization: Bearer <token>",
                param="authorization",
                reason="admin.missing",
            )

    def _local(self) -> LocalModels:
        local = self.engines.get("local")
        if not isinstance(local, LocalModels):
            raise CapabilityMissing(
                "此网关未启用本地模型（--no-local）/ this gateway runs no local models (--no-local)"
            )
        return local

    async def list_local(self, request: Request) -> Response:
        """``GET /admin/models``: the local models loaded, their memory, slots and speed
        (what ``heshi ps`` prints)."""
        try:
            self._require_admin(request)
            return json_reply({"object": "list", "data": self._local().status()})
        except HeshiError as exc:
            return self._refused(exc)

    async def load_local(self, request: Request) -> Response:
        """``POST /admin/models`` with a ``models:`` entry of heshi.yaml (``model`` is a
        model ref, as ``heshi models pull`` takes it): load it beside the others."""
        try:
            self._require_admin(request)
            return json_reply(await self.load(await _settings(request)), status=201)
        except HeshiError as exc:
            return self._refused(exc)

    async def load(self, settings: LocalEngineConfig) -> dict[str, Any]:
        """Load a local model beside the others; its status entry."""
        local = self._local()
        from heshi.engines.llamacpp import LlamaCppEngine
        from heshi.hub.store import ModelStore

        try:
            engine = LlamaCppEngine.from_store(ModelStore(self.config.home), settings)
            await local.load(engine, check=self.router.reload_names)
        except (ModelFileError, HubError, ConfigError) as exc:  # what was asked for
            raise InvalidRequest(exc.message, param="model") from exc
        (entry,) = [m for m in local.status() if m["name"] == settings.name]
        return dict(entry)

    async def unload_local(self, request: Request) -> Response:
        """``DELETE /admin/models/{name}``: stop serving a local model, free its memory."""
        try:
            self._require_admin(request)
            name = request.path_params["name"]
            await self.unload(name)
            return json_reply({"name": name, "unloaded": True})
        except HeshiError as exc:
            return self._refused(exc)

    async def unload(self, name: str) -> None:
        """Stop serving the local model ``name`` and free its memory."""
        try:
            await self._local().unload(name, check=self.router.reload_names)
        except ConfigError as exc:  # the configuration still needs the model
            raise InvalidRequest(exc.message, param="name") from exc

    def local_status(self) -> list[dict[str, Any]]:
        """What ``heshi ps`` shows: each local model's memory, slots and speed."""
        try:
            return [dict(m) for m in self._local().status()]
        except HeshiError:
            return []  # no local engine: nothing loaded

    async def prometheus(self, request: Request) -> Response:
        """``GET /metrics`` in Prometheus text format (admin token required)."""
        try:
            self._require_admin(request)
        except HeshiError as exc:
            return self._refused(exc)
        return Response(self.metrics.render(), media_type="text/plain; version=0.0.4")


async def _settings(request: Request) -> LocalEngineConfig:
    """A ``models:`` entry from the request body (400 naming what is wrong)."""
    try:
        body = await request.json()
    except ValueError as exc:
        raise InvalidRequest(f"请求体不是 JSON / the body is not JSON: {exc}") from exc
    if not isinstance(body, dict) or not isinstance(body.get("model"), str):
        raise InvalidRequest(
            '需要 {"model": "<模型引用>", "name": "<名称>", …} / expected {"model": "<model '
            'ref>", "name": "<name>", …}',
            param="model",
        )
    try:
        return LocalEngineConfig.model_validate(body)
    except ValidationError as exc:
        first = exc.errors()[0]
        where = ".".join(str(p) for p in first["loc"])
        raise InvalidRequest(f"{where}: {first['msg']}", param=where) from exc
