"""``/admin/v1`` routes for the running gateway itself: its health, its local models (what
``heshi ps`` shows; load and unload, audited like any change), and what its guard does."""

# No `from __future__ import annotations`: FastAPI reads the route annotations at run time.
from datetime import datetime
from typing import Annotated, Any, Protocol

from fastapi import Depends, FastAPI, Query, Request
from pydantic import BaseModel, ConfigDict, Field

from heshi.admin.guardview import SCAN_ROWS, guard_activity, guard_settings
from heshi.admin.params import client_ip
from heshi.admin.service import ADMIN_TENANT
from heshi.admin.tokens import Actor
from heshi.config import HeshiConfig, LocalEngineConfig
from heshi.errors import HeshiError, InvalidRequest


class GatewayOperations(Protocol):
    """What the gateway's operator side offers (``heshi.gateway.admin.Admin``)."""

    def details(self) -> dict[str, Any]: ...

    def local_status(self) -> list[dict[str, Any]]: ...

    async def load(self, settings: LocalEngineConfig) -> dict[str, Any]: ...

    async def unload(self, name: str) -> None: ...


class LoadModel(BaseModel):
    """A ``models:`` entry of heshi.yaml: at least ``model`` (a model ref) and ``name``."""

    model_config = ConfigDict(extra="allow")

    model: Annotated[str, Field(min_length=1, max_length=1000)]
    name: Annotated[str, Field(min_length=1, max_length=128)]


def add_operation_routes(app: FastAPI, api: Any, ops: GatewayOperations) -> None:
    """``GET /health``, ``GET /models``, ``POST /models``, ``DELETE /models/{name}``."""
    service = api.service
    Who = Annotated[Actor, Depends(api.actor)]

    ip = client_ip

    @app.get("/health", tags=["gateway"])
    def health(actor: Who) -> dict[str, Any]:
        """Readiness, models served, backends with their breaker states, ledger, admission."""
        return ops.details()

    @app.get("/models", tags=["gateway"])
    def local_models(actor: Who) -> list[dict[str, Any]]:
        """The local models loaded: kind, memory, context, slots busy, tokens/s."""
        return ops.local_status()

    @app.post("/models", status_code=201, tags=["gateway"])
    async def load_model(actor: Who, body: LoadModel, request: Request) -> dict[str, Any]:
        """Load a local model beside the others (admins; audited)."""
        params = {"model": body.model, "name": body.name}
        try:
            actor.require("admin")
            try:
                settings = LocalEngineConfig.model_validate(body.model_dump())
            except ValueError as exc:
                raise InvalidRequest(f"模型设置无效 / invalid model settings: {exc}") from exc
            entry = await ops.load(settings)
        except HeshiError as exc:
            outcome = {"result": "refused", "code": exc.code or exc.reason, "error": exc.message}
            service.record(actor, "models.load", ADMIN_TENANT, params, outcome, ip(request))
            raise
        service.record(actor, "models.load", ADMIN_TENANT, params, {"result": "ok"}, ip(request))
        return entry

    @app.delete("/models/{name}", tags=["gateway"])
    async def unload_model(actor: Who, name: str, request: Request) -> dict[str, Any]:
        """Stop serving a local model and free its memory (admins; audited)."""
        params = {"name": name[:128]}
        try:
            actor.require("admin")
            await ops.unload(name)
        except HeshiError as exc:
            outcome = {"result": "refused", "code": exc.code or exc.reason, "error": exc.message}
            service.record(actor, "models.unload", ADMIN_TENANT, params, outcome, ip(request))
            raise
        service.record(actor, "models.unload", ADMIN_TENANT, params, {"result": "ok"}, ip(request))
        return {"name": name, "unloaded": True}


def add_guard_routes(app: FastAPI, api: Any, config: HeshiConfig) -> None:
    """``GET /guard/settings`` and ``GET /guard/blocks``."""
    Who = Annotated[Actor, Depends(api.actor)]

    @app.get("/guard/settings", tags=["guard"])
    def settings(
        actor: Who, tenant: Annotated[str | None, Query(min_length=1, max_length=64)] = None
    ) -> dict[str, Any]:
        """The guard and AIGC-label settings in force (for ``tenant``, with its overrides);
        read-only here: they are set in heshi.yaml."""
        return guard_settings(config, tenant)

    @app.get("/guard/blocks", tags=["guard"])
    def blocks(
        actor: Who,
        since: datetime,
        tenant: Annotated[str | None, Query(min_length=1, max_length=64)] = None,
        limit: Annotated[int, Query(ge=1, le=500)] = 50,
    ) -> dict[str, Any]:
        """Requests the guard blocked since ``since``: counts by TC260 risk and the newest
        ``limit`` of them (their texts as the audit log keeps them, PII masked)."""
        if since.tzinfo is None or not 2000 <= since.year <= 2200:
            raise InvalidRequest(
                "since 需带时区且在 2000–2200 年间 / since needs a time zone and a year "
                "between 2000 and 2200",
                param="since",
            )
        found = guard_activity(api.service.db, since, tenant, limit)
        return {
            "scanned": found.scanned,
            "scan_limit": SCAN_ROWS,
            "blocked": found.blocked,
            "by_risk": found.by_risk,
            "recent": [
                {
                    "seq": r.seq,
                    "ts": r.ts.isoformat(),
                    "tenant": r.tenant,
                    "key_id": r.key_id,
                    "input": r.input,
                    "output": r.output,
                    "verdicts": r.verdicts,
                }
                for r in found.recent
            ],
        }
