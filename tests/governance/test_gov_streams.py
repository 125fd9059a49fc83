"""Streams are metered: the upstream's usage is settled, and a stream the upstream cuts
ends in a well-formed error event with its usage settled exactly once."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import httpx

from heshi.engines.sizing import estimate_prompt_tokens, text_tokens
from heshi.store.db import Database
from heshi.store.keys import KeyStore
from tests.governance.conftest import (
    GatewayFactory,
    Upstream,
    bearer,
    chat_body,
    gateway_config,
    row_for,
)


def sse_events(raw: bytes) -> list[bytes]:
    """The ``data:`` payloads of an SSE body, in order."""
    frames = [f for f in raw.split(b"\n\n") if f]
    assert all(f.startswith(b"data: ") for f in frames), frames
    return [f[len(b"data: ") :] for f in frames]


def needing(upstream: Upstream, tokens: int) -> dict[str, Any]:
    """A chat body that reserves exactly ``tokens``; the upstream will report that usage."""
    body = chat_body("你好")
    prompt = estimate_prompt_tokens(body)
    upstream.state.prompt_tokens = prompt
    return body | {"max_tokens": tokens - prompt}


def test_stream_settles_the_usage_the_upstream_reports(
    upstream: Upstream,
    start_gateway: GatewayFactory,
    keys: KeyStore,
    store_db: Database,
    home: Path,
) -> None:
    plaintext, key = keys.create("acme", "streamer", budget_tokens=10_000)
    upstream.state.prompt_tokens = 11
    gw = start_gateway(gateway_config(home, upstream.base_url))
    url = gw.url + "/v1/chat/completions"
    with httpx.Client(timeout=30) as client:
        for include_usage in (False, True):
            body = chat_body(stream=True, max_tokens=7)
            if include_usage:
                body["stream_options"] = {"include_usage": True}
            with client.stream("POST", url, json=body, headers=bearer(plaintext)) as r:
                assert r.status_code == 200
                events = sse_events(r.read())
            assert events[-1] == b"[DONE]"
            chunks = [json.loads(e) for e in events[:-1]]
            texts = [c["choices"][0]["delta"].get("content") for c in chunks if c["choices"]]
            assert texts == ["字0", "字1", "字2"]  # 3 text chunks, but upstream says 7 tokens
            usages = [c["usage"] for c in chunks if c.get("usage")]
            assert usages == (
                [{"prompt_tokens": 11, "completion_tokens": 7, "total_tokens": 18}]
                if include_usage
                else []
            )
            # the gateway asked upstream for usage even when the client did not
            assert upstream.state.bodies[-1]["stream_options"] == {"include_usage": True}
            gw.flush()
            row = row_for(store_db, r.headers["x-request-id"])
            assert (row["prompt_tokens"], row["completion_tokens"]) == (11, 7)
            assert (row["status"], row["key_id"], row["tenant"]) == (200, key.id, "acme")
            assert row["ttft_ms"] is not None and row["ttft_ms"] >= 0
    # both streams were charged to the key's budget: 10_000 - 2 x 18 left, and no more
    with httpx.Client(timeout=30) as client:
        r = client.post(url, json=needing(upstream, 10_000 - 36 + 1), headers=bearer(plaintext))
        assert r.status_code == 429 and "36 spent" in r.json()["error"]["message"]


def test_upstream_reset_mid_stream_is_an_error_event_and_is_settled_once(
    upstream: Upstream,
    start_gateway: GatewayFactory,
    keys: KeyStore,
    store_db: Database,
    home: Path,
) -> None:
    budget = 1000
    plaintext, _ = keys.create("acme", "cut", budget_tokens=budget)
    gw = start_gateway(gateway_config(home, upstream.base_url))
    url = gw.url + "/v1/chat/completions"
    upstream.state.reset_after = 2  # two chunks, then the connection drops
    with httpx.Client(timeout=30) as client:
        body = needing(upstream, 600) | {"stream": True}
        with client.stream("POST", url, json=body, headers=bearer(plaintext)) as r:
            assert r.status_code == 200
            events = sse_events(r.read())
        request_id = r.headers["x-request-id"]
        contents = [json.loads(e)["choices"][0]["delta"]["content"] for e in events[:2]]
        assert contents == ["字0", "字1"]
        assert len(events) == 4 and events[-1] == b"[DONE]"
        error = json.loads(events[2])["error"]
        assert set(error) == {"message", "type", "param", "code"}
        assert error["type"] == "upstream_error" and "up" in error["message"]

        gw.flush()
        row = row_for(store_db, request_id)  # exactly one row for the request
        # The upstream never reported usage: the prompt is charged as reserved, and the
        # text it produced (two chunks), in tokens estimated from above.
        prompt = estimate_prompt_tokens(body)
        produced = text_tokens("字0") + text_tokens("字1")
        assert (row["status"], row["reason"]) == (502, "upstream_error")
        assert (row["prompt_tokens"], row["completion_tokens"]) == (prompt, produced)

        # The 600-token reservation was released and what was produced was charged, once:
        # what is left fits exactly, one token more does not.
        upstream.state.reset_after = None
        left = budget - prompt - produced
        r = client.post(url, json=needing(upstream, left + 1), headers=bearer(plaintext))
        assert r.status_code == 429, r.text
        assert f"{prompt + produced} spent + 0 reserved" in r.json()["error"]["message"]
        r = client.post(url, json=needing(upstream, left), headers=bearer(plaintext))
        assert r.status_code == 200, r.text
    gw.flush()
    row = row_for(store_db, request_id)
    assert (row["status"], row["completion_tokens"]) == (502, produced)
