"""Refused requests are counted (issue 9, defect 10), and the guard model's own calls are
admitted and metered as internal requests of the caller."""

from __future__ import annotations

import json
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from pathlib import Path

import httpx
import pytest
import yaml
from sqlalchemy import update
from typer.testing import CliRunner

from heshi.cli.main import app as cli
from heshi.config import AliasConfig, BackendConfig, GuardConfig, GuardModelConfig, HeshiConfig
from heshi.engines.sizing import estimate_prompt_tokens
from heshi.store.db import Database
from heshi.store.keys import KeyStore
from heshi.store.tables import api_keys
from tests.conftest import ADMIN
from tests.fakes.upstream import FakeUpstream, UpstreamState
from tests.governance.conftest import (
    ALIAS,
    OTHER_ALIAS,
    GatewayFactory,
    Upstream,
    bearer,
    chat_body,
    gateway_config,
    ledger_rows,
)


def _metric(url: str, labels: str) -> float:
    for line in httpx.get(url + "/metrics", headers=ADMIN).text.splitlines():
        if line.startswith(f"heshi_requests_total{{{labels}}}"):
            return float(line.rsplit(" ", 1)[1])
    return 0.0


def test_401_403_and_429_are_counted_and_keyed_refusals_have_ledger_rows(
    upstream: Upstream,
    start_gateway: GatewayFactory,
    keys: KeyStore,
    store_db: Database,
    home: Path,
    tmp_path: Path,
) -> None:
    narrow, key = keys.create("acme", "narrow", models=[ALIAS], rpm=2)
    gw = start_gateway(gateway_config(home, upstream.base_url))
    url = gw.url + "/v1/chat/completions"
    assert httpx.post(url, json=chat_body()).status_code == 401  # no key
    assert httpx.post(url, json=chat_body(), headers=bearer("hs-wrong")).status_code == 401
    r = httpx.post(url, json=chat_body(model=OTHER_ALIAS), headers=bearer(narrow))
    assert r.status_code == 403
    statuses = [
        httpx.post(url, json=chat_body(), headers=bearer(narrow)).status_code for _ in range(3)
    ]
    assert statuses == [200, 200, 429]
    endpoint = 'endpoint="chat"'
    assert _metric(gw.url, f'{endpoint},model="-",reason="auth.missing_key",status="401"') == 1
    assert _metric(gw.url, f'{endpoint},model="-",reason="auth.invalid_key",status="401"') == 1
    assert _metric(gw.url, f'{endpoint},model="-",reason="key.model_not_allowed",status="403"') == 1
    assert _metric(gw.url, f'{endpoint},model="{ALIAS}",reason="quota.key.rpm",status="429"') == 1
    gw.flush()
    rows = ledger_rows(store_db)
    assert [(r["status"], r["reason"]) for r in rows] == [
        (403, "key.model_not_allowed"),
        (200, "ok"),
        (200, "ok"),
        (429, "quota.key.rpm"),
    ]
    assert {r["key_id"] for r in rows} == {key.id}
    config = tmp_path / "heshi.yaml"
    config.write_text(yaml.safe_dump({"home": str(home)}))
    out = CliRunner().invoke(
        cli, ["usage", "--tenant", "acme", "--by", "reason", "--json", "--config", str(config)]
    )
    assert out.exit_code == 0, out.output
    by_reason = {g["group"]: g["requests"] for g in json.loads(out.stdout)}
    assert by_reason == {"key.model_not_allowed": 1, "ok": 2, "quota.key.rpm": 1}


GUARD_MODEL = "Qwen/Qwen3Guard-Gen-0.6B"


@pytest.fixture
def classifier() -> Iterator[Upstream]:
    state = UpstreamState(
        reply="Safety: Safe\nCategories: None", prompt_tokens=40, completion_tokens=6
    )
    with FakeUpstream(state, name="classifier") as fake:
        yield fake


def _guarded(home: Path, upstream: Upstream, classifier: Upstream) -> HeshiConfig:
    base = gateway_config(home, upstream.base_url)
    backends = {
        **base.backends,
        "guard-up": BackendConfig(base_url=classifier.base_url, models=[GUARD_MODEL]),
    }
    aliases = {**base.aliases, "qwen3guard": AliasConfig(backend="guard-up", model=GUARD_MODEL)}
    guard = GuardConfig(enabled=True, model=GuardModelConfig(alias="qwen3guard"))
    return base.model_copy(update={"backends": backends, "aliases": aliases, "guard": guard})


def test_guard_model_calls_are_metered_to_the_caller(
    upstream: Upstream,
    classifier: Upstream,
    start_gateway: GatewayFactory,
    keys: KeyStore,
    store_db: Database,
    home: Path,
) -> None:
    plaintext, key = keys.create("acme", "cs", rpm=1)
    gw = start_gateway(_guarded(home, upstream, classifier))
    r = httpx.post(
        gw.url + "/v1/chat/completions",
        json=chat_body("你好", max_tokens=5),
        headers=bearer(plaintext),
    )
    assert r.status_code == 200 and r.headers["x-heshi-guard"] == "pass"
    assert classifier.state.calls == 2  # the prompt, then the answer
    gw.flush()
    rows = ledger_rows(store_db)
    request_id = r.headers["x-request-id"]
    assert {(x["request_id"], x["endpoint"]) for x in rows} == {
        (request_id, "chat"),
        (f"{request_id}.guard1", "guard"),
        (f"{request_id}.guard2", "guard"),
    }
    guard_rows = [x for x in rows if x["endpoint"] == "guard"]
    assert all(x["key_id"] == key.id and x["model"] == "qwen3guard" for x in guard_rows)
    # each charged what the classifier reported (it reports max_tokens as generated)
    assert [(x["prompt_tokens"], x["completion_tokens"]) for x in guard_rows] == [(40, 64)] * 2
    # the guard's calls used tokens but not the caller's one request a minute
    assert "guard-up" in {x["backend"] for x in guard_rows}


def test_a_budget_the_guard_model_exhausts_refuses_the_request(
    upstream: Upstream,
    classifier: Upstream,
    start_gateway: GatewayFactory,
    keys: KeyStore,
    store_db: Database,
    home: Path,
) -> None:
    """The classifier's tokens count against the caller's budget; when they no longer fit,
    the request is refused (429), never let through unscreened."""
    body = chat_body("你好", max_tokens=5)
    # Enough for the request's own reservation, not for it plus the classifier's 64 tokens.
    own = estimate_prompt_tokens(body) + 5
    plaintext, _ = keys.create("acme", "thin", budget_tokens=own + 10)
    gw = start_gateway(_guarded(home, upstream, classifier))
    r = httpx.post(gw.url + "/v1/chat/completions", json=body, headers=bearer(plaintext))
    assert r.status_code == 429, r.text
    assert r.json()["error"]["code"] == "insufficient_quota"
    assert upstream.state.calls == 0 and classifier.state.calls == 0
    gw.flush()
    assert [(x["status"], x["endpoint"]) for x in ledger_rows(store_db)] == [
        (429, "guard"),
        (429, "chat"),
    ]


def test_suspended_and_expired_keys_are_refused_with_a_row_of_their_own(
    upstream: Upstream,
    start_gateway: GatewayFactory,
    keys: KeyStore,
    store_db: Database,
    home: Path,
) -> None:
    suspended, s_key = keys.create("acme", "paused")
    keys.suspend(s_key.id, "违规调用")
    expired, e_key = keys.create("acme", "old", expires_at=datetime.now(UTC) + timedelta(days=1))
    with store_db.begin() as conn:  # a day later
        yesterday = datetime.now(UTC) - timedelta(days=1)
        conn.execute(update(api_keys).where(api_keys.c.id == e_key.id).values(expires_at=yesterday))
    gw = start_gateway(gateway_config(home, upstream.base_url))
    url = gw.url + "/v1/chat/completions"
    assert httpx.post(url, json=chat_body(), headers=bearer(suspended)).status_code == 403
    assert httpx.post(url, json=chat_body(), headers=bearer(expired)).status_code == 401
    gw.flush()
    rows = {r["key_id"]: (r["status"], r["reason"]) for r in ledger_rows(store_db)}
    assert rows == {s_key.id: (403, "key.suspended"), e_key.id: (401, "auth.expired_key")}


def test_judging_a_paid_answer_never_withholds_it_for_the_classifier_s_tokens(
    upstream: Upstream,
    classifier: Upstream,
    start_gateway: GatewayFactory,
    keys: KeyStore,
    store_db: Database,
    home: Path,
) -> None:
    """The budget holds the request and the judgement of its prompt, not the judgement
    of its answer: the answer, generated and charged, is still delivered; the budget
    ends over by at most that one classifier call, and the next request is refused."""
    body = chat_body("你好", max_tokens=5)
    classifier_body = {"messages": [{"role": "user", "content": "你好"}], "max_tokens": 64}
    guard_reservation = estimate_prompt_tokens(classifier_body) + 64
    budget = estimate_prompt_tokens(body) + 5 + guard_reservation
    plaintext, _ = keys.create("acme", "tight", budget_tokens=budget)
    # the request costs all it reserved: nothing comes back when it settles
    upstream.state.prompt_tokens = estimate_prompt_tokens(body)
    gw = start_gateway(_guarded(home, upstream, classifier))
    r = httpx.post(gw.url + "/v1/chat/completions", json=body, headers=bearer(plaintext))
    assert r.status_code == 200 and r.headers["x-heshi-guard"] == "pass", r.text
    assert classifier.state.calls == 2
    gw.flush()
    rows = ledger_rows(store_db)
    spent = sum(x["prompt_tokens"] + x["completion_tokens"] for x in rows)
    assert budget < spent <= budget + 40 + 64  # over by at most the answer's judgement
    again = httpx.post(gw.url + "/v1/chat/completions", json=body, headers=bearer(plaintext))
    assert again.status_code == 429
