"""``/admin/v1/kb`` and ``/kb-handoffs`` on a real gateway, and the console's Knowledge
page: the bases with their documents, and the handoff queue."""

from __future__ import annotations

from pathlib import Path

import httpx

from heshi.apps.kb.sessions import Session, SessionStore
from heshi.apps.kb.store import KnowledgeBaseStore
from tests.conftest import ADMIN, ADMIN_TOKEN
from tests.fakes.upstream import FakeUpstream
from tests.governance.conftest import GatewayFactory, gateway_config, start_gateway, upstream

__all__ = ["start_gateway", "upstream"]  # fixtures used here
API = "/admin/v1"


def test_bases_documents_and_the_handoff_queue(
    tmp_path: Path, upstream: FakeUpstream, start_gateway: GatewayFactory
) -> None:
    from playwright.sync_api import expect, sync_playwright

    from tests.web.test_console_browser import chromium_path

    gw = start_gateway(gateway_config(tmp_path / "home", upstream.base_url))
    KnowledgeBaseStore(gw.gov.db).create("bank-faq", tenant="acme")
    sessions = SessionStore(gw.gov.db)
    session = Session(id="s-1", kb="bank-faq", tenant="acme")
    session.messages = [{"role": "user", "content": "我要投诉，转人工"}]
    sessions.save(session)
    sessions.hand_off(session, "asked", None)
    with httpx.Client(base_url=gw.url, timeout=30) as client:
        bases = client.get(f"{API}/kb", headers=ADMIN).json()
        assert [(b["name"], b["model"], b["documents"]) for b in bases] == [
            ("bank-faq", "kb:bank-faq", 0)
        ]
        assert client.get(f"{API}/kb/bank-faq/documents", headers=ADMIN).json() == []
        assert client.get(f"{API}/kb/nope/documents", headers=ADMIN).status_code == 404
        queue = client.get(f"{API}/kb-handoffs", headers=ADMIN, params={"status": "open"}).json()
        assert [(h["kb"], h["reason"], h["status"]) for h in queue] == [
            ("bank-faq", "asked", "open")
        ]
        assert (
            client.get(f"{API}/kb-handoffs", headers=ADMIN, params={"status": "x"}).status_code
            == 400
        )
    with sync_playwright() as p:
        browser = p.chromium.launch(executable_path=chromium_path(), args=["--no-sandbox"])
        page = browser.new_page(locale="zh-CN")
        page.goto(gw.url + "/console")
        page.fill("#signin-token", ADMIN_TOKEN)
        page.click("#signin-form button[type=submit]")
        page.click("a[href='#kb']")
        expect(page.locator("#kb-table tbody tr")).to_contain_text("kb:bank-faq")
        expect(page.locator("#handoffs-table tbody tr")).to_contain_text("我要投诉，转人工")
        browser.close()


def test_knowledge_changes_are_for_admins_and_every_refusal_says_why(
    tmp_path: Path, upstream: FakeUpstream, start_gateway: GatewayFactory
) -> None:
    gw = start_gateway(gateway_config(tmp_path / "home", upstream.base_url))
    with httpx.Client(base_url=gw.url, timeout=60) as client:
        r = client.post(
            f"{API}/admin-tokens", headers=ADMIN, json={"name": "审计", "role": "auditor"}
        )
        auditor = {"Authorization": f"Bearer {r.json()['token']}"}
        assert client.get("/v1/models").status_code == 200  # the gateway's list of bases read
        assert client.post(f"{API}/kb", headers=ADMIN, json={"name": "faq"}).status_code == 201
        # asked at once: the new base is a model already (an empty one declines)
        ask = {"model": "kb:faq", "messages": [{"role": "user", "content": "退货要几天？"}]}
        asked = client.post("/v1/chat/completions", json=ask)
        assert asked.status_code == 200 and asked.json()["grounded"] is False, asked.text
        again = client.post(f"{API}/kb", headers=ADMIN, json={"name": "faq"})
        assert again.status_code == 400 and "already exists" in again.json()["error"]["message"]
        assert client.post(f"{API}/kb", headers=auditor, json={"name": "x"}).status_code == 403
        file = {"file": ("常见问题.txt", "退货期限为七天。".encode(), "text/plain")}
        assert (
            client.post(f"{API}/kb/faq/documents", headers=auditor, files=file).status_code == 403
        )
        assert client.post(f"{API}/kb/nope/documents", headers=ADMIN, files=file).status_code == 404
        no_file = client.post(f"{API}/kb/faq/documents", headers=ADMIN, files={"x": ("a", b"1")})
        assert no_file.status_code == 400
        not_a_form = client.post(f"{API}/kb/faq/documents", headers=ADMIN, json={"file": "x"})
        assert not_a_form.status_code == 400
        bidi = {"file": ("发票\u202etxt.md", "退货".encode(), "text/plain")}
        assert client.post(f"{API}/kb/faq/documents", headers=ADMIN, files=bidi).status_code == 400
        newline = client.post(f"{API}/kb", headers=ADMIN, json={"name": "faq2\n"})
        assert newline.status_code == 400
        # the client's file name is a name, never a path
        sneaky = {"file": ("../../etc/退货.txt", "退货期限为七天。".encode(), "text/plain")}
        done = client.post(f"{API}/kb/faq/documents", headers=ADMIN, files=sneaky).json()
        assert (done["file"], done["status"], done["kb"]["documents"]) == ("退货.txt", "added", 1)

        store = SessionStore(gw.gov.db)
        session = Session(id="s-9", kb="faq", tenant=None)
        session.messages = [{"role": "user", "content": "转人工"}]
        store.save(session)
        handoff = store.hand_off(session, "asked", None)
        move = f"{API}/kb-handoffs/{handoff.id}"
        assert client.post(move, headers=auditor, json={"status": "taken"}).status_code == 403
        assert client.post(move, headers=ADMIN, json={"status": "open"}).status_code == 400
        assert (
            client.post(move, headers=ADMIN, json={"status": "closed"}).json()["status"] == "closed"
        )
        late = client.post(move, headers=ADMIN, json={"status": "taken"})
        assert late.status_code == 409 and "closed" in late.json()["error"]["message"]
        missing = client.post(f"{API}/kb-handoffs/ho_nope", headers=ADMIN, json={"status": "taken"})
        assert missing.status_code == 404
        refused = [
            r for r in client.get(f"{API}/audit/records", headers=ADMIN).json()
            if '"refused"' in (r["output"] or "")
        ]  # fmt: skip
        # the auditor's three attempts, the duplicate, no file, not a form, the bidi name,
        # the newline, the late move
        assert len(refused) >= 9
