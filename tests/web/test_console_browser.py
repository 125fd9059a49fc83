"""The console in headless Chromium (Debian's package, driven by Playwright) against a real
gateway on loopback: sign in, a key shown once, roles, the audit log, the language switch,
and the page's security headers."""

from __future__ import annotations

import os
import re
import shutil
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest
from playwright.sync_api import Browser, Page, expect, sync_playwright

from heshi.config import AigcConfig
from tests.conftest import ADMIN, ADMIN_TOKEN, TINY_NAME, RunningGateway
from tests.fakes.upstream import FakeUpstream
from tests.governance.conftest import (
    GatewayFactory,
    gateway_config,
    start_gateway,
    upstream,
)

__all__ = ["start_gateway", "upstream"]  # fixtures used here


def chromium_path() -> str:
    path = os.environ.get("HESHI_CHROMIUM") or shutil.which("chromium")
    if not path:
        pytest.fail("Chromium is not installed: apt-get install chromium (or set HESHI_CHROMIUM)")
    return path


@pytest.fixture(scope="module")
def browser() -> Iterator[Browser]:
    with sync_playwright() as p:
        launched = p.chromium.launch(executable_path=chromium_path(), args=["--no-sandbox"])
        yield launched
        launched.close()


@pytest.fixture
def console(
    browser: Browser, tmp_path: Path, upstream: FakeUpstream, start_gateway: GatewayFactory
) -> Iterator[tuple[Page, str]]:
    gw = start_gateway(gateway_config(tmp_path / "home", upstream.base_url))
    context = browser.new_context(locale="zh-CN")
    page = context.new_page()
    errors: list[str] = []
    page.on("pageerror", lambda exc: errors.append(str(exc)))
    yield page, gw.url
    context.close()
    assert not errors, errors  # no script error on any page


def sign_in(page: Page, url: str, token: str) -> None:
    page.goto(url + "/console")
    page.fill("#signin-token", token)
    page.click("#signin-form button[type=submit]")
    expect(page.locator("#page-overview")).to_be_visible()


def test_sign_in_create_a_key_seen_once_and_verify_the_audit_log(
    console: tuple[Page, str],
) -> None:
    page, url = console
    page.goto(url + "/")  # the root leads to the console
    assert page.url.endswith("/console")
    expect(page.locator("#page-signin h1")).to_have_text("登录控制台")  # Chinese by default

    page.fill("#signin-token", "hsa-wrong")
    page.click("#signin-form button[type=submit]")
    expect(page.locator("#signin-error")).to_contain_text("invalid or revoked")

    sign_in(page, url, ADMIN_TOKEN)
    expect(page.locator("#who")).to_contain_text("管理员")

    page.click("a[href='#keys']")
    page.fill("#key-tenant", "acme")
    page.fill("#key-name", "客服机器人")
    page.fill("#key-rpm", "60")
    page.fill("#key-budget-cny", "12.5")
    page.click("#key-form button[type=submit]")
    dialog = page.locator("#key-once")
    expect(dialog).to_be_visible()
    key = page.locator("#key-once-value").inner_text()
    assert re.fullmatch(r"hs-[\w-]{20,}", key)
    # the key is known on /v1 at once, with its spend budget: this gateway prices no
    # model, so the budgeted key is refused the unpriced one (not 401: the key was found)
    chat = {"model": "qwen", "messages": [{"role": "user", "content": "你好"}]}
    answer = httpx.post(
        url + "/v1/chat/completions", json=chat, headers={"Authorization": f"Bearer {key}"}
    )
    assert answer.status_code == 403 and "no price" in answer.text, answer.text
    page.click("#key-once-close")
    expect(dialog).to_be_hidden()
    row = page.locator("#keys-table tbody tr", has_text="客服机器人")
    expect(row).to_contain_text("有效")
    expect(row).to_contain_text("60 rpm · ¥12.50")  # the spend budget reached the key
    assert key not in page.content()  # shown once: gone from the page
    page.reload()
    expect(page.locator("#keys-table tbody tr")).to_have_count(1)
    assert key not in page.content()

    row.locator("button[data-action=suspend]").click()
    expect(row).to_contain_text("已暂停")

    page.click("a[href='#audit']")
    page.click("#audit-verify")
    expect(page.locator("#audit-result")).to_contain_text("完整")
    expect(page.locator("#audit-table tbody tr").first).to_contain_text("audit.verify")
    expect(page.locator("#audit-table")).to_contain_text("keys.suspend")
    expect(page.locator("#audit-table")).to_contain_text('"via":"console"')

    page.click("#lang")  # English
    expect(page.locator("a[href='#keys']")).to_have_text("Keys")
    expect(page.locator("#audit-verify")).to_have_text("Verify the audit log")
    page.reload()  # the choice is remembered
    expect(page.locator("a[href='#keys']")).to_have_text("Keys")

    page.click("#signout")
    expect(page.locator("#page-signin")).to_be_visible()
    page.goto(url + "/console#keys")
    expect(page.locator("#page-signin")).to_be_visible()  # the session is gone


def test_an_auditor_sees_but_cannot_change(console: tuple[Page, str]) -> None:
    page, url = console
    made = httpx.post(
        url + "/admin/v1/admin-tokens", headers=ADMIN, json={"name": "王审计", "role": "auditor"}
    )
    httpx.post(url + "/admin/v1/keys", headers=ADMIN, json={"tenant": "acme", "name": "k"})
    sign_in(page, url, made.json()["token"])
    expect(page.locator("#who")).to_contain_text("审计员")
    page.click("a[href='#keys']")
    expect(page.locator("#keys-table tbody tr")).to_have_count(1)
    expect(page.locator("#key-form")).to_be_hidden()
    expect(page.locator("#keys-table button")).to_have_count(0)


def test_the_session_cookie_alone_changes_nothing(console: tuple[Page, str]) -> None:
    page, url = console
    sign_in(page, url, ADMIN_TOKEN)
    cookies = {c["name"]: c["value"] for c in page.context.cookies()}
    assert "heshi_console" in cookies
    cookie = page.context.cookies()[0]
    assert cookie["httpOnly"] and cookie["sameSite"] == "Strict"
    # a forged cross-site form post carries the cookie but not the CSRF header
    r = httpx.post(url + "/admin/v1/keys", cookies=cookies, json={"tenant": "x", "name": "y"})
    assert r.status_code == 403 and "x-heshi-csrf" in r.json()["error"]["message"]
    assert httpx.get(url + "/admin/v1/keys", cookies=cookies).json() == []
    page_response = httpx.get(url + "/console")
    csp = page_response.headers["content-security-policy"]
    assert "script-src 'self'" in csp and "frame-ancestors 'none'" in csp
    assert '<script type="module" src="/console/static/console.js">' in page_response.text


def test_the_usage_chart_moves_and_exports_csv(console: tuple[Page, str], tmp_path: Path) -> None:
    page, url = console
    key = httpx.post(
        url + "/admin/v1/keys", headers=ADMIN, json={"tenant": "华东零售", "name": "k"}
    ).json()["key"]
    chat = {"model": "qwen", "messages": [{"role": "user", "content": "你好"}]}

    def chats(n: int) -> None:
        for _ in range(n):
            r = httpx.post(
                url + "/v1/chat/completions", json=chat, headers={"Authorization": f"Bearer {key}"}
            )
            assert r.status_code == 200

    chats(2)
    sign_in(page, url, ADMIN_TOKEN)
    expect(page.locator("#ov-requests")).to_have_text("2")
    page.click("a[href='#usage']")
    page.select_option("#usage-by", "tenant")
    page.click("#usage-form button[type=submit]")
    bar = page.locator("#usage-chart rect[data-group='华东零售']")
    expect(bar).to_have_count(1)
    before = int(bar.get_attribute("data-tokens") or 0)
    assert before > 0
    chats(3)
    requests = page.locator("#usage-table tbody tr td:nth-child(2)")
    for _ in range(100):  # the ledger writes its rows a moment later: query again
        page.click("#usage-form button[type=submit]")
        page.wait_for_timeout(50)
        if requests.inner_text() == "5":
            break
    expect(requests).to_have_text("5")
    after = int(bar.get_attribute("data-tokens") or 0)
    assert after > before  # the chart moved
    with page.expect_download() as download:
        page.click("#usage-csv")
    saved = tmp_path / "usage.csv"
    download.value.save_as(saved)
    lines = saved.read_text("utf-8-sig").splitlines()
    assert lines[0].startswith("tenant,requests") and lines[1].startswith("华东零售,5,")


def test_the_playground_streams_shows_tool_calls_and_the_aigc_label(
    browser: Browser,
    tmp_path: Path,
    upstream: FakeUpstream,
    start_gateway: GatewayFactory,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setenv("HESHI_AIGC_KEY", "a-test-signing-key-of-enough-length")
    config = gateway_config(tmp_path / "home", upstream.base_url).model_copy(
        update={"aigc": AigcConfig(enabled=True, uscc="91350100M000100Y43", explicit="end")}
    )
    gw = start_gateway(config)
    upstream.state.deltas = ["您好，", "我是", "客服助手。"]
    upstream.state.chunk_delay = 0.05
    context = browser.new_context(locale="zh-CN")
    page = context.new_page()
    sign_in(page, gw.url, ADMIN_TOKEN)
    page.click("a[href='#playground']")
    page.click("#pg-new-key")
    expect(page.locator("#pg-model option")).not_to_have_count(0)
    page.select_option("#pg-model", "qwen")
    page.fill("#pg-input", "你好")
    page.click("#pg-send")
    answer = page.locator(".turn.assistant").last
    expect(answer.locator(".text")).to_contain_text("您好，我是客服助手。")
    expect(answer.locator(".text")).to_contain_text("本内容由人工智能生成")  # explicit label
    expect(answer.locator(".label")).to_contain_text("ContentProducer")  # implicit label
    expect(page.locator("#pg-stats")).to_contain_text("token/s")
    # the first token is on screen within 50 ms of the stream's first byte
    first_byte = float(answer.get_attribute("data-first-byte-ms") or "nan")
    first_shown = float(answer.get_attribute("data-first-shown-ms") or "nan")
    assert 0 <= first_shown - first_byte < 50, (first_byte, first_shown)

    upstream.state.deltas = None
    upstream.state.tool_calls = [{"name": "lookup_order", "arguments": '{"order_id": "SF1234567"}'}]
    page.check("#pg-tools-on")
    page.fill("#pg-input", "查一下订单 SF1234567")
    page.click("#pg-send")
    expect(page.locator(".turn.assistant").last.locator(".tools")).to_contain_text(
        'lookup_order({"order_id": "SF1234567"})'
    )
    # the playground's requests are metered under the playground tenant
    gw.flush()
    keys = httpx.get(gw.url + "/admin/v1/keys?tenant=playground", headers=ADMIN).json()
    assert len(keys) == 1 and keys[0]["expires_at"] is not None
    context.close()


def test_a_session_ended_elsewhere_returns_to_sign_in(console: tuple[Page, str]) -> None:
    page, url = console
    made = httpx.post(
        url + "/admin/v1/admin-tokens", headers=ADMIN, json={"name": "临时", "role": "admin"}
    ).json()
    sign_in(page, url, made["token"])
    page.click("a[href='#keys']")
    expect(page.locator("#page-keys")).to_be_visible()
    # the page's own calls finish first: one answered 401 would end the session by itself
    expect(page.locator("body")).to_have_attribute("aria-busy", "false")
    httpx.post(url + f"/admin/v1/admin-tokens/{made['id']}/revoke", headers=ADMIN)
    page.click("a[href='#audit']")
    expect(page.locator("#page-signin")).to_be_visible()
    expect(page.locator("#signin-error")).to_contain_text("会话已结束")
    # creating the first key says what it changes for every client
    sign_in(page, url, ADMIN_TOKEN)
    page.click("a[href='#keys']")
    page.fill("#key-tenant", "acme")
    page.fill("#key-name", "first")
    page.click("#key-form button[type=submit]")
    expect(page.locator("#key-first")).to_contain_text("第一个密钥")


def test_the_models_page_is_the_heshi_ps_view(
    browser: Browser, tiny_gateway: RunningGateway, tiny_gguf: Path
) -> None:
    context = browser.new_context(locale="en-US")
    page = context.new_page()
    errors: list[str] = []
    page.on("pageerror", lambda exc: errors.append(str(exc)))
    sign_in(page, tiny_gateway.url, ADMIN_TOKEN)
    page.click("a[href='#models']")
    row = page.locator(f"#models-table tbody tr[data-name='{TINY_NAME}']")
    expect(row).to_contain_text("chat")
    expect(row).to_contain_text("0/2")
    page.fill("#models-ref", str(tiny_gguf))
    page.fill("#models-name", "tiny-two")
    page.click("#models-form button[type=submit]")
    expect(page.locator("#models-table tbody tr[data-name='tiny-two']")).to_have_count(1)
    page.locator("#models-table tbody tr[data-name='tiny-two'] button").click()
    expect(page.locator("#models-table tbody tr[data-name='tiny-two']")).to_have_count(0)
    context.close()
    assert not errors, errors


def test_the_plan_calculator_ranks_and_explains(console: tuple[Page, str]) -> None:
    page, url = console
    sign_in(page, url, ADMIN_TOKEN)
    page.click("a[href='#plan']")
    expect(page.locator("#plan-workload option")).to_have_count(4)
    page.fill("#plan-hardware", "2x nvidia-a100-80gb")
    page.fill("#plan-users", "200")
    page.fill("#plan-context", "8192")
    page.click("#plan-form button[type=submit]")
    expect(page.locator("#plan-options tbody tr").first).to_be_visible()
    expect(page.locator("#plan-summary")).to_contain_text("2x nvidia-a100-80gb")
    expect(page.locator("#plan-rejected li").first).to_contain_text(":")
    page.fill("#plan-hardware", "3x nvidia-h1000")
    page.click("#plan-form button[type=submit]")
    expect(page.locator("#plan-error")).to_contain_text("nearest")
