"""Screenshots of every console page for docs/console.md (``make screenshots``).

Starts a gateway in this process on a temporary home (no model, no backend), fills it
with a few keys through the admin API, signs in with headless Chromium (Debian's
``chromium``, or ``HESHI_CHROMIUM``) and saves one PNG per page in ``docs/images``.
"""

from __future__ import annotations

import os
import shutil
import sys
import tempfile
from pathlib import Path

import httpx
from playwright.sync_api import sync_playwright

ROOT = Path(__file__).resolve().parents[1]
OUT = ROOT / "docs" / "images"
TOKEN = "screenshot-admin-token-" + "x" * 16
# page, what to do on it first (Playwright method, selector, value), what to wait for
PAGES: list[tuple[str, list[tuple[str, ...]], str]] = [
    ("usage", [("select_option", "#usage-by", "tenant"),
               ("click", "#usage-form button[type=submit]")], "#usage-table"),
    ("playground", [], "#page-playground:not([hidden])"),
    ("models", [], "#page-models:not([hidden])"),
    ("guard", [], "#page-guard:not([hidden])"),
    ("kb", [("fill", "#kb-question", "退货要几天？"), ("click", "#kb-ask")], "#kb-citations li"),
    ("docs", [], "#page-docs:not([hidden])"),
    ("plan", [("fill", "#plan-hardware", "2x nvidia-a100-80gb"), ("fill", "#plan-users", "64"),
              ("click", "#plan-form button[type=submit]")], "#plan-options tbody tr"),
    ("audit", [("click", "#audit-verify")], "#audit-table tbody tr"),
]  # fmt: skip


def main() -> int:
    sys.path.insert(0, str(ROOT))
    os.environ["HESHI_ADMIN_TOKEN"] = TOKEN
    from heshi.config import HeshiConfig, KnowledgeConfig, LocalEngineConfig
    from heshi.gateway.app import create_app
    from tests.loopback import serve_app

    chromium = os.environ.get("HESHI_CHROMIUM") or shutil.which("chromium")
    if not chromium:
        print("chromium is not installed: apt-get install chromium", file=sys.stderr)
        return 1
    OUT.mkdir(parents=True, exist_ok=True)
    with tempfile.TemporaryDirectory() as home:
        # no model here: the knowledge base answers by quoting its sources, unjudged
        config = HeshiConfig(
            home=Path(home),
            engine=LocalEngineConfig(enabled=False),
            kb=KnowledgeConfig(max_doubt=1.0, min_similarity=0.5),
        )
        with serve_app(create_app(config, {})) as url:
            admin = {"Authorization": f"Bearer {TOKEN}"}
            for tenant, name in (
                ("招商物流", "客服机器人"),
                ("招商物流", "单据抽取"),
                ("华东零售", "门店助手"),
            ):
                httpx.post(
                    f"{url}/admin/v1/keys",
                    headers=admin,
                    json={"tenant": tenant, "name": name, "rpm": 60},
                )
            httpx.post(f"{url}/admin/v1/kb", headers=admin, json={"name": "售后FAQ"})
            faq = "# 退货\n签收后七天内可以无理由退货，运费由商家承担。\n# 保修\n整机保修一年。\n"
            httpx.post(
                f"{url}/admin/v1/kb/售后FAQ/documents",
                headers=admin,
                files={"file": ("售后政策.md", faq.encode())},
                timeout=120,
            )
            with sync_playwright() as p:
                browser = p.chromium.launch(executable_path=chromium, args=["--no-sandbox"])
                page = browser.new_page(viewport={"width": 1100, "height": 640}, locale="zh-CN")
                page.goto(url + "/console")
                page.screenshot(path=str(OUT / "console-signin.png"))
                page.fill("#signin-token", TOKEN)
                page.click("#signin-form button[type=submit]")
                page.wait_for_selector("#page-overview:not([hidden])")
                page.screenshot(path=str(OUT / "console-overview.png"))
                page.click("a[href='#keys']")
                page.wait_for_selector("#keys-table tbody tr")
                page.screenshot(path=str(OUT / "console-keys.png"))
                page.fill("#key-tenant", "华东零售")
                page.fill("#key-name", "会员积分查询")
                page.click("#key-form button[type=submit]")
                page.wait_for_selector("#key-once[open]")
                page.screenshot(path=str(OUT / "console-key-once.png"))
                page.click("#key-once-close")
                for name, steps, ready in PAGES:
                    page.click(f"a[href='#{name}']")
                    for action, selector, *value in steps:
                        getattr(page, action)(selector, *value)
                    page.wait_for_selector(ready)
                    page.screenshot(path=str(OUT / f"console-{name}.png"))
                browser.close()
    for path in sorted(OUT.glob("console-*.png")):
        print(path.relative_to(ROOT))
    return 0


if __name__ == "__main__":
    sys.exit(main())
