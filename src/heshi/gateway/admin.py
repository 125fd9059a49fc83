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

from starlette.requests import Request
from starlette.responses import Response

from heshi.config import HeshiConfig
from heshi.engines.base import Engine
from heshi.errors import AuthenticationFailed, HeshiError, PermissionDenied
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
            raise PermissionDenied(
                f"管理接口未启用：请设置环境变量 {self._token_env} / admin endpoints are "
                f"disabled: set the environment variable {self._token_env}",
                reason="admin.disabled",
            )
        if scheme.lower() != "bearer" or not hmac.compare_digest(
            token.strip().encode(), self._token
        ):
            raise AuthenticationFailed(
                "管理令牌无效 / invalid admin token", param="authorization", reason="admin.denied"
            )
        return True

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

    async def prometheus(self, request: Request) -> Response:
        """``GET /metrics`` in Prometheus text format (admin token required)."""
        try:
            if not self._admin(request):
                raise AuthenticationFailed(
                    "需要管理令牌 / the admin token is required: Authorization: Bearer <token>",
                    param="authorization",
                    reason="admin.missing",
                )
        except HeshiError as exc:
            return self._refused(exc)
        return Response(self.metrics.render(), media_type="text/plain; version=0.0.4")
