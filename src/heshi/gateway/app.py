"""The ASGI app: routes, lifespan and error handlers around :class:`Gateway`."""

from __future__ import annotations

import contextlib
import logging
import os
from collections.abc import AsyncIterator, Mapping

from starlette.applications import Starlette
from starlette.exceptions import HTTPException
from starlette.routing import Mount, Route
from starlette.types import ASGIApp

from heshi.config import HeshiConfig
from heshi.engines.base import Engine
from heshi.engines.local import LocalModels
from heshi.errors import HeshiError
from heshi.gateway.admin import Admin
from heshi.gateway.docjobs import DocJobs
from heshi.gateway.docs import DocsExtraction
from heshi.gateway.errors import on_heshi_error, on_http_error, on_unexpected
from heshi.gateway.governance import Governance
from heshi.gateway.handlers import Gateway
from heshi.web.console import console_routes

log = logging.getLogger("heshi.gateway")


def _admin_api(
    config: HeshiConfig, gov: Governance, ops: Admin, engines: Mapping[str, Engine]
) -> ASGIApp:
    """``/admin/v1``: the admin API over the gateway's own database and audit log."""
    from heshi.admin.api import build_admin_api
    from heshi.admin.bounded import BoundedBody
    from heshi.admin.kbchanges import UPLOAD_PATH
    from heshi.admin.service import AdminService

    env = config.server.admin_token_env
    bootstrap = os.environ.get(env, "").strip().encode() or None
    service = AdminService(
        gov.db, gov.audit_log, on_keys_changed=gov.auth.refresh_now, pricing=config.pricing
    )
    api = build_admin_api(
        service,
        bootstrap,
        env,
        operations=ops,
        config=config,
        embedder=lambda: getattr(engines.get("kb"), "embed", None),
    )
    return BoundedBody(api, streamed=UPLOAD_PATH)


def create_app(
    config: HeshiConfig, engines: Mapping[str, Engine], governance: Governance | None = None
) -> Starlette:
    """Build the gateway app. Engines, governance and routing start with the app and
    stop with it; ``governance`` defaults to one built from ``config``."""
    local = engines.get("local")
    if local is not None and not isinstance(local, LocalModels):
        # one model given on its own (tests, scripts): the set of local models all the same
        engines = {**engines, "local": LocalModels({local.model_name: local})}  # type: ignore[attr-defined]
    gateway = Gateway(config, engines, governance or Governance(config))
    admin = Admin(config, gateway.engines, gateway.router, gateway.gov, gateway.metrics)
    docs = DocsExtraction(gateway)
    jobs = DocJobs(gateway, docs)

    @contextlib.asynccontextmanager
    async def lifespan(app: Starlette) -> AsyncIterator[None]:
        async with contextlib.AsyncExitStack() as stack:
            for engine in gateway.engines.values():
                await engine.start()
                stack.push_async_callback(engine.close)
            # unwound last: the ledger and the audit log are closed before spans export
            stack.callback(gateway.tracing.shutdown, config.tracing.export_timeout_s)
            await gateway.gov.start()
            stack.push_async_callback(gateway.gov.close)
            gateway.state.start()
            stack.push_async_callback(gateway.state.close)
            await gateway.router.start()
            stack.push_async_callback(gateway.router.close)
            jobs.start()
            stack.push_async_callback(jobs.close)
            yield

    routes = [
        Route("/v1/chat/completions", gateway.chat_completions, methods=["POST"]),
        Route("/v1/completions", gateway.completions, methods=["POST"]),
        Route("/v1/embeddings", gateway.embeddings, methods=["POST"]),
        Route("/v1/rerank", gateway.rerank, methods=["POST"]),
        Route("/rerank", gateway.rerank, methods=["POST"]),  # Jina's and Dify's bare path
        Route("/v1/docs/extract", docs.extract, methods=["POST"]),
        Route("/v1/docs/jobs", jobs.create, methods=["POST"]),
        Route("/v1/docs/jobs", jobs.list_jobs, methods=["GET"]),
        Route("/v1/docs/jobs/{job_id}", jobs.get_job, methods=["GET"]),
        Route("/v1/docs/jobs/{job_id}/files", jobs.upload, methods=["POST"]),
        Route("/v1/docs/jobs/{job_id}/results.csv", jobs.results, methods=["GET"]),
        Route("/v1/docs/jobs/{job_id}/cancel", jobs.cancel, methods=["POST"]),
        Route("/v1/models", gateway.list_models, methods=["GET"]),
        Route("/v1/models/{model_id:path}", gateway.retrieve_model, methods=["GET"]),
        Route("/healthz", admin.healthz, methods=["GET"]),
        Route("/readyz", admin.readyz, methods=["GET"]),
        Route("/metrics", admin.prometheus, methods=["GET"]),
        Route("/admin/models", admin.list_local, methods=["GET"]),
        Route("/admin/models", admin.load_local, methods=["POST"]),
        Route("/admin/models/{name:path}", admin.unload_local, methods=["DELETE"]),
        Mount("/admin/v1", app=_admin_api(config, gateway.gov, admin, gateway.engines)),
        *console_routes(),
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
    # No redirects built from the client's Host header: /v1/models/ is a 404, not a 307.
    app.router.redirect_slashes = False
    app.state.gateway = gateway
    return app
