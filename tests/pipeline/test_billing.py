"""Nothing is used without being paid for: every way a stream can end is charged its
prompt and every token the engine generated (issue 9, defects 1-3), over real HTTP."""

from __future__ import annotations

import asyncio
import json
import socket
from pathlib import Path
from typing import Any

import httpx
import pytest

from heshi.config import BackendConfig, HeshiConfig, StoreConfig
from heshi.engines.llamacpp import LlamaCppEngine
from heshi.engines.sizing import estimate_prompt_tokens, text_tokens
from heshi.gateway.app import create_app
from heshi.gateway.governance import Governance
from heshi.store.db import Database
from heshi.store.keys import KeyStore
from tests.conftest import TINY_NAME, tiny_engine_config
from tests.fakes.waiting import wait_until
from tests.governance.conftest import (
    GatewayFactory,
    Upstream,
    bearer,
    chat_body,
    gateway_config,
    ledger_rows,
    row_for,
)
from tests.loopback import serve_app
from tests.pipeline.conftest import raw_chat_post, wait_recorded_and_freed


def _post_stream_and_leave(url: str, body: dict[str, Any], key: str, frames: int) -> str:
    """Open a stream, read ``frames`` SSE frames, hang up; the request id."""
    with httpx.stream(
        "POST", url + "/v1/chat/completions", json=body, headers=bearer(key), timeout=30
    ) as r:
        assert r.status_code == 200, r.read()
        seen = 0
        for line in r.iter_lines():
            if line.startswith("data: "):
                seen += 1
                if seen == frames:
                    break
        return r.headers["x-request-id"]


def _wait_for_row(flush: Any, db: Database, request_id: str) -> dict[str, Any]:
    def row() -> list[dict[str, Any]]:
        flush()
        return [r for r in ledger_rows(db) if r["request_id"] == request_id]

    (found,) = wait_until(row, timeout=20, interval=0.05, message=f"no row for {request_id}")
    return found


def test_streams_the_upstream_cuts_are_charged_their_prompt_and_the_next_is_refused(
    upstream: Upstream,
    start_gateway: GatewayFactory,
    keys: KeyStore,
    store_db: Database,
    home: Path,
) -> None:
    """Ten long prompts whose streams break after one chunk cost their prompts: with a
    budget that holds exactly ten of them and one more request, the eleventh is refused."""
    body = chat_body("你" * 5000, max_tokens=10, stream=True)
    prompt = estimate_prompt_tokens(body)
    assert prompt > 5000
    # the prompt as reserved, and the one chunk the upstream produced ("字0")
    cost = prompt + text_tokens("字0")
    next_reservation = prompt + 10
    budget = 10 * cost + next_reservation - 1
    plaintext, key = keys.create("acme", "cut", budget_tokens=budget)
    upstream.state.reset_after = 1  # one chunk, then the connection drops
    gw = start_gateway(gateway_config(home, upstream.base_url))
    with httpx.Client(timeout=30) as client:
        for _ in range(10):
            r = client.post(gw.url + "/v1/chat/completions", json=body, headers=bearer(plaintext))
            assert r.status_code == 200 and b'"upstream_error"' in r.content
        r = client.post(gw.url + "/v1/chat/completions", json=body, headers=bearer(plaintext))
        assert r.status_code == 429, r.text
        assert f"{10 * cost} spent" in r.json()["error"]["message"]
    gw.flush()
    rows = [r for r in ledger_rows(store_db) if r["key_id"] == key.id]
    assert [(r["status"], r["prompt_tokens"], r["completion_tokens"]) for r in rows[:10]] == [
        (502, prompt, text_tokens("字0"))
    ] * 10
    assert (rows[10]["status"], rows[10]["reason"]) == (429, "quota.key.budget_tokens")


def test_a_stream_whose_client_left_before_the_first_byte_is_settled(
    upstream: Upstream,
    start_gateway: GatewayFactory,
    keys: KeyStore,
    store_db: Database,
    home: Path,
) -> None:
    """The client gives up while the upstream has not produced anything yet; when the
    upstream does start, the gateway finds the client gone, stops, charges what was
    generated, and releases the rest of the reservation (not after 10 minutes)."""
    budget = 5000
    plaintext, _ = keys.create("acme", "impatient", budget_tokens=budget)
    upstream.state.hold = True
    gw = start_gateway(gateway_config(home, upstream.base_url))
    body = chat_body("你好", max_tokens=3000, stream=True)
    with pytest.raises(httpx.ReadTimeout):
        httpx.post(
            gw.url + "/v1/chat/completions", json=body, headers=bearer(plaintext), timeout=0.5
        )
    upstream.state.release.set()  # the upstream starts; nobody is listening any more

    def recorded() -> list[dict[str, Any]]:
        gw.flush()
        return ledger_rows(store_db)

    (row,) = wait_until(recorded, timeout=20, message="the abandoned stream was never recorded")
    assert (row["status"], row["reason"]) == (499, "client_gone")
    assert row["prompt_tokens"] == estimate_prompt_tokens(body)  # the upstream reported none
    charged = row["prompt_tokens"] + row["completion_tokens"]
    # The 3000-token reservation is gone: the rest of the budget can be used at once.
    upstream.state.hold = False
    rest = chat_body(
        "你好", max_tokens=budget - charged - estimate_prompt_tokens(chat_body("你好"))
    )
    upstream.state.prompt_tokens = estimate_prompt_tokens(rest)
    r = httpx.post(gw.url + "/v1/chat/completions", json=rest, headers=bearer(plaintext))
    assert r.status_code == 200, r.text


def test_without_max_tokens_a_remote_backend_cannot_overrun_a_budget(
    upstream: Upstream,
    start_gateway: GatewayFactory,
    keys: KeyStore,
    store_db: Database,
    home: Path,
) -> None:
    """100 concurrent requests without max_tokens to a backend that would write 4,000
    tokens each: the backend is told the limit admission reserved, so the budget holds."""
    budget = 10_300
    plaintext, key = keys.create("acme", "greedy", budget_tokens=budget)
    upstream.state.completion_tokens = 4000  # what it writes when nobody limits it
    upstream.state.delay = 0.05  # keep them in flight together
    config = gateway_config(home, upstream.base_url)
    backend = config.backends["up"].model_copy(update={"max_output_tokens": 100})
    gw = start_gateway(config.model_copy(update={"backends": {"up": backend}}))
    body = chat_body("你好")
    upstream.state.prompt_tokens = estimate_prompt_tokens(body)

    async def burst() -> list[int]:
        async with httpx.AsyncClient(timeout=60) as client:
            responses = await asyncio.gather(
                *(
                    client.post(
                        gw.url + "/v1/chat/completions", json=body, headers=bearer(plaintext)
                    )
                    for _ in range(100)
                )
            )
        return [r.status_code for r in responses]

    statuses = asyncio.run(burst())
    assert set(statuses) == {200, 429}
    assert {b.get("max_tokens") for b in upstream.state.bodies} == {100}
    gw.flush()
    rows = [r for r in ledger_rows(store_db) if r["key_id"] == key.id]
    charged = sum(r["prompt_tokens"] + r["completion_tokens"] for r in rows)
    assert charged <= budget
    assert statuses.count(200) == budget // (upstream.state.prompt_tokens + 100)


# -- the embedded engine: exact counts ------------------------------------------------


def _local_gateway(
    tiny_gguf: Path, home: Path, **engine: Any
) -> tuple[HeshiConfig, LlamaCppEngine, Governance]:
    config = HeshiConfig(
        home=home,
        engine=tiny_engine_config(tiny_gguf, **engine),
        store=StoreConfig(ledger_flush_seconds=0.05),
    )
    local = LlamaCppEngine(TINY_NAME, tiny_gguf, config.engine)
    return config, local, Governance(config)


def test_the_embedded_engine_reserves_and_charges_the_exact_prompt(
    tiny_gguf: Path, keys: KeyStore, store_db: Database, home: Path
) -> None:
    """Prompt tokens are counted with the model's own template and tokenizer before the
    call: what is reserved is what the engine then reports."""
    plaintext, key = keys.create("acme", "local", budget_tokens=100_000)
    config, local, gov = _local_gateway(tiny_gguf, home)
    body = {
        "model": TINY_NAME,
        "messages": [
            {"role": "system", "content": "你是客服。"},
            {"role": "user", "content": "hi, 年费怎么收？"},
        ],
        "max_tokens": 4,
    }
    with serve_app(create_app(config, {"local": local}, gov)) as url:
        r = httpx.post(url + "/v1/chat/completions", json=body, headers=bearer(plaintext))
        assert r.status_code == 200, r.text
        reported = r.json()["usage"]["prompt_tokens"]
        counted = asyncio.run(_count(local, body))
        assert counted == reported
        gov.ledger.flush()
        row = row_for(store_db, r.headers["x-request-id"])
        assert (row["prompt_tokens"], row["key_id"]) == (reported, key.id)
        # a prompt that cannot fit the context is refused before the engine is asked
        long = body | {"messages": [{"role": "user", "content": "字" * 400}]}
        r = httpx.post(url + "/v1/chat/completions", json=long, headers=bearer(plaintext))
        assert r.status_code == 400 and r.json()["error"]["code"] == "context_length_exceeded"


async def _count(engine: LlamaCppEngine, body: dict[str, Any]) -> int | None:
    return await engine.count_prompt_tokens("chat", body)


def test_a_stream_abandoned_on_the_embedded_engine_charges_every_decoded_token(
    tiny_gguf: Path, keys: KeyStore, store_db: Database, home: Path
) -> None:
    """The client reads one frame and leaves: the row has the exact prompt and every token
    llama.cpp reported decoding for it, those the client never read included. (llama.cpp
    may decode a step or two more before it sees the cancellation; those are not reported
    per request and are the one thing not charged — docs/governance.md.)"""
    plaintext, _ = keys.create("acme", "leaver", budget_tokens=100_000)
    config, local, gov = _local_gateway(tiny_gguf, home)
    body = {
        "model": TINY_NAME,
        "messages": [{"role": "user", "content": "讲个长故事"}],
        "max_tokens": 200,
        "temperature": 0,
        "stream": True,
    }
    with serve_app(create_app(config, {"local": local}, gov)) as url:
        before = local.stats()["tokens_predicted_total"]
        request_id = _post_stream_and_leave(url, body, plaintext, frames=1)
        row = _wait_for_row(gov.ledger.flush, store_db, request_id)
        decoded = local.stats()["tokens_predicted_total"] - before
        prompt = asyncio.run(_count(local, {k: v for k, v in body.items() if k != "stream"}))
    assert (row["status"], row["reason"]) == (499, "client_gone")
    assert row["prompt_tokens"] == prompt
    # more than the one frame the client read, never more than the engine decoded
    assert 1 < row["completion_tokens"] <= decoded < 200


def test_a_raw_socket_that_never_reads_its_stream_is_charged_and_freed(
    tiny_gguf: Path, keys: KeyStore, store_db: Database, home: Path
) -> None:
    """A client that sends a streaming request and closes without reading a byte."""
    plaintext, _ = keys.create("acme", "ghost", budget_tokens=100_000)
    config, local, gov = _local_gateway(tiny_gguf, home)
    payload = json.dumps(
        {
            "model": TINY_NAME,
            "stream": True,
            "max_tokens": 200,
            "messages": [{"role": "user", "content": "你好"}],
        }
    ).encode()
    with serve_app(create_app(config, {"local": local}, gov)) as url:
        port = int(url.rsplit(":", 1)[1])
        with socket.create_connection(("127.0.0.1", port)) as sock:
            sock.sendall(raw_chat_post(payload, plaintext))
        wait_recorded_and_freed(gov, store_db, local, "the unread stream")
    (row,) = ledger_rows(store_db)
    assert row["status"] in {200, 499}  # 200 if it finished before the close was seen
    assert row["prompt_tokens"] > 0 and row["completion_tokens"] > 0


def test_remote_backend_context_limits_the_reservation(
    upstream: Upstream, start_gateway: GatewayFactory, keys: KeyStore, home: Path
) -> None:
    """With ``context`` configured, a request without max_tokens reserves (and asks for)
    no more than the context (not less: the prompt is only estimated)."""
    plaintext, _ = keys.create(
        "acme", "ctx", budget_tokens=500 + estimate_prompt_tokens(chat_body("你好"))
    )
    config = gateway_config(home, upstream.base_url)
    backend = BackendConfig.model_validate(
        config.backends["up"].model_dump() | {"context": 500, "max_output_tokens": 8192}
    )
    gw = start_gateway(config.model_copy(update={"backends": {"up": backend}}))
    body = chat_body("你好")
    r = httpx.post(gw.url + "/v1/chat/completions", json=body, headers=bearer(plaintext))
    assert r.status_code == 200, r.text
    assert upstream.state.bodies[-1]["max_tokens"] == 500
    models = httpx.get(gw.url + "/v1/models", headers=bearer(plaintext)).json()["data"]
    assert {m["context_length"] for m in models} == {500}


def test_local_concurrent_requests_never_overrun_an_exact_budget(
    tiny_gguf: Path, keys: KeyStore, store_db: Database, home: Path
) -> None:
    """Reservations are exact on the embedded engine, so a burst against a budget is
    admitted only as far as it can be paid, and the total charged never passes it."""
    config, local, gov = _local_gateway(tiny_gguf, home, parallel=2)
    body = {"model": TINY_NAME, "messages": [{"role": "user", "content": "你好"}], "max_tokens": 20}
    with serve_app(create_app(config, {"local": local}, gov)) as url:
        per_request = asyncio.run(_count(local, body))
        assert per_request is not None
        budget = 5 * (per_request + 20) + 3
        plaintext, key = keys.create("acme", "burst", budget_tokens=budget)

        async def burst() -> list[int]:
            async with httpx.AsyncClient(timeout=60) as client:
                responses = await asyncio.gather(
                    *(
                        client.post(
                            url + "/v1/chat/completions", json=body, headers=bearer(plaintext)
                        )
                        for _ in range(12)
                    )
                )
            return [r.status_code for r in responses]

        statuses = asyncio.run(burst())
        gov.ledger.flush()
    assert statuses.count(200) >= 5 and set(statuses) <= {200, 429}
    rows = [r for r in ledger_rows(store_db) if r["key_id"] == key.id]
    assert sum(r["prompt_tokens"] + r["completion_tokens"] for r in rows) <= budget


def test_one_prompt_per_completion_request_and_one_output_limit(
    upstream: Upstream, start_gateway: GatewayFactory, home: Path
) -> None:
    """Several prompts would each be answered in full (one reservation cannot cover
    them); two different output limits would let a backend pick the larger one."""
    gw = start_gateway(gateway_config(home, upstream.base_url))
    r = httpx.post(gw.url + "/v1/completions", json={"model": "qwen", "prompt": ["a", "b"]})
    assert r.status_code == 400 and r.json()["error"]["param"] == "prompt"
    ok = httpx.post(gw.url + "/v1/completions", json={"model": "qwen", "prompt": ["a"]})
    assert ok.status_code == 200, ok.text
    body = chat_body(max_tokens=100_000, max_completion_tokens=10)
    assert httpx.post(gw.url + "/v1/chat/completions", json=body).status_code == 200
    sent = upstream.state.bodies[-1]
    assert (sent["max_tokens"], sent["max_completion_tokens"]) == (10, 10)
