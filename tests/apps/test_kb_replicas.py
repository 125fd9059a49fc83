"""Two gateway replicas on one PostgreSQL serve one knowledge-base conversation: a session
begun on one continues on the other, a handoff on either holds the whole conversation, and
both meter into the one ledger (the tiny model, the built-in embedder, a real PostgreSQL)."""

from __future__ import annotations

from contextlib import ExitStack
from pathlib import Path

import pytest
from sqlalchemy import func, select

from heshi.apps.kb.sessions import SessionStore
from heshi.config import HeshiConfig, StoreConfig
from heshi.gateway.app import create_app
from heshi.store.db import Database
from heshi.store.tables import kb_sessions, usage_ledger
from tests.apps.test_kb_gateway import client, kb_config, prepare
from tests.conftest import local_engines
from tests.loopback import serve_app
from tests.store.databases import database, pg_admin, pg_module_url  # noqa: F401 - fixtures


@pytest.mark.parametrize("database", ["postgresql"], indirect=True)
def test_two_replicas_on_one_postgresql_serve_one_conversation(
    database: Database,  # noqa: F811
    tiny_config: HeshiConfig,
    tmp_path: Path,
) -> None:
    url = database.url.render_as_string(hide_password=False)
    config = kb_config(tiny_config).model_copy(update={"store": StoreConfig(url=url)})
    prepare(config, tmp_path).dispose()

    def ask(replica: str, question: str) -> dict[str, object]:
        answer = client(replica).chat.completions.create(
            model="kb:shop",
            messages=[{"role": "user", "content": question}],
            extra_body={"session_id": "r-1"},
        )
        return {"text": answer.choices[0].message.content or "", **(answer.model_extra or {})}

    with ExitStack() as stack:
        a = stack.enter_context(serve_app(create_app(config, local_engines(config))))
        b = stack.enter_context(serve_app(create_app(config, local_engines(config))))
        first = ask(a, "团队版每人每年多少钱？")
        second = ask(b, "那企业版呢？")
        third = ask(a, "我要投诉，转人工")
    assert first["grounded"] is True and "360" in str(first["text"])
    assert second["grounded"] is True and "680" in str(second["text"])
    assert third["handoff"] is True

    with database.read() as conn:
        stored = conn.execute(select(kb_sessions.c.messages).where(kb_sessions.c.id == "r-1"))
        messages = stored.scalar_one()
        metered = conn.execute(
            select(func.count()).select_from(usage_ledger).where(usage_ledger.c.model == "kb:shop")
        ).scalar_one()
    # replica B read replica A's turn before answering (else it would have saved only its
    # own), and A read B's in turn
    assert [m["content"] for m in messages if m["role"] == "user"] == [
        "团队版每人每年多少钱？",
        "那企业版呢？",
        "我要投诉，转人工",
    ]
    [handoff] = SessionStore(database).handoffs("shop", None, 10)
    assert handoff.session_id == "r-1" and handoff.reason == "asked"
    assert [m["content"] for m in handoff.conversation if m["role"] == "user"][:2] == [
        "团队版每人每年多少钱？",
        "那企业版呢？",
    ]
    assert metered == 3  # each replica metered its own answers into the one ledger
