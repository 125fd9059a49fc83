"""Conversations with a knowledge base and the handoffs they end in, in the SQL store.

A session is keyed by the caller's id (``--session``, or ``session_id`` in a request), so
two gateway replicas on one PostgreSQL continue the same conversation. Only the last
turns are kept (what the bot reads back), plus the count of answers in a row the base
could not ground — the third such turn goes to a person.
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any

from sqlalchemy import Connection, insert, select, update

from heshi.apps.kb.store import new_id
from heshi.errors import HeshiError, InvalidRequest
from heshi.store.db import Database
from heshi.store.tables import kb_handoffs, kb_sessions

KEPT_MESSAGES = 20
_SESSION_ID = re.compile(r"^[A-Za-z0-9_.:\-]{1,64}$")


@dataclass
class Session:
    id: str
    kb: str
    tenant: str | None
    messages: list[dict[str, str]] = field(default_factory=list)
    failures: int = 0
    handed_off: bool = False
    stored: bool = False


@dataclass(frozen=True)
class Handoff:
    id: str
    kb: str
    tenant: str | None
    session_id: str
    reason: str
    conversation: list[dict[str, str]]
    status: str
    webhook: str | None
    created_at: datetime

    def as_json(self) -> dict[str, Any]:
        return {
            "id": self.id,
            "kb": self.kb,
            "tenant": self.tenant,
            "session_id": self.session_id,
            "reason": self.reason,
            "conversation": self.conversation,
            "status": self.status,
            "webhook": self.webhook,
            "created_at": self.created_at.isoformat(),
        }


def check_session_id(value: str) -> str:
    if not _SESSION_ID.match(value):
        raise InvalidRequest(
            "session_id 须为 1-64 个字母、数字或 _ . : - / session_id must be 1-64 letters, "
            "digits or _ . : -",
            param="session_id",
        )
    return value


class SessionStore:
    def __init__(self, db: Database) -> None:
        self.db = db

    def load(self, session_id: str, kb: str, tenant: str | None) -> Session:
        """The stored session, or a new one. A session belongs to one base and tenant: an
        id already used elsewhere is refused rather than read."""
        check_session_id(session_id)
        with self.db.read() as conn:
            row = (
                conn.execute(select(kb_sessions).where(kb_sessions.c.id == session_id))
                .mappings()
                .first()
            )
        if row is None:
            return Session(session_id, kb, tenant)
        if row["kb"] != kb or row["tenant"] != tenant:
            raise InvalidRequest(
                "此 session_id 属于另一个知识库或租户 / this session_id belongs to another "
                "knowledge base or tenant",
                param="session_id",
            )
        return Session(
            session_id, kb, tenant, list(row["messages"]), int(row["failures"]),
            bool(row["handed_off"]), stored=True,
        )  # fmt: skip

    def save(self, session: Session) -> None:
        now = datetime.now(UTC)
        values = {
            "messages": session.messages[-KEPT_MESSAGES:],
            "failures": session.failures,
            "handed_off": session.handed_off,
            "updated_at": now,
        }
        with self.db.begin() as conn:
            if session.stored:
                conn.execute(
                    update(kb_sessions).where(kb_sessions.c.id == session.id).values(**values)
                )
            else:
                conn.execute(
                    insert(kb_sessions).values(
                        id=session.id, kb=session.kb, tenant=session.tenant, created_at=now,
                        **values,
                    )
                )  # fmt: skip
        session.stored = True

    def hand_off(self, session: Session, reason: str, webhook: str | None) -> Handoff:
        handoff = Handoff(
            id=new_id("ho_")[:32], kb=session.kb, tenant=session.tenant, session_id=session.id,
            reason=reason, conversation=session.messages[-KEPT_MESSAGES:], status="open",
            webhook=webhook, created_at=datetime.now(UTC),
        )  # fmt: skip
        with self.db.begin() as conn:
            conn.execute(
                insert(kb_handoffs).values(
                    id=handoff.id, kb=handoff.kb, tenant=handoff.tenant,
                    session_id=handoff.session_id, reason=handoff.reason,
                    conversation=handoff.conversation, status=handoff.status,
                    webhook=handoff.webhook, created_at=handoff.created_at,
                )
            )  # fmt: skip
        return handoff

    def set_webhook(self, handoff_id: str, outcome: str) -> None:
        with self.db.begin() as conn:
            conn.execute(
                update(kb_handoffs).where(kb_handoffs.c.id == handoff_id).values(webhook=outcome)
            )

    def move_handoff(self, handoff_id: str, status: str, conn: Connection | None = None) -> Handoff:
        """``open`` → ``taken`` (a person has the conversation), ``open``/``taken`` →
        ``closed``. ``HandoffNotFound`` (404) for an unknown id, ``HandoffStateError``
        (409) for any other move; the check and the change are one statement. With
        ``conn``, inside that transaction."""
        allowed = _MOVES.get(status)
        if allowed is None:
            raise InvalidRequest(
                f"状态只能是 taken 或 closed / status must be taken or closed, not {status!r}",
                param="status",
            )
        h = kb_handoffs.c
        with self.db.writing(conn) as tx:
            # a unique prefix will do, as for keys: listings show the start of an id
            prefix = select(h.id).where(h.id.startswith(handoff_id, autoescape=True)).limit(2)
            found = list(tx.execute(prefix).scalars())
            if len(found) == 1 and len(handoff_id) >= 6:
                handoff_id = found[0]
            moved = tx.execute(
                update(kb_handoffs)
                .where(h.id == handoff_id, h.status.in_(allowed))
                .values(status=status)
            ).rowcount
            row = tx.execute(select(kb_handoffs).where(h.id == handoff_id)).mappings().first()
        if row is None:
            raise HandoffNotFound(
                f"没有转人工记录 {handoff_id!r} / no handoff {handoff_id!r}", param="id"
            )
        if not moved:
            raise HandoffStateError(
                f"转人工记录 {handoff_id} 当前为 {row['status']}，不能改为 {status} / handoff"
                f" {handoff_id} is {row['status']}: it cannot become {status}"
            )
        return Handoff(**dict(row))

    def handoffs(
        self, kb: str | None = None, status: str | None = None, limit: int = 100
    ) -> list[Handoff]:
        query = select(kb_handoffs).order_by(kb_handoffs.c.created_at.desc()).limit(limit)
        if kb is not None:
            query = query.where(kb_handoffs.c.kb == kb)
        if status is not None:
            query = query.where(kb_handoffs.c.status == status)
        with self.db.read() as conn:
            return [Handoff(**dict(r)) for r in conn.execute(query).mappings()]


# The statuses a handoff may move to, and from which.
_MOVES = {"taken": ("open",), "closed": ("open", "taken")}


class HandoffNotFound(InvalidRequest):
    """No handoff has this id (HTTP 404)."""

    status_code = 404
    code = "handoff_not_found"


class HandoffStateError(HeshiError):
    """The handoff's status does not allow this move (HTTP 409)."""

    status_code = 409
    error_type = "invalid_request_error"
    code = "handoff_state_conflict"
