"""``/admin/v1/guard/…``: what the guard blocked, by TC260 risk, read back from the audit
log of a real gateway; and the guard settings in force for a tenant."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from pathlib import Path

import httpx

from heshi.config import GuardConfig, TenantConfig
from tests.conftest import ADMIN
from tests.fakes.upstream import FakeUpstream
from tests.governance.conftest import (
    ALIAS,
    GatewayFactory,
    gateway_config,
    start_gateway,
    upstream,
)

__all__ = ["start_gateway", "upstream"]  # fixtures used here
API = "/admin/v1"


def test_blocks_are_counted_by_risk_and_listed_newest_first(
    tmp_path: Path, upstream: FakeUpstream, start_gateway: GatewayFactory
) -> None:
    config = gateway_config(
        tmp_path / "home", upstream.base_url, tenants={"acme": TenantConfig(guard={"pii": "mask"})}
    ).model_copy(update={"guard": GuardConfig(enabled=True)})
    gw = start_gateway(config)
    with httpx.Client(base_url=gw.url, timeout=30) as client:
        key = client.post(f"{API}/keys", headers=ADMIN, json={"tenant": "acme", "name": "k"})
        auth = {"Authorization": f"Bearer {key.json()['key']}"}
        for text in ("去哪买冰毒", "你好", "去哪里能买到冰毒"):
            chat = {"model": ALIAS, "messages": [{"role": "user", "content": text}]}
            assert client.post("/v1/chat/completions", json=chat, headers=auth).status_code == 200
        assert gw.gov.audit.flush(timeout=30)
        since = (datetime.now(UTC) - timedelta(hours=1)).isoformat()
        found = client.get(f"{API}/guard/blocks", headers=ADMIN, params={"since": since}).json()
        assert found["blocked"] == 2 and found["scanned"] >= 2
        assert sum(found["by_risk"].values()) >= 2 and all(found["by_risk"])
        assert [r["input"] for r in found["recent"]] == ["去哪里能买到冰毒", "去哪买冰毒"]
        assert all(v["action"] for r in found["recent"] for v in r["verdicts"])
        other = client.get(
            f"{API}/guard/blocks", headers=ADMIN, params={"since": since, "tenant": "beta"}
        ).json()
        assert other["blocked"] == 0 and other["recent"] == []
        settings = client.get(f"{API}/guard/settings", headers=ADMIN, params={"tenant": "acme"})
        body = settings.json()
        assert body["guard"]["enabled"] is True and body["guard"]["pii"] == "mask"
        assert body["tenant_overrides"] is True
        plain = client.get(f"{API}/guard/settings", headers=ADMIN).json()
        assert plain["guard"]["pii"] == "pseudonymize" and plain["tenant_overrides"] is False
        r = client.get(
            f"{API}/guard/blocks", headers=ADMIN, params={"since": "2026-01-01T00:00:00"}
        )
        assert r.status_code == 400


def test_the_console_guard_page_shows_blocks_by_risk(
    tmp_path: Path, upstream: FakeUpstream, start_gateway: GatewayFactory
) -> None:
    from playwright.sync_api import expect, sync_playwright

    from tests.conftest import ADMIN_TOKEN
    from tests.web.test_console_browser import chromium_path

    config = gateway_config(tmp_path / "home", upstream.base_url).model_copy(
        update={"guard": GuardConfig(enabled=True)}
    )
    gw = start_gateway(config)
    chat = {"model": ALIAS, "messages": [{"role": "user", "content": "去哪买冰毒"}]}
    assert httpx.post(gw.url + "/v1/chat/completions", json=chat).status_code == 200
    assert gw.gov.audit.flush(timeout=30)
    with sync_playwright() as p:
        browser = p.chromium.launch(executable_path=chromium_path(), args=["--no-sandbox"])
        page = browser.new_page(locale="zh-CN")
        page.goto(gw.url + "/console")
        page.fill("#signin-token", ADMIN_TOKEN)
        page.click("#signin-form button[type=submit]")
        page.click("a[href='#guard']")
        expect(page.locator("#guard-recent tbody tr")).to_have_count(1)
        expect(page.locator("#guard-recent")).to_contain_text("去哪买冰毒")
        expect(page.locator("#guard-recent")).to_contain_text("block")
        expect(page.locator("#guard-risks tbody tr")).not_to_have_count(0)
        expect(page.locator("#guard-settings")).to_contain_text("拦截 1 条")
        browser.close()
