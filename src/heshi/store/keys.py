"""API keys: create, list, look up and change the state of keys; only hashes are stored."""

from __future__ import annotations

import builtins
import hashlib
import math
import secrets
from collections.abc import Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any, Literal, cast

from sqlalchemy import Connection, func, or_, select, update

from heshi.errors import HeshiError, InvalidRequest
from heshi.store.db import Database
from heshi.store.tables import api_keys

KeyStatus = Literal["active", "suspended", "revoked"]
KEY_PREFIX = "hs-"
PREFIX_CHARS = 12  # of the plaintext key, shown in listings so people can tell keys apart
_MAX_LABEL = 64
MICRO = 1_000_000  # money is counted in micro-yuan: integers, exact
MAX_BUDGET_CNY = 1e9


class KeyNotFound(HeshiError):
    """No key has this id or prefix (HTTP 404)."""

    status_code = 404
    error_type = "invalid_request_error"
    code = "key_not_found"

    def __init__(self, id_or_prefix: str) -> None:
        super().__init__(
            f"找不到 API 密钥 {id_or_prefix!r}（请用 `heshi keys list` 查看 id）/ "
            f"no API key with id or prefix {id_or_prefix!r} (see `heshi keys list`)"
        )


class KeyStateError(HeshiError):
    """The requested change is not possible in the key's current state (HTTP 409)."""

    status_code = 409
    error_type = "invalid_request_error"
    code = "key_state_conflict"


class InvalidKeySpec(InvalidRequest):
    """A field given to ``KeyStore.create`` is invalid; ``param`` names it (HTTP 400)."""

    code = "invalid_key_spec"


@dataclass(frozen=True)
class ApiKey:
    """One API key as stored: everything except the plaintext, which is never kept."""

    id: str
    tenant: str
    name: str
    prefix: str
    key_hash: str = field(repr=False)
    models: tuple[str, ...] | None  # None = every model
    rpm: int | None
    tpm: int | None
    budget_tokens: int | None
    expires_at: datetime | None
    status: KeyStatus
    status_reason: str | None
    created_at: datetime
    updated_at: datetime
    budget_micro: int | None = None  # lifetime spend limit, micro-yuan (CNY × 10⁻⁶)

    @property
    def budget_cny(self) -> float | None:
        """The spend limit in yuan (None: none)."""
        return None if self.budget_micro is None else self.budget_micro / MICRO

    def allows_model(self, model: str) -> bool:
        """True when this key may call ``model``."""
        return self.models is None or model in self.models

    def is_expired(self, now: datetime) -> bool:
        """True when the key has an expiry time at or before ``now``."""
        return self.expires_at is not None and self.expires_at <= now


def hash_key(key: str) -> str:
    """The stored form of a plaintext key: its sha256 as hex.

    A plain fast hash is right here, unlike for passwords: keys are 256 random bits, so
    there is nothing to brute-force, and a slow KDF would cost time on every request.
    """
    return hashlib.sha256(key.encode("utf-8")).hexdigest()


class KeyStore:
    """API keys in the ``api_keys`` table. Every method is one short transaction."""

    def __init__(self, db: Database) -> None:
        self.db = db

    def create(
        self,
        tenant: str,
        name: str,
        *,
        models: Sequence[str] | None = None,
        rpm: int | None = None,
        tpm: int | None = None,
        budget_tokens: int | None = None,
        expires_at: datetime | None = None,
        budget_cny: float | None = None,
        conn: Connection | None = None,
    ) -> tuple[str, ApiKey]:
        """Create a key and return ``(plaintext, key)``; the plaintext is never seen again.
        With ``conn``, inside that transaction (the caller's audit record commits with it).

        Raises ``InvalidKeySpec`` naming the bad field, ``StoreUnavailable`` on DB errors.
        """
        now = datetime.now(UTC)
        _check_label("tenant", tenant)
        _check_label("name", name)
        _check_limit("rpm", rpm, minimum=1)
        _check_limit("tpm", tpm, minimum=1)
        _check_limit("budget_tokens", budget_tokens, minimum=0)
        budget_micro = _micro_yuan(budget_cny)
        if expires_at is not None:
            if expires_at.tzinfo is None:
                raise InvalidKeySpec(
                    "expires_at 必须带时区 / expires_at must be timezone-aware",
                    param="expires_at",
                )
            if expires_at <= now:
                raise InvalidKeySpec(
                    f"过期时间已过 / expires_at {expires_at.isoformat()} is in the past",
                    param="expires_at",
                )
        plaintext = KEY_PREFIX + secrets.token_urlsafe(32)
        values = {
            "id": "key_" + secrets.token_hex(6),
            "tenant": tenant,
            "name": name,
            "prefix": plaintext[:PREFIX_CHARS],
            "key_hash": hash_key(plaintext),
            "models": _check_models(models),
            "rpm": rpm,
            "tpm": tpm,
            "budget_tokens": budget_tokens,
            "budget_micro": budget_micro,
            "expires_at": expires_at,
            "status": "active",
            "status_reason": None,
            "created_at": now,
            "updated_at": now,
        }
        with self.db.writing(conn) as tx:
            tx.execute(api_keys.insert().values(**values))
        return plaintext, _to_key(values)

    # ``builtins.list`` below: inside this class, ``list`` names the method.
    def list(self, tenant: str | None = None) -> builtins.list[ApiKey]:
        """Every key (revoked ones too), oldest first; only ``tenant``'s when given."""
        query = select(api_keys).order_by(api_keys.c.created_at, api_keys.c.id)
        if tenant is not None:
            query = query.where(api_keys.c.tenant == tenant)
        with self.db.outage_as_unavailable(), self.db.read() as conn:
            return [_to_key(row._mapping) for row in conn.execute(query)]

    def get(self, id_or_prefix: str) -> ApiKey:
        """The key with this id, or else the one key whose prefix this is.

        Raises ``KeyNotFound``, or ``KeyStateError`` when a prefix matches several keys.
        """
        with self.db.outage_as_unavailable(), self.db.read() as conn:
            return self._find(conn, id_or_prefix)

    def revoke(self, id_or_prefix: str, conn: Connection | None = None) -> ApiKey:
        """Revoke a key for good (revoking twice is harmless). Returns the updated key."""
        return self._transition(id_or_prefix, "revoked", None, conn)

    def suspend(
        self, id_or_prefix: str, reason: str | None = None, conn: Connection | None = None
    ) -> ApiKey:
        """Suspend a key until ``resume``; ``reason`` is shown to its callers."""
        return self._transition(id_or_prefix, "suspended", reason, conn)

    def resume(self, id_or_prefix: str, conn: Connection | None = None) -> ApiKey:
        """Make a suspended key active again. Raises ``KeyStateError`` for revoked keys."""
        return self._transition(id_or_prefix, "active", None, conn)

    def active_keys(self) -> builtins.list[ApiKey]:
        """Keys that are not revoked: active or suspended, expired or not.

        This is what an authenticator caches; it needs suspended and expired keys too so it
        can tell their callers why they are refused.
        """
        query = select(api_keys).where(api_keys.c.status != "revoked")
        with self.db.outage_as_unavailable(), self.db.read() as conn:
            return [_to_key(row._mapping) for row in conn.execute(query)]

    def count(self) -> int:
        """How many keys were ever created, revoked ones included."""
        with self.db.outage_as_unavailable(), self.db.read() as conn:
            return int(conn.execute(select(func.count()).select_from(api_keys)).scalar_one())

    def _transition(
        self, id_or_prefix: str, status: KeyStatus, reason: str | None, tx: Connection | None
    ) -> ApiKey:
        if reason is not None and len(reason) > 500:
            raise InvalidKeySpec("原因过长 / reason is longer than 500 characters", param="reason")
        if reason is not None and not reason.isprintable():
            # it is printed in terminals (heshi keys list) and told to callers
            raise InvalidKeySpec(
                "原因只能含可打印字符 / reason must be printable characters (no control codes "
                "or line breaks)",
                param="reason",
            )
        with self.db.writing(tx) as conn:
            # Row lock (PostgreSQL; SQLite's BEGIN IMMEDIATE already serialises writers):
            # a resume racing a revoke must see the revoke, never undo it.
            key = self._find(conn, id_or_prefix, lock=True)
            if key.status == "revoked" and status != "revoked":
                raise KeyStateError(
                    f"密钥 {key.id} 已被吊销，无法恢复或暂停 / "
                    f"key {key.id} is revoked and cannot be resumed or suspended"
                )
            if key.status == status and key.status_reason == reason:
                return key
            conn.execute(
                update(api_keys)
                .where(api_keys.c.id == key.id)
                .values(status=status, status_reason=reason, updated_at=datetime.now(UTC))
            )
            return self._find(conn, key.id)

    def _find(self, conn: Connection, id_or_prefix: str, *, lock: bool = False) -> ApiKey:
        query = select(api_keys).where(
            or_(api_keys.c.id == id_or_prefix, api_keys.c.prefix == id_or_prefix)
        )
        rows = conn.execute(query.with_for_update() if lock else query).all()
        exact = [row for row in rows if row.id == id_or_prefix]
        if exact:
            return _to_key(exact[0]._mapping)
        if len(rows) > 1:
            ids = ", ".join(sorted(row.id for row in rows))
            raise KeyStateError(
                f"前缀 {id_or_prefix!r} 对应多个密钥（{ids}），请用 id / "
                f"prefix {id_or_prefix!r} matches several keys ({ids}); use the id"
            )
        if not rows:
            raise KeyNotFound(id_or_prefix)
        return _to_key(rows[0]._mapping)


def _to_key(row: Any) -> ApiKey:
    models = row["models"]
    return ApiKey(
        id=row["id"],
        tenant=row["tenant"],
        name=row["name"],
        prefix=row["prefix"],
        key_hash=row["key_hash"],
        models=None if models is None else tuple(models),
        rpm=row["rpm"],
        tpm=row["tpm"],
        budget_tokens=row["budget_tokens"],
        expires_at=row["expires_at"],
        status=cast(KeyStatus, row["status"]),
        status_reason=row["status_reason"],
        created_at=row["created_at"],
        updated_at=row["updated_at"],
        budget_micro=row["budget_micro"],
    )


def _check_label(field_name: str, value: str) -> None:
    # Tenants and names end up in tables, logs and CSV: keep them one short, visible line.
    if not value or not value.strip() or len(value) > _MAX_LABEL or not value.isprintable():
        raise InvalidKeySpec(
            f"{field_name} 必须是 1–{_MAX_LABEL} 个可打印字符 / "
            f"{field_name} must be 1–{_MAX_LABEL} printable characters (got {value!r})",
            param=field_name,
        )


def _check_limit(field_name: str, value: int | None, *, minimum: int) -> None:
    if value is not None and (isinstance(value, bool) or value < minimum):
        raise InvalidKeySpec(
            f"{field_name} 必须 ≥ {minimum} / {field_name} must be ≥ {minimum} (got {value!r})",
            param=field_name,
        )


def _micro_yuan(budget_cny: float | None) -> int | None:
    """A money budget in yuan as the integer micro-yuan it is stored and counted in."""
    if budget_cny is None:
        return None
    if (
        isinstance(budget_cny, bool)
        or not isinstance(budget_cny, int | float)
        or not math.isfinite(budget_cny)
        or not 0 <= budget_cny <= MAX_BUDGET_CNY
    ):
        raise InvalidKeySpec(
            f"budget_cny 必须在 0 到 {MAX_BUDGET_CNY:g} 元之间 / budget_cny must be between 0"
            f" and {MAX_BUDGET_CNY:g} yuan (got {budget_cny!r})",
            param="budget_cny",
        )
    return round(budget_cny * MICRO)


def _check_models(models: Sequence[str] | None) -> list[str] | None:
    if models is None:
        return None
    if isinstance(models, str):
        # A bare string would silently become a list of its characters.
        raise InvalidKeySpec("models 必须是列表 / models must be a list", param="models")
    cleaned = list(dict.fromkeys(m.strip() for m in models))
    if not cleaned or any(not m or len(m) > 128 or not m.isprintable() for m in cleaned):
        raise InvalidKeySpec(
            "models 必须是非空的模型名列表（省略则允许所有模型）/ "
            "models must be a non-empty list of model names (omit it to allow every model)",
            param="models",
        )
    return cleaned


__all__ = [
    "ApiKey",
    "InvalidKeySpec",
    "KeyNotFound",
    "KeyStateError",
    "KeyStatus",
    "KeyStore",
    "hash_key",
]
