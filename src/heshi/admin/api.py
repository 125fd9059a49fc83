"""The admin HTTP API, version 1, mounted by the gateway at ``/admin/v1``.

A FastAPI application over :class:`heshi.admin.service.AdminService`: its OpenAPI schema
is generated from the request and response models below and served at
``/admin/v1/openapi.json`` (no Swagger page: it would load scripts from a CDN, which an
offline deployment cannot reach; docs/admin-api.md documents every route).

Credentials: ``Authorization: Bearer <admin token>`` — a token from ``heshi admin tokens
create`` (role admin or auditor), or the bootstrap ``HESHI_ADMIN_TOKEN`` (role admin).
Errors have the gateway's shape, ``{"error": {"message", "type", "code", "param"}}``.
"""

# No `from __future__ import annotations`: FastAPI reads the route annotations at run time.
import hmac
import logging
from collections.abc import Callable
from datetime import datetime
from typing import Annotated, Any, Literal

from fastapi import Depends, FastAPI, Query, Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse, Response
from fastapi.security import HTTPAuthorizationCredentials, HTTPBearer
from starlette.exceptions import HTTPException as StarletteHTTPException

from heshi.admin.audit_routes import add_audit_routes
from heshi.admin.calculator import add_calculator_routes
from heshi.admin.docjobs import add_docjob_routes
from heshi.admin.kbchanges import add_knowledge_changes
from heshi.admin.knowledge import add_knowledge_routes
from heshi.admin.operations import GatewayOperations, add_guard_routes, add_operation_routes
from heshi.admin.params import aware, client_ip
from heshi.admin.schemas import (
    KeyCreate,
    KeyCreated,
    KeyOut,
    PriceOut,
    PricingOut,
    SessionOut,
    SignIn,
    Suspend,
    TokenCreate,
    TokenCreated,
    TokenOut,
    UsageGroup,
    WhoAmI,
)
from heshi.admin.service import ADMIN_TENANT, AdminService, KeySpec
from heshi.admin.sessions import SESSION_HOURS, SessionStore
from heshi.admin.spreadsheet import usage_csv
from heshi.admin.tenants import add_tenant_routes
from heshi.admin.tokens import Actor
from heshi.config import HeshiConfig
from heshi.errors import AuthenticationFailed, HeshiError, InvalidRequest, PermissionDenied
from heshi.gateway.errors import on_http_error
from heshi.gateway.replies import error_reply

VERSION = "v1"
log = logging.getLogger("heshi.admin")
_bearer = HTTPBearer(auto_error=False, description="管理令牌 / an admin token (hsa-…)")

# -- the application --------------------------------------------------------------------


NO_STORE = {"cache-control": "no-store"}  # answers that carry a secret
COOKIE = "heshi_console"
CSRF_HEADER = "x-heshi-csrf"
_SAFE = {"GET", "HEAD", "OPTIONS"}


class AdminApi:
    """Credentials to actors, and the routes."""

    def __init__(self, service: AdminService, bootstrap: bytes | None, bootstrap_env: str):
        self.service = service
        self.bootstrap = bootstrap
        self.bootstrap_env = bootstrap_env
        self.sessions = SessionStore(service.db, service.tokens, f"env:{bootstrap_env}", bootstrap)

    def token_actor(self, token: str, via: str) -> Actor | None:
        token = token.strip()
        if self.bootstrap is not None and hmac.compare_digest(token.encode(), self.bootstrap):
            return Actor(f"env:{self.bootstrap_env}", "admin", via)
        return self.service.tokens.authenticate(token, via)

    def actor(
        self,
        request: Request,
        credentials: Annotated[HTTPAuthorizationCredentials | None, Depends(_bearer)],
    ) -> Actor:
        if credentials is None:
            session = self.sessions.find(request.cookies.get(COOKIE, ""))
            if session is not None:
                sent = request.headers.get(CSRF_HEADER, "")
                if request.method not in _SAFE and not hmac.compare_digest(
                    sent.encode(), session.csrf.encode()
                ):
                    refused = PermissionDenied(
                        f"缺少或错误的 {CSRF_HEADER} / missing or wrong {CSRF_HEADER} header",
                        reason="admin.csrf",
                    )
                    self.service.record(
                        session.actor, "session.csrf_refused", ADMIN_TENANT,
                        {"method": request.method, "path": request.url.path[:200]},
                        {"result": "refused", "code": refused.reason},
                        request.client.host if request.client else None,
                    )  # fmt: skip
                    raise refused
                return session.actor
            if request.cookies.get(COOKIE) and credentials is None:
                raise AuthenticationFailed(
                    "会话已结束，请重新登录 / the console session has ended: sign in again",
                    reason="admin.no_session",
                )
        if credentials is None or credentials.scheme.lower() != "bearer":
            raise AuthenticationFailed(
                "缺少管理令牌：Authorization: Bearer <token> / missing admin token: "
                "Authorization: Bearer <token>",
                reason="admin.missing_token",
            )
        actor = self.token_actor(credentials.credentials, "api")
        if actor is None:
            raise AuthenticationFailed(
                "管理令牌无效或已吊销 / invalid or revoked admin token",
                reason="admin.bad_token",
            )
        return actor


def build_admin_api(
    service: AdminService,
    bootstrap: bytes | None,
    bootstrap_env: str = "HESHI_ADMIN_TOKEN",
    operations: GatewayOperations | None = None,
    config: HeshiConfig | None = None,
    embedder: Callable[[], Any] | None = None,
) -> FastAPI:
    """The ``/admin/v1`` application (``embedder``: the gateway's passage embedder, for
    documents uploaded into knowledge bases)."""
    api = AdminApi(service, bootstrap, bootstrap_env)
    app = FastAPI(
        title="Heshi admin API",
        version=VERSION,
        description="Keys, admin tokens, usage and the audit log. 密钥、管理令牌、用量与审计日志。",
        docs_url=None,
        redoc_url=None,
    )

    @app.exception_handler(HeshiError)
    async def heshi_error(request: Request, exc: HeshiError) -> Response:
        return error_reply(exc)

    @app.exception_handler(RequestValidationError)
    async def invalid(request: Request, exc: RequestValidationError) -> Response:
        first = exc.errors()[0] if exc.errors() else {}
        loc = [str(p) for p in first.get("loc", ())]
        where = ".".join(loc[1:]) if first.get("type") != "json_invalid" else ""
        message = f"{where}: {first.get('msg', 'invalid')}" if where else first.get("msg", "")
        return error_reply(
            InvalidRequest(f"请求无效 / invalid request: {message}", param=where or None)
        )

    app.add_exception_handler(StarletteHTTPException, on_http_error)

    @app.exception_handler(Exception)
    async def unexpected(request: Request, exc: Exception) -> Response:
        log.exception("admin API: unexpected error on %s", request.url.path)
        failed = HeshiError("管理接口内部错误 / internal error in the admin API")
        return error_reply(failed)

    Who = Annotated[Actor, Depends(api.actor)]

    ip = client_ip

    @app.get("/whoami", response_model=WhoAmI, tags=["session"])
    def whoami(actor: Who) -> WhoAmI:
        return WhoAmI(name=actor.name, role=actor.role, via=actor.via)

    @app.get("/keys", response_model=list[KeyOut], tags=["keys"])
    def list_keys(actor: Who, tenant: Annotated[str | None, Query(max_length=64)] = None) -> Any:
        return [KeyOut.of(k) for k in service.list_keys(actor, tenant)]

    @app.post("/keys", response_model=KeyCreated, status_code=201, tags=["keys"])
    def create_key(actor: Who, body: KeyCreate, request: Request) -> Any:
        spec = KeySpec(
            body.tenant, body.name, body.models, body.rpm, body.tpm, body.budget_tokens,
            body.expires_at, body.budget_cny,
        )  # fmt: skip
        first = service.keys.count() == 0
        plaintext, key = service.create_key(actor, spec, ip(request))
        return JSONResponse(
            KeyCreated(key=plaintext, first_key=first, **KeyOut.of(key).model_dump()).model_dump(
                mode="json"
            ),
            status_code=201,
            headers=NO_STORE,
        )

    @app.get("/keys/{key_id}", response_model=KeyOut, tags=["keys"])
    def get_key(actor: Who, key_id: str) -> Any:
        return KeyOut.of(service.get_key(actor, key_id))

    @app.post("/keys/{key_id}/revoke", response_model=KeyOut, tags=["keys"])
    def revoke_key(actor: Who, key_id: str, request: Request) -> Any:
        return KeyOut.of(service.change_key(actor, key_id, "revoke", client_ip=ip(request)))

    @app.post("/keys/{key_id}/suspend", response_model=KeyOut, tags=["keys"])
    def suspend_key(actor: Who, key_id: str, body: Suspend, request: Request) -> Any:
        return KeyOut.of(
            service.change_key(actor, key_id, "suspend", body.reason, client_ip=ip(request))
        )

    @app.post("/keys/{key_id}/resume", response_model=KeyOut, tags=["keys"])
    def resume_key(actor: Who, key_id: str, request: Request) -> Any:
        return KeyOut.of(service.change_key(actor, key_id, "resume", client_ip=ip(request)))

    @app.get("/admin-tokens", response_model=list[TokenOut], tags=["admin tokens"])
    def list_tokens(actor: Who) -> Any:
        return [TokenOut.of(t) for t in service.list_admin_tokens(actor)]

    @app.post("/admin-tokens", response_model=TokenCreated, status_code=201, tags=["admin tokens"])
    def create_token(actor: Who, body: TokenCreate, request: Request) -> Any:
        plaintext, token = service.create_admin_token(actor, body.name, body.role, ip(request))
        created = TokenCreated(token=plaintext, **TokenOut.of(token).model_dump())
        return JSONResponse(created.model_dump(mode="json"), status_code=201, headers=NO_STORE)

    @app.post("/admin-tokens/{token_id}/revoke", response_model=TokenOut, tags=["admin tokens"])
    def revoke_token(actor: Who, token_id: str, request: Request) -> Any:
        return TokenOut.of(service.revoke_admin_token(actor, token_id, ip(request)))

    @app.get("/usage", response_model=list[UsageGroup], tags=["usage"])
    def usage(
        actor: Who,
        since: datetime,
        until: datetime | None = None,
        by: Literal["model", "key", "day", "endpoint", "reason", "tenant"] = "day",
        tenant: Annotated[str | None, Query(min_length=1, max_length=64)] = None,
        model: Annotated[str | None, Query(min_length=1, max_length=128)] = None,
        key_id: Annotated[str | None, Query(min_length=1, max_length=32)] = None,
        format: Literal["json", "csv"] = "json",
    ) -> Any:
        """Requests, tokens, errors, mean latency and TTFT per group; every tenant's unless
        ``tenant`` is given; ``format=csv`` downloads the same rows as CSV."""
        aware(since, "since")
        aware(until, "until")
        rows = service.usage(actor, tenant, since, until, by, model, key_id)
        if format == "csv":
            return Response(
                usage_csv(rows, by),
                media_type="text/csv; charset=utf-8",
                headers={"content-disposition": 'attachment; filename="heshi-usage.csv"'},
            )
        return [UsageGroup(**row.__dict__) for row in rows]

    @app.get("/pricing", response_model=PricingOut, tags=["usage"])
    def pricing(actor: Who) -> Any:
        """The price table (``pricing`` in heshi.yaml) that spend is computed with."""
        table = service.pricing
        return PricingOut(
            currency=table.currency,
            models={m: PriceOut(input=p.input, output=p.output) for m, p in table.models.items()},
            local_cost_per_hour=table.local_cost_per_hour,
        )

    _session_routes(app, api)
    add_audit_routes(app, api)
    if operations is not None:
        add_operation_routes(app, api, operations)
    if config is not None:
        add_guard_routes(app, api, config)
        add_tenant_routes(app, api, config)
    add_knowledge_routes(app, api)
    add_knowledge_changes(app, api, embedder)
    add_docjob_routes(app, api)
    add_calculator_routes(app, api)
    return app


def _session_routes(app: FastAPI, api: AdminApi) -> None:
    """Sign in, the session, sign out: the console's cookie."""
    service = api.service
    ip = client_ip

    @app.post("/session", response_model=SessionOut, tags=["session"])
    def sign_in(body: SignIn, request: Request, response: Response) -> Any:
        """Exchange an admin token for a console session cookie (HttpOnly, SameSite=Strict)."""
        actor = api.token_actor(body.token, "console")
        if actor is None:
            # logged, not audited: anyone can try, and the hash chain is not a bin for them
            log.warning("console sign-in refused from %s", ip(request))
            raise AuthenticationFailed(
                "管理令牌无效或已吊销 / invalid or revoked admin token", reason="admin.bad_token"
            )
        cookie, session = api.sessions.open(actor)
        service.record(actor, "session.open", ADMIN_TENANT, {}, {"result": "ok"}, ip(request))
        response.set_cookie(
            COOKIE,
            cookie,
            max_age=SESSION_HOURS * 3600,
            httponly=True,
            samesite="strict",
            secure=request.url.scheme == "https",
            path="/",
        )
        return SessionOut(
            name=actor.name, role=actor.role, csrf=session.csrf, expires_at=session.expires_at
        )

    @app.get("/session", response_model=SessionOut, tags=["session"])
    def current_session(request: Request) -> Any:
        """The signed-in console's session (its CSRF secret again, after a page reload)."""
        session = api.sessions.find(request.cookies.get(COOKIE, ""))
        if session is None:
            raise AuthenticationFailed("未登录 / not signed in", reason="admin.no_session")
        actor = session.actor
        return SessionOut(
            name=actor.name, role=actor.role, csrf=session.csrf, expires_at=session.expires_at
        )

    @app.delete("/session", status_code=204, tags=["session"])
    def sign_out(request: Request) -> Response:
        cookie = request.cookies.get(COOKIE, "")
        session = api.sessions.find(cookie)
        api.sessions.close(cookie)
        if session is not None:
            service.record(
                session.actor, "session.close", ADMIN_TENANT, {}, {"result": "ok"}, ip(request)
            )
        out = Response(status_code=204)
        out.delete_cookie(COOKIE, path="/")
        return out
