"""API-key authentication from an in-memory copy of the key table.

The request path only looks up a dict; a background task reloads it every
``refresh_seconds``. While the database is down the last good copy keeps serving, so an
outage of the database is not an outage of the gateway.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Callable
from datetime import UTC, datetime

from heshi.errors import AuthenticationFailed, HeshiError, PermissionDenied
from heshi.store.keys import ApiKey, KeyStore, hash_key
from heshi.tasks import cancel

log = logging.getLogger(__name__)


class KeyStoreUnavailable(HeshiError):
    """Keys could not be loaded even once since start-up (HTTP 503): refuse, never guess."""

    status_code = 503
    error_type = "server_error"
    code = "key_store_unavailable"
    reason = "auth.unavailable"


class KeyAuthenticator:
    """Turns an ``Authorization`` header into the caller's ``ApiKey``, or refuses it.

    No auth is needed in ``open_mode`` or while no key was ever created (the single-user
    quick start); once the first key exists, the next refresh makes keys mandatory.
    """

    def __init__(
        self,
        key_store: KeyStore,
        *,
        refresh_seconds: float,
        open_mode: bool,
        clock: Callable[[], datetime] = lambda: datetime.now(UTC),
    ) -> None:
        self._store = key_store
        self._refresh_seconds = refresh_seconds
        self._open_mode = open_mode
        self._clock = clock
        # Replaced whole on refresh, never mutated: readers need no lock.
        self._by_hash: dict[str, ApiKey] = {}
        self._any_key_exists = False
        self._loaded = False
        self._outage = False
        self._task: asyncio.Task[None] | None = None

    async def start(self) -> None:
        """Load the keys and start refreshing them in the background.

        A database that is down at start-up is logged, not raised: requests get 503 until
        the first load succeeds (except in open mode, which needs no keys).
        """
        if self._open_mode:
            return
        await self._refresh_logged()
        self._task = asyncio.create_task(self._refresh_forever(), name="heshi-key-refresh")

    async def close(self) -> None:
        """Stop the background refresh."""
        task, self._task = self._task, None
        await cancel(task)

    @property
    def ready(self) -> bool:
        """Keys can be checked: open mode, or the key table was loaded at least once."""
        return self._open_mode or self._loaded

    def refresh_now(self) -> None:
        """Reload the keys from the database now (blocking). Raises ``StoreUnavailable``."""
        keys = self._store.active_keys()
        total = self._store.count()
        self._by_hash = {key.key_hash: key for key in keys}
        self._any_key_exists = total > 0 or bool(keys)
        self._loaded = True

    def authenticate(self, authorization: str | None, model: str | None) -> ApiKey | None:
        """The caller's key, or None when this gateway needs no auth.

        Raises ``AuthenticationFailed`` (401: missing, malformed, unknown, revoked or expired
        key), ``PermissionDenied`` (403: suspended key, or ``model`` not allowed for it) and
        ``KeyStoreUnavailable`` (503: keys never loaded). ``model=None`` skips the model
        check (listing models). Never touches the database.
        """
        key = self.identify(authorization)
        if key is not None:
            _check_usable(key, model, self._clock())
        return key

    def identify(self, authorization: str | None) -> ApiKey | None:
        """Whose key this is — None when no auth is needed — without judging whether it
        may be used now (see :meth:`check_usable`): a request by a suspended or expired
        key is still that key's, for the ledger. Raises ``AuthenticationFailed`` for a
        missing, malformed or unknown key and ``KeyStoreUnavailable``."""
        if self._open_mode:
            return None
        if not self._loaded:
            raise KeyStoreUnavailable(
                "暂时无法验证 API 密钥，请稍后重试 / "
                "API keys cannot be checked right now; please retry shortly"
            )
        if not self._any_key_exists:
            return None
        # The key is a 256-bit random secret and we look up its sha256 in a dict. A timing
        # difference could at most reveal a prefix of the *hash* of a guess, which does not
        # help to find a valid key, so a constant-time comparison buys nothing here.
        key = self._by_hash.get(hash_key(_bearer_token(authorization)))
        if key is None:
            raise AuthenticationFailed(
                f"API 密钥无效或已被吊销 / invalid or revoked API key {KEY_HINT}",
                param="authorization",
            )
        return key

    def check_usable(self, key: ApiKey | None) -> None:
        """Raise when ``key`` may not be used now: expired (401), suspended (403)."""
        if key is not None:
            _check_usable(key, None, self._clock())

    def permit_model(self, key: ApiKey | None, model: str) -> None:
        """Raise ``PermissionDenied`` (403) when ``key`` may not use ``model``."""
        if key is not None and not key.allows_model(model):
            _deny_model(key, model)

    def may_use(self, key: ApiKey | None, model: str) -> bool:
        """Whether ``key`` (None: no key needed) may use ``model``."""
        return key is None or key.allows_model(model)

    async def _refresh_forever(self) -> None:
        while True:
            await asyncio.sleep(self._refresh_seconds)
            await self._refresh_logged()

    async def _refresh_logged(self) -> None:
        try:
            # A thread: the database driver blocks, and requests must never wait on it.
            await asyncio.to_thread(self.refresh_now)
        except Exception as exc:  # never crash: keep serving from the last good copy
            if not self._outage:
                self._outage = True
                log.warning(
                    "cannot reload API keys (%s); serving the %d cached keys until the "
                    "database is back",
                    str(exc).splitlines()[0] if str(exc) else type(exc).__name__,
                    len(self._by_hash),
                )
            return
        if self._outage:
            self._outage = False
            log.warning("API keys reloaded; the database is back")


# Why a key is needed and how to get one: the 401 is where a newcomer meets auth.
KEY_HINT = (
    "（此网关的数据库中已有密钥，因此要求密钥。用 `heshi keys create --tenant <租户> --name "
    "<名称>` 创建一个；单人本机使用可用 `heshi serve --open` 启动，不校验密钥）/ (keys are "
    "required because this gateway's database holds at least one; create one with "
    "`heshi keys create --tenant <tenant> --name <name>`, or for single-user use start "
    "`heshi serve --open`, which checks no keys)"
)


def _bearer_token(authorization: str | None) -> str:
    parts = (authorization or "").split()
    if not parts:
        raise AuthenticationFailed(
            "缺少 API 密钥：请提供 Authorization: Bearer <key> / "
            f"missing API key: send Authorization: Bearer <key> {KEY_HINT}",
            param="authorization",
            reason="auth.missing_key",
        )
    if len(parts) != 2 or parts[0].lower() != "bearer":
        # Never echo the header back: it may be a real key sent the wrong way.
        raise AuthenticationFailed(
            "Authorization 头格式应为 Bearer <key> / "
            "the Authorization header must be of the form Bearer <key>",
            param="authorization",
            reason="auth.malformed",
        )
    return parts[1]


def _check_usable(key: ApiKey, model: str | None, now: datetime) -> ApiKey:
    if key.is_expired(now):
        assert key.expires_at is not None
        when = key.expires_at.strftime("%Y-%m-%d %H:%M UTC")
        raise AuthenticationFailed(
            f"API 密钥已于 {when} 过期 / API key expired on {when}",
            param="authorization",
            reason="auth.expired_key",
        )
    if key.status == "suspended":
        reason = f"：{key.status_reason}" if key.status_reason else ""
        reason_en = f": {key.status_reason}" if key.status_reason else ""
        raise PermissionDenied(
            f"API 密钥已被暂停{reason} / API key is suspended{reason_en}", reason="key.suspended"
        )
    if key.status != "active":
        raise AuthenticationFailed(
            "API 密钥无效或已被吊销 / invalid or revoked API key", param="authorization"
        )
    if model is not None and not key.allows_model(model):
        _deny_model(key, model)
    return key


def _deny_model(key: ApiKey, model: str) -> None:
    allowed = ", ".join(key.models or ())
    raise PermissionDenied(
        f"此 API 密钥无权使用模型 '{model}'（允许：{allowed}）/ "
        f"this API key may not use model '{model}' (allowed: {allowed})",
        param="model",
        reason="key.model_not_allowed",
    )
