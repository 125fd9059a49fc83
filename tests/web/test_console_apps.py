"""The console's application pages in headless Chromium against a real gateway on
loopback: a knowledge base created, documents uploaded with progress (one that fails is
reported, the batch goes on), the base asked with its citations, a handoff taken and
closed — every change in the audit log; and a document job whose results table and CSV
come from /v1/docs/extract."""

from __future__ import annotations

import csv
import io
import json
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest
from playwright.sync_api import Browser, Page, expect

from heshi.config import KnowledgeConfig
from tests.conftest import ADMIN, ADMIN_TOKEN
from tests.fakes.upstream import FakeUpstream
from tests.governance.conftest import ALIAS, GatewayFactory, gateway_config, start_gateway, upstream
from tests.web.test_console_browser import browser, sign_in

__all__ = ["browser", "start_gateway", "upstream"]  # fixtures used here

PRICES = """# 简舟协作价格
## 团队版
团队版每人每年 360 元，最多 50 人。
## 企业版
企业版每人每年 680 元，不限人数，含专属客服。
"""


@pytest.fixture
def console(
    browser: Browser, tmp_path: Path, upstream: FakeUpstream, start_gateway: GatewayFactory
) -> Iterator[tuple[Page, str]]:
    # answers quote the sources (no model call); the fake upstream is the chat model
    kb = KnowledgeConfig(model=ALIAS, min_similarity=0.0, max_doubt=1.0, answer_style="quote")
    config = gateway_config(tmp_path / "home", upstream.base_url).model_copy(update={"kb": kb})
    gw = start_gateway(config)
    context = browser.new_context(locale="zh-CN", accept_downloads=True)
    page = context.new_page()
    errors: list[str] = []
    page.on("pageerror", lambda exc: errors.append(str(exc)))
    sign_in(page, gw.url, ADMIN_TOKEN)
    yield page, gw.url
    context.close()
    assert not errors, errors


def admin_actions(url: str) -> list[tuple[str, str]]:
    """(action, result) of every admin action in the audit log, oldest first."""
    records = httpx.get(url + "/admin/v1/audit/records", params={"limit": 500}, headers=ADMIN)
    out = []
    for record in sorted(records.json(), key=lambda r: r["seq"]):
        data = json.loads(record["input"] or "{}")
        if "admin_action" in data:
            out.append((data["admin_action"], json.loads(record["output"])["result"]))
    return out


def test_create_a_base_upload_documents_ask_it_and_handle_a_handoff(
    console: tuple[Page, str], tmp_path: Path
) -> None:
    page, url = console
    prices = tmp_path / "价格.md"
    prices.write_text(PRICES, "utf-8")
    broken = tmp_path / "说明.docx"
    broken.write_bytes(b"not a zip package")

    page.click("a[href='#kb']")
    page.fill("#kb-new-name", "shop")
    page.click("#kb-create-form button[type=submit]")
    expect(page.locator("#kb-table tbody tr", has_text="kb:shop")).to_be_visible()

    page.set_input_files("#kb-files", [str(prices), str(broken)])
    page.click("#kb-upload")
    expect(page.locator("#kb-progress-text")).to_have_text("完成：2 个文件，1 个失败")
    results = page.locator("#kb-results li")
    expect(results.nth(0)).to_contain_text("价格.md — 已新增")
    expect(results.nth(1)).to_contain_text("说明.docx — 失败")
    expect(results.nth(1)).to_have_class("failed")
    assert page.locator("#kb-progress").evaluate("p => [p.value, p.max]") == [2, 2]
    expect(page.locator("#kb-table tbody tr", has_text="kb:shop")).to_contain_text("1")
    documents = httpx.get(url + "/admin/v1/kb/shop/documents", headers=ADMIN).json()
    assert [(d["name"], d["chunks"] > 0) for d in documents] == [("价格.md", True)]

    # the same file again changes nothing
    page.set_input_files("#kb-files", [str(prices)])
    page.click("#kb-upload")
    expect(page.locator("#kb-results li")).to_contain_text("价格.md — 未变")

    page.fill("#kb-question", "团队版一年多少钱？")
    page.click("#kb-ask")
    expect(page.locator("#kb-answer-text")).to_contain_text("360")
    expect(page.locator("#kb-citations li").first).to_contain_text("价格.md")
    expect(page.locator("#kb-answer-meta")).to_have_text("有出处")

    page.fill("#kb-question", "转人工")
    page.click("#kb-ask")
    expect(page.locator("#kb-answer-meta")).to_contain_text("已转人工")
    handoff = page.locator("#handoffs-table tbody tr", has_text="转人工")
    expect(handoff).to_contain_text("open")
    handoff.locator("button[data-status=taken]").click()
    expect(handoff).to_contain_text("taken")
    handoff.locator("button[data-status=closed]").click()
    expect(handoff).to_contain_text("closed")
    expect(handoff.locator("button")).to_have_count(0)

    actions = admin_actions(url)
    assert ("kb.create", "ok") in actions
    assert [a for a in actions if a[0] == "kb.ingest"] == [
        ("kb.ingest", "ok"),
        ("kb.ingest", "failed"),
        ("kb.ingest", "unchanged"),
    ]
    assert actions.count(("kb.handoff", "ok")) == 2


def test_a_document_job_fills_the_results_table_and_exports_csv(
    console: tuple[Page, str], upstream: FakeUpstream, tmp_path: Path
) -> None:
    page, _ = console
    upstream.state.reply = json.dumps(
        {"invoice_number": "25312000000123456789", "total_amount": 12800.0, "buyer_name": "=1+1"}
    )
    invoice = tmp_path / "发票.md"
    invoice.write_text("# 电子发票\n发票号码：25312000000123456789\n价税合计：¥12800.00\n", "utf-8")
    empty = tmp_path / "空白.txt"
    empty.write_text("", "utf-8")

    page.click("a[href='#playground']")
    page.click("#pg-new-key")  # the documents page uses the playground's key
    expect(page.locator("#pg-key")).not_to_have_value("")
    page.click("a[href='#docs']")
    expect(page.locator(f"#docs-model option[value={ALIAS}]")).to_have_count(1)
    page.select_option("#docs-model", ALIAS)
    page.select_option("#docs-schema", "invoice")
    page.set_input_files("#docs-files", [str(invoice), str(empty)])
    page.click("#docs-run")
    expect(page.locator("#docs-progress-text")).to_have_text("完成：2 个文件，1 个失败")
    rows = page.locator("#docs-table tbody tr")
    expect(rows).to_have_count(2)
    expect(rows.nth(0)).to_contain_text("invoice_number: 25312000000123456789")
    expect(rows.nth(0)).to_contain_text("完成")
    expect(rows.nth(1)).to_contain_text("失败")
    # the job lives on the gateway: listed, and opened again after a reload
    page.reload()
    page.click("a[href='#docs']")
    expect(page.locator("#docs-jobs tbody tr")).to_have_count(1)
    page.locator("#docs-jobs tbody tr button").click()
    expect(page.locator("#docs-table tbody tr")).to_have_count(2)

    with page.expect_download() as download:
        page.click("#docs-csv")
    path = download.value.path()
    table = list(csv.DictReader(io.StringIO(Path(path).read_text("utf-8-sig"))))
    assert [r["file"] for r in table] == ["发票.md", "空白.txt"]
    assert table[0]["total_amount"] == "12800.0" and table[0]["status"] == "done"
    assert table[0]["buyer_name"] == "'=1+1"  # never a formula in a spreadsheet
