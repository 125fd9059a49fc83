"""Admin credentials: who may change Heshi (role ``admin``) or only look (``auditor``).

A token is 32 random bytes shown once at creation (``hsa-…``); the store keeps its
sha256, a prefix to tell tokens apart, and when it was last used. ``HESHI_ADMIN_TOKEN``
(``server.admin_token_env``) stays a bootstrap credential with the admin role, so a new
deployment can create its first named tokens over HTTP, and scripts that used it for
``/metrics`` keep working.
"""

from __future__ import annotations

import hashlib
import hmac
import secrets
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import Any, Literal, cast

from sqlalchemy import Connection, select, update

from heshi.errors import HeshiError, InvalidRequest, PermissionDenied
from heshi.store.db import Database
from heshi.store.tables import admin_tokens

Role = Literal["admin", "auditor"]
ROLES: tuple[Role, ...] = ("admin", "auditor")
TOKEN_PREFIX = "hsa-"
_PREFIX_CHARS = 12
_TOUCH_EVERY = timedelta(minutes=1)  # last_used_at is written at most this often


class AdminTokenNotFound(HeshiError):
    """No admin token has this id or prefix (HTTP 404)."""

    status_code = 404
    error_type = "invalid_request_error"
    code = "admin_token_not_found"

    def __init__(self, id_or_prefix: str) -> None:
        shown = safe_reference(id_or_prefix)  # never echo a whole token back
        super().__init__(f"找不到管理令牌 {shown!r} / no admin token with id or prefix {shown!r}")


@dataclass(frozen=True)
class Actor:
    """Who performs an admin action, as the audit log records it."""

    name: str  # the token's name, "env:HESHI_ADMIN_TOKEN", or "cli:<user>"
    role: Role
    via: str  # api | console | cli
    token_id: str | None = None

    def require(self, role: Role) -> None:
        """Raise ``PermissionDenied`` unless this actor may act as ``role``."""
        if role == "admin" and self.role != "admin":
            raise PermissionDenied(
                "审计员只能查看，不能修改 / the auditor role can only read, not change",
                reason="admin.role",
            )


@dataclass(frozen=True)
class AdminToken:
    """One admin token as stored (never its plaintext)."""

    id: str
    name: str
    role: Role
    prefix: str
    created_at: datetime
    revoked_at: datetime | None
    last_used_at: datetime | None

    def as_json(self) -> dict[str, Any]:
        return {
            "id": self.id,
            "name": self.name,
            "role": self.role,
            "prefix": self.prefix,
            "created_at": self.created_at.isoformat(),
            "revoked_at": self.revoked_at.isoformat() if self.revoked_at else None,
            "last_used_at": self.last_used_at.isoformat() if self.last_used_at else None,
        }


RESERVED_PREFIXES = ("env:", "cli:")  # actors that are not tokens are named so


def safe_reference(text: str) -> str:
    """What may be written down about a token reference: an id or a prefix as given, a
    whole token cut to its prefix."""
    return text[:_PREFIX_CHARS] if text.startswith(TOKEN_PREFIX) else text[:64]


def hash_token(token: str) -> str:
    return hashlib.sha256(token.encode()).hexdigest()


def check_role(role: str) -> Role:
    for known in ROLES:
        if role == known:
            return known
    raise InvalidRequest(
        f"角色须为 admin 或 auditor / role must be admin or auditor, got {role!r}",
        param="role",
    )


class AdminTokenStore:
    """Admin tokens in ``db``."""

    def __init__(self, db: Database) -> None:
        self.db = db

    def create(
        self, name: str, role: str, conn: Connection | None = None
    ) -> tuple[str, AdminToken]:
        """A new token: (its plaintext, shown once; what is stored)."""
        name = name.strip()
        if not 1 <= len(name) <= 64 or not name.isprintable():
            raise InvalidRequest(
                "名称须为 1–64 个可打印字符 / name must be 1–64 printable characters",
                param="name",
            )
        if name.lower().startswith(RESERVED_PREFIXES):
            raise InvalidRequest(
                "名称不能以 env: 或 cli: 开头（留给非令牌的操作者）/ a token name cannot start "
                "with env: or cli: (those name actors that are not tokens)",
                param="name",
            )
        role = check_role(role)
        plaintext = TOKEN_PREFIX + secrets.token_urlsafe(32)
        now = datetime.now(UTC)
        row = {
            "id": "adm_" + secrets.token_hex(6),
            "name": name,
            "role": role,
            "prefix": plaintext[:_PREFIX_CHARS],
            "token_hash": hash_token(plaintext),
            "created_at": now,
            "revoked_at": None,
            "last_used_at": None,
        }
        with self.db.writing(conn) as tx:
            tx.execute(admin_tokens.insert().values(**row))
        return plaintext, _token(row)

    def list(self) -> list[AdminToken]:
        with self.db.outage_as_unavailable(), self.db.read() as conn:
            rows = conn.execute(select(admin_tokens).order_by(admin_tokens.c.created_at))
            return [_token(r._mapping) for r in rows]

    def revoke(self, reference: str, conn: Connection | None = None) -> AdminToken:
        """Revoke the token with this id, prefix — or the whole token itself (a leaked one
        pasted in)."""
        c = admin_tokens.c
        whole = reference.startswith(TOKEN_PREFIX) and len(reference) > _PREFIX_CHARS
        match = (
            c.token_hash == hash_token(reference)
            if whole
            else ((c.id == reference) | (c.prefix == reference))
        )
        with self.db.writing(conn) as tx:
            row = tx.execute(select(admin_tokens).where(match)).first()
            if row is None:
                raise AdminTokenNotFound(reference)
            token = _token(row._mapping)
            if token.revoked_at is None:
                now = datetime.now(UTC)
                tx.execute(
                    update(admin_tokens).where(admin_tokens.c.id == token.id).values(revoked_at=now)
                )
                token = AdminToken(**{**token.__dict__, "revoked_at": now})
            return token

    def authenticate(self, plaintext: str, via: str) -> Actor | None:
        """The actor a live token stands for, or None for an unknown or revoked one."""
        if not plaintext.startswith(TOKEN_PREFIX) or len(plaintext) > 128:
            return None
        digest = hash_token(plaintext)
        with self.db.outage_as_unavailable(), self.db.read() as conn:
            row = conn.execute(
                select(admin_tokens).where(admin_tokens.c.token_hash == digest)
            ).first()
        if row is None:
            return None
        token = _token(row._mapping)
        # the index found it; compare anyway so no timing difference leaks a prefix
        if token.revoked_at is not None or not hmac.compare_digest(digest, row.token_hash):
            return None
        self._touch(token)
        return Actor(token.name, token.role, via, token.id)

    def get(self, token_id: str) -> AdminToken | None:
        with self.db.outage_as_unavailable(), self.db.read() as conn:
            row = conn.execute(select(admin_tokens).where(admin_tokens.c.id == token_id)).first()
        return None if row is None else _token(row._mapping)

    def _touch(self, token: AdminToken) -> None:
        now = datetime.now(UTC)
        if token.last_used_at is not None and now - token.last_used_at < _TOUCH_EVERY:
            return
        with self.db.outage_as_unavailable(), self.db.begin() as conn:
            conn.execute(
                update(admin_tokens).where(admin_tokens.c.id == token.id).values(last_used_at=now)
            )


def _token(row: Any) -> AdminToken:
    return AdminToken(
        id=row["id"],
        name=row["name"],
        role=cast(Role, row["role"]),
        prefix=row["prefix"],
        created_at=row["created_at"],
        revoked_at=row["revoked_at"],
        last_used_at=row["last_used_at"],
    )
