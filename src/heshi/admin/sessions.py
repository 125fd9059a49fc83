"""Console sign-ins: an admin token exchanged for a session cookie.

The cookie holds 32 random bytes; the database keeps their sha256, the token the session
stands for and a CSRF secret the page sends back in a header on every change (a cookie
alone, which a browser attaches to any request, never changes anything). Sessions last
``SESSION_HOURS``; revoking the token ends its sessions at their next request, and every
replica on the database knows every session.
"""

from __future__ import annotations

import hashlib
import secrets
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta

from sqlalchemy import delete, select

from heshi.admin.tokens import Actor, AdminTokenStore, Role
from heshi.store.db import Database
from heshi.store.tables import admin_sessions

SESSION_HOURS = 12
BOOTSTRAP_ID = "env:"  # + a fingerprint of HESHI_ADMIN_TOKEN: the token_id of its sessions


@dataclass(frozen=True)
class Session:
    """A signed-in console: who, and the CSRF secret its page holds."""

    actor: Actor
    csrf: str
    expires_at: datetime


def _digest(session_id: str) -> str:
    return hashlib.sha256(session_id.encode()).hexdigest()


class SessionStore:
    """Console sessions in ``db``."""

    def __init__(
        self,
        db: Database,
        tokens: AdminTokenStore,
        bootstrap_name: str,
        bootstrap: bytes | None = None,
    ) -> None:
        self.db = db
        self.tokens = tokens
        self.bootstrap_name = bootstrap_name
        # a session opened with the bootstrap token lives only while that same value is
        # configured: rotating or removing HESHI_ADMIN_TOKEN ends it on every replica
        self._bootstrap_id = (
            BOOTSTRAP_ID + hashlib.sha256(b"heshi-session:" + bootstrap).hexdigest()[:16]
            if bootstrap
            else None
        )

    def open(self, actor: Actor) -> tuple[str, Session]:
        """A new session for ``actor`` (signed in with its token): (cookie value, session)."""
        session_id = secrets.token_urlsafe(32)
        now = datetime.now(UTC)
        csrf = secrets.token_urlsafe(32)
        expires = now + timedelta(hours=SESSION_HOURS)
        token_id = actor.token_id or self._bootstrap_id
        if token_id is None:
            raise ValueError("a session needs a token or the bootstrap credential")
        with self.db.outage_as_unavailable(), self.db.begin() as conn:
            conn.execute(admin_sessions.delete().where(admin_sessions.c.expires_at < now))
            conn.execute(
                admin_sessions.insert().values(
                    id_hash=_digest(session_id),
                    token_id=token_id,
                    csrf=csrf,
                    created_at=now,
                    expires_at=expires,
                )
            )
        console = Actor(actor.name, actor.role, "console", actor.token_id)
        return session_id, Session(console, csrf, expires)

    def find(self, session_id: str) -> Session | None:
        """The live session of a cookie value, or None (unknown, expired, token revoked)."""
        if not session_id or len(session_id) > 128:
            return None
        with self.db.outage_as_unavailable(), self.db.read() as conn:
            row = conn.execute(
                select(admin_sessions).where(admin_sessions.c.id_hash == _digest(session_id))
            ).first()
        if row is None or row.expires_at <= datetime.now(UTC):
            return None
        if row.token_id.startswith(BOOTSTRAP_ID):
            if row.token_id != self._bootstrap_id:
                return None  # opened with a bootstrap value no longer configured
            role: Role = "admin"
            actor = Actor(self.bootstrap_name, role, "console", None)
        else:
            token = self.tokens.get(row.token_id)
            if token is None or token.revoked_at is not None:
                return None
            actor = Actor(token.name, token.role, "console", token.id)
        return Session(actor, row.csrf, row.expires_at)

    def close(self, session_id: str) -> None:
        with self.db.outage_as_unavailable(), self.db.begin() as conn:
            conn.execute(
                delete(admin_sessions).where(admin_sessions.c.id_hash == _digest(session_id))
            )
