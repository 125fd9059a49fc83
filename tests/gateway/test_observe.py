"""``/metrics`` beyond request counters: engine slots, breakers, the ledger, guard blocks
by risk and tenant spend — what the Grafana dashboard and the alert rules read."""

from __future__ import annotations

import re
from pathlib import Path

import httpx
import pytest

from heshi.config import GuardConfig, HeshiConfig, TenantConfig
from heshi.engines.openai_http import OpenAIHTTPEngine
from heshi.gateway.app import create_app
from heshi.gateway.governance import Governance
from tests.conftest import ADMIN, TINY_NAME, RunningGateway, local_engines
from tests.fakes.upstream import FakeUpstream
from tests.governance.conftest import ALIAS, gateway_config, upstream
from tests.loopback import serve_app

__all__ = ["upstream"]  # fixture used here


def _value(text: str, series: str) -> float:
    """The sample of one exact series in the Prometheus text."""
    found = re.search(rf"^{re.escape(series)} (\S+)$", text, re.MULTILINE)
    assert found, f"{series} not in /metrics"
    return float(found.group(1))


def test_engine_slots_are_exposed(tiny_gateway: RunningGateway) -> None:
    text = httpx.get(tiny_gateway.url + "/metrics", headers=ADMIN).text
    assert _value(text, f'heshi_engine_slots{{model="{TINY_NAME}"}}') >= 1
    assert _value(text, f'heshi_engine_slots_busy{{model="{TINY_NAME}"}}') == 0
    assert _value(text, f'heshi_engine_requests_waiting{{model="{TINY_NAME}"}}') == 0
    assert _value(text, 'heshi_backend_breaker_state{backend="local",state="closed"}') == 1


def test_guard_blocks_ledger_and_tenant_spend_are_exposed(
    tmp_path: Path, upstream: FakeUpstream
) -> None:
    config = gateway_config(
        tmp_path / "home",
        upstream.base_url,
        tenants={"acme": TenantConfig(budget_tokens=10_000_000)},
    ).model_copy(update={"guard": GuardConfig(enabled=True)})
    engines = {n: OpenAIHTTPEngine(n, b) for n, b in config.backends.items()}
    gov = Governance(config)
    app = create_app(config, engines, gov)  # type: ignore[arg-type]
    with serve_app(app) as url, httpx.Client(base_url=url, timeout=30) as client:
        key = client.post("/admin/v1/keys", headers=ADMIN, json={"tenant": "acme", "name": "k"})
        auth = {"Authorization": f"Bearer {key.json()['key']}"}
        for text in ("你好", "去哪买冰毒"):
            chat = {"model": ALIAS, "messages": [{"role": "user", "content": text}]}
            assert client.post("/v1/chat/completions", json=chat, headers=auth).status_code == 200
        assert gov.ledger.flush()
        app.state.gateway.state.refresh_spend()  # the background refresh runs every minute
        metrics = client.get("/metrics", headers=ADMIN).text
    blocked = re.findall(r'^heshi_guard_blocks_total\{direction="in",risk="([^"]+)"\} (\S+)$',
                         metrics, re.MULTILINE)  # fmt: skip
    assert blocked and sum(float(v) for _, v in blocked) == 1
    assert all(risk for risk, _ in blocked)
    assert _value(metrics, 'heshi_backend_breaker_state{backend="up",state="closed"}') == 1
    assert _value(metrics, 'heshi_backend_breaker_state{backend="up",state="open"}') == 0
    assert _value(metrics, "heshi_database_up") == 1
    assert _value(metrics, "heshi_ledger_lag_seconds") == 0
    tokens = _value(metrics, 'heshi_tenant_spent_tokens{tenant="acme"}')
    assert tokens > 0
    ratio = _value(metrics, 'heshi_tenant_budget_used_ratio{budget="tokens",tenant="acme"}')
    assert abs(ratio - tokens / 10_000_000) < 1e-12


def test_operator_endpoints_say_why_they_refuse(
    tiny_config: HeshiConfig, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Without HESHI_ADMIN_TOKEN they are closed (403, docs/serving.md) with or without a
    header; with it, a wrong token — an admin-API token included — is told which one
    these endpoints take."""
    monkeypatch.delenv("HESHI_ADMIN_TOKEN")
    with serve_app(create_app(tiny_config, local_engines(tiny_config))) as url:
        for headers in ({}, ADMIN):
            for path in ("/metrics", "/admin/models"):
                closed = httpx.get(url + path, headers=headers)
                assert closed.status_code == 403, (path, headers)
                assert "HESHI_ADMIN_TOKEN" in closed.json()["error"]["message"]
        assert httpx.get(url + "/healthz").json() == {"status": "ok"}  # liveness stays open
    monkeypatch.setenv("HESHI_ADMIN_TOKEN", "right-token")
    with serve_app(create_app(tiny_config, local_engines(tiny_config))) as url:
        wrong = httpx.get(url + "/metrics", headers={"Authorization": "Bearer hsa-console-token"})
        assert wrong.status_code == 401
        assert "heshi admin tokens create" in wrong.json()["error"]["message"]
        missing = httpx.get(url + "/metrics")
        assert missing.status_code == 401 and "Bearer" in missing.json()["error"]["message"]
        ok = httpx.get(url + "/metrics", headers={"Authorization": "Bearer right-token"})
        assert ok.status_code == 200
