"""``GET /admin/v1/tenants`` and the console's tenants table on a real gateway: configured
tenants and those that only own keys, their limits, keys, and lifetime spend against
their budgets."""

from __future__ import annotations

from pathlib import Path

import httpx
from playwright.sync_api import Browser, expect

from heshi.config import PricingConfig, TenantConfig
from heshi.config.pricing import ModelPrice
from heshi.store.db import Database
from heshi.store.keys import KeyStore
from tests.conftest import ADMIN, ADMIN_TOKEN
from tests.fakes.upstream import FakeUpstream
from tests.governance.conftest import (
    ALIAS,
    GatewayFactory,
    bearer,
    chat_body,
    gateway_config,
    start_gateway,
    upstream,
)
from tests.web.test_console_browser import browser, sign_in

__all__ = ["browser", "start_gateway", "upstream"]  # fixtures used here


def test_tenants_with_their_limits_keys_and_spend(
    tmp_path: Path, upstream: FakeUpstream, start_gateway: GatewayFactory, browser: Browser
) -> None:
    home = tmp_path / "home"
    config = gateway_config(
        home, upstream.base_url, tenants={"acme": TenantConfig(rpm=100, budget_cny=1.0)}
    ).model_copy(
        update={"pricing": PricingConfig(models={ALIAS: ModelPrice(input=1000, output=1000)})}
    )
    db = Database(config.store.sql_url(home))
    db.migrate()
    keys = KeyStore(db)
    acme, _ = keys.create("acme", "bot")
    keys.create("beta", "other")
    keys.revoke(keys.create("beta", "old")[1].id)
    upstream.state.prompt_tokens = 100
    gw = start_gateway(config)
    body = chat_body("你好", max_tokens=100)
    assert httpx.post(gw.url + "/v1/chat/completions", json=body, headers=bearer(acme)).is_success
    gw.flush()
    tenants = {t["name"]: t for t in httpx.get(gw.url + "/admin/v1/tenants", headers=ADMIN).json()}
    assert sorted(tenants) == ["acme", "beta"]
    a, b = tenants["acme"], tenants["beta"]
    # 100 + 100 tokens at 1,000 yuan per million: 0.2 yuan, a fifth of the budget
    assert (a["configured"], a["rpm"], a["budget_cny"]) == (True, 100, 1.0)
    assert (a["spent_tokens"], a["spent_cny"], a["budget_cny_used"]) == (200, 0.2, 0.2)
    assert a["keys"] == {"active": 1, "suspended": 0, "revoked": 0}
    assert (b["configured"], b["rpm"], b["spent_tokens"], b["budget_cny_used"]) == (
        False, None, 0, None,
    )  # fmt: skip
    assert b["keys"] == {"active": 1, "suspended": 0, "revoked": 1}

    page = browser.new_page(locale="zh-CN")
    sign_in(page, gw.url, ADMIN_TOKEN)
    page.click("a[href='#keys']")
    row = page.locator("#tenants-table tbody tr[data-name=acme]")
    expect(row).to_contain_text("100 rpm · ¥1.00")
    expect(row).to_contain_text("(20%)")
    page.close()
    db.dispose()
