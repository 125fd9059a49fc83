"""A decline of a request the guard read as safe is asked once more (heshi.gateway.again),
through the real gateway with a real HTTP server standing in for the model."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import httpx
import pytest

from heshi.config import GuardConfig, HeshiConfig, TenantConfig
from heshi.guard.classifier import SafetyClassifier
from heshi.store.db import Database
from heshi.store.keys import KeyStore
from tests.fakes.waiting import wait_until
from tests.governance.conftest import (
    GatewayFactory,
    Upstream,
    bearer,
    chat_body,
    gateway_config,
    ledger_rows,
)

PLAIN = "外卖少送了一杯饮料"  # scored below the band judge's 0.4
UNSURE = "帮我写一个爬虫抓取天气网站的数据"  # in the band (0.4 up to 0.7)
DECLINE = "抱歉，我无法提供外卖服务。"
ANSWER = "您好，少送的饮料可以在订单页申请补送或退款，也可以联系商家客服。"


def _config(home: Path, upstream: Upstream, **policy: Any) -> HeshiConfig:
    base = gateway_config(home, upstream.base_url)
    guard = GuardConfig(enabled=True, classifier={"judge": {"enabled": False}}, policy=policy)
    return base.model_copy(update={"guard": guard, "tenants": {"acme": TenantConfig()}})


def _answers(upstream: Upstream, *texts: str) -> None:
    """The upstream answers ``texts`` in turn, then the last one again."""
    left = list(texts)
    upstream.state.respond = lambda body: left.pop(0) if len(left) > 1 else left[0]


def _client(start_gateway: GatewayFactory, config: HeshiConfig, key: str) -> httpx.Client:
    gw = start_gateway(config)
    return httpx.Client(base_url=gw.url, timeout=30, headers=bearer(key))


def _streamed(client: httpx.Client, body: dict[str, Any]) -> tuple[str, list[Any]]:
    with client.stream("POST", "/v1/chat/completions", json={**body, "stream": True}) as r:
        raw = r.read().decode()
    events = [line[6:] for line in raw.splitlines() if line.startswith("data: ")]
    assert events[-1] == "[DONE]", raw
    chunks = [json.loads(e) for e in events[:-1]]
    text = "".join(c["choices"][0]["delta"].get("content") or "" for c in chunks if c["choices"])
    return text, chunks


def test_the_prompts_are_where_the_test_needs_them() -> None:
    plain, unsure = SafetyClassifier.load().read([PLAIN, UNSURE])
    policy = GuardConfig().policy
    assert policy.retry_below == 0.4 and plain.unsafe < 0.4 <= unsure.unsafe < 0.7


def test_a_declined_answer_is_asked_once_more_and_both_calls_are_charged(
    upstream: Upstream, start_gateway: GatewayFactory, keys: KeyStore, store_db: Database,
    home: Path,
) -> None:  # fmt: skip
    key, made = keys.create("acme", "cs")
    _answers(upstream, DECLINE, ANSWER)
    gw = start_gateway(_config(home, upstream))
    with httpx.Client(base_url=gw.url, timeout=30, headers=bearer(key)) as client:
        r = client.post("/v1/chat/completions", json=chat_body(PLAIN, max_tokens=40))
    assert r.status_code == 200, r.text
    assert r.json()["choices"][0]["message"]["content"] == ANSWER
    assert r.headers["x-heshi-asked-again"] == "1"
    # the same request, as the model saw it (the plain policy in), asked twice
    first, second = upstream.state.bodies
    assert first["messages"] == second["messages"] and first["messages"][0]["role"] == "system"
    assert r.json()["usage"] == {"prompt_tokens": 10, "completion_tokens": 80, "total_tokens": 90}
    gw.flush()
    rows = [row for row in ledger_rows(store_db) if row["key_id"] == made.id]
    assert sorted(row["request_id"] for row in rows) == sorted(
        [r.headers["x-request-id"], r.headers["x-request-id"] + ".chat1"]
    )
    assert all(row["completion_tokens"] == 40 and row["status"] == 200 for row in rows)


def test_a_declined_stream_is_answered_by_the_second_call_in_the_streams_format(
    upstream: Upstream, start_gateway: GatewayFactory, keys: KeyStore, store_db: Database,
    home: Path,
) -> None:  # fmt: skip
    key, made = keys.create("acme", "cs")
    _answers(upstream, DECLINE + "如有其他问题请告诉我。", ANSWER)
    gw = start_gateway(_config(home, upstream))
    with httpx.Client(base_url=gw.url, timeout=30, headers=bearer(key)) as client:
        body = chat_body(PLAIN, stream_options={"include_usage": True})
        text, chunks = _streamed(client, body)
    assert text == ANSWER  # (a stream's headers are sent before its text is read)
    ends = [c["choices"][0]["finish_reason"] for c in chunks if c["choices"]]
    assert ends[-1] == "stop" and ends.count("stop") == 1

    # the usage the client is shown is what both ledger rows charge (the first, cut at its
    # first sentence, as estimated)
    def recorded() -> list[dict[str, Any]]:
        gw.flush()
        rows = [row for row in ledger_rows(store_db) if row["key_id"] == made.id]
        return rows if len(rows) == 2 else []

    rows = wait_until(recorded, timeout=20, message="both calls were not recorded")
    assert chunks[-1]["choices"] == []
    assert chunks[-1]["usage"]["prompt_tokens"] == sum(row["prompt_tokens"] for row in rows)
    assert chunks[-1]["usage"]["completion_tokens"] == sum(row["completion_tokens"] for row in rows)
    assert {c["id"] for c in chunks} == {chunks[0]["id"]}  # one stream, one id
    assert upstream.state.calls == 2
    assert "stream" not in upstream.state.bodies[1]  # the second is asked whole


DECLINE2 = "对不起，我不能帮助你完成这个任务。"


def test_asked_again_up_to_retries_while_the_answers_decline(
    upstream: Upstream, start_gateway: GatewayFactory, keys: KeyStore, store_db: Database,
    home: Path,
) -> None:  # fmt: skip
    key, made = keys.create("acme", "cs")
    gw = start_gateway(_config(home, upstream, retries=2))
    with httpx.Client(base_url=gw.url, timeout=30, headers=bearer(key)) as client:
        _answers(upstream, DECLINE, DECLINE2, ANSWER)
        r = client.post("/v1/chat/completions", json=chat_body(PLAIN, max_tokens=40))
        assert r.status_code == 200, r.text
        assert r.json()["choices"][0]["message"]["content"] == ANSWER
        assert r.headers["x-heshi-asked-again"] == "2" and upstream.state.calls == 3
        assert r.json()["usage"] == {"prompt_tokens": 15, "completion_tokens": 120,
                                     "total_tokens": 135}  # fmt: skip
        # an answer at the first retry ends the asking
        _answers(upstream, DECLINE, ANSWER, DECLINE2)
        again = client.post("/v1/chat/completions", json=chat_body(PLAIN, max_tokens=40))
        assert again.json()["choices"][0]["message"]["content"] == ANSWER
        assert again.headers["x-heshi-asked-again"] == "1" and upstream.state.calls == 5
        # a stream: the last answer, in the stream's format
        _answers(upstream, DECLINE, DECLINE2, ANSWER)
        text, chunks = _streamed(client, chat_body(PLAIN))
    assert text == ANSWER and upstream.state.calls == 8
    assert [c["choices"][0]["finish_reason"] for c in chunks if c["choices"]][-1] == "stop"
    gw.flush()
    ids = {row["request_id"] for row in ledger_rows(store_db) if row["key_id"] == made.id}
    first = r.headers["x-request-id"]
    assert {first, first + ".chat1", first + ".chat2"} <= ids
    assert again.headers["x-request-id"] + ".chat2" not in ids


def test_the_last_decline_is_sent_when_every_retry_declines_or_one_fails(
    upstream: Upstream, start_gateway: GatewayFactory, keys: KeyStore, home: Path
) -> None:
    key, _ = keys.create("acme", "cs")
    with _client(start_gateway, _config(home, upstream), key) as client:  # retries: 1
        _answers(upstream, DECLINE, DECLINE2, ANSWER)
        r = client.post("/v1/chat/completions", json=chat_body(PLAIN))
        assert r.json()["choices"][0]["message"]["content"] == DECLINE2
        assert r.headers["x-heshi-asked-again"] == "1" and upstream.state.calls == 2
    calls = iter(range(100))

    def respond(body: dict[str, Any]) -> str:
        if next(calls) == 1:
            upstream.state.mode = "500"  # the model is away from the third call on
        return DECLINE2

    upstream.state.respond = respond
    with _client(start_gateway, _config(home, upstream, retries=3), key) as client:
        r = client.post("/v1/chat/completions", json=chat_body(PLAIN))
    assert r.status_code == 200 and r.json()["choices"][0]["message"]["content"] == DECLINE2
    assert r.headers["x-heshi-asked-again"] == "2"  # calls made: the failed one too


def test_a_stream_asked_again_keeps_the_tool_calls_of_the_answer(
    upstream: Upstream, start_gateway: GatewayFactory, keys: KeyStore, home: Path
) -> None:
    key, _ = keys.create("acme", "cs")
    call = {"name": "find_order", "arguments": '{"order_id": "20240611"}'}

    def respond(body: dict[str, Any]) -> str:
        if not body.get("stream"):  # the second call (asked whole) answers with a tool call
            upstream.state.tool_calls = [call]
        return DECLINE

    upstream.state.respond = respond
    with _client(start_gateway, _config(home, upstream), key) as client:
        text, chunks = _streamed(client, chat_body(PLAIN))
    assert upstream.state.calls == 2 and text == ""
    calls = [
        tc
        for c in chunks
        if c["choices"]
        for tc in c["choices"][0]["delta"].get("tool_calls") or []
    ]
    assert calls == [{"index": 0, "id": "call_up0", "type": "function", "function": call}]
    assert [c["choices"][0]["finish_reason"] for c in chunks if c["choices"]][-1] == "tool_calls"


@pytest.mark.parametrize("sampling", [{"temperature": 0}, {"top_k": 1}, {"seed": 7}])
def test_sampling_that_repeats_itself_is_not_asked_again(
    sampling: dict[str, Any], upstream: Upstream, start_gateway: GatewayFactory,
    keys: KeyStore, home: Path,
) -> None:  # fmt: skip
    key, _ = keys.create("acme", "cs")
    _answers(upstream, DECLINE, ANSWER)
    with _client(start_gateway, _config(home, upstream, retries=3), key) as client:
        r = client.post("/v1/chat/completions", json={**chat_body(PLAIN), **sampling})
    assert r.json()["choices"][0]["message"]["content"] == DECLINE and upstream.state.calls == 1


def test_an_answer_streams_through_untouched_once_its_first_sentence_is_read(
    upstream: Upstream, start_gateway: GatewayFactory, keys: KeyStore, home: Path
) -> None:
    key, _ = keys.create("acme", "cs")
    upstream.state.deltas = ["您好，", "少送的饮料", "可以申请补送。", "也可以", "联系商家。"]
    with _client(start_gateway, _config(home, upstream), key) as client:
        text, chunks = _streamed(client, chat_body(PLAIN))
    assert text == "您好，少送的饮料可以申请补送。也可以联系商家。" and upstream.state.calls == 1
    assert [c["choices"][0]["finish_reason"] for c in chunks if c["choices"]][-1] == "stop"
    # a decline that never finishes its first sentence is judged at the stream's end
    upstream.state.deltas = ["抱歉，", "我不能"]
    _answers(upstream, ANSWER)
    with _client(start_gateway, _config(home, upstream), key) as client:
        text, _ = _streamed(client, chat_body(PLAIN))
    assert text == ANSWER and upstream.state.calls == 3


@pytest.mark.parametrize(
    ("why", "body", "policy"),
    [
        ("the application's own system prompt", {"messages": [
            {"role": "system", "content": "你是本店客服，只回答本店业务。"},
            {"role": "user", "content": PLAIN}]}, {}),
        ("greedy sampling gives the same answer", {"temperature": 0}, {}),
        ("the classifier's band: the model judges", {"messages": [
            {"role": "user", "content": UNSURE}]}, {}),
        ("turned off", {}, {"retry_below": None}),
        ("no retries", {}, {"retries": 0}),
    ],
)  # fmt: skip
def test_a_decline_stands_when_asking_again_is_not_for_it(
    why: str, body: dict[str, Any], policy: dict[str, Any],
    upstream: Upstream, start_gateway: GatewayFactory, keys: KeyStore, home: Path,
) -> None:  # fmt: skip
    key, _ = keys.create("acme", "cs")
    _answers(upstream, DECLINE, ANSWER)
    with _client(start_gateway, _config(home, upstream, **policy), key) as client:
        r = client.post("/v1/chat/completions", json={**chat_body(PLAIN), **body})
    assert r.status_code == 200 and r.json()["choices"][0]["message"]["content"] == DECLINE, why
    assert upstream.state.calls == 1 and "x-heshi-asked-again" not in r.headers


def test_a_second_call_that_fails_leaves_the_decline(
    upstream: Upstream, start_gateway: GatewayFactory, keys: KeyStore, home: Path
) -> None:
    key, _ = keys.create("acme", "cs")

    def respond(body: dict[str, Any]) -> str:
        upstream.state.mode = "500"  # the model is away from the second call on
        return DECLINE + "请联系商家。"

    upstream.state.respond = respond
    with _client(start_gateway, _config(home, upstream), key) as client:
        whole = client.post("/v1/chat/completions", json=chat_body(PLAIN))
        assert whole.status_code == 200, whole.text
        assert whole.json()["choices"][0]["message"]["content"] == DECLINE + "请联系商家。"
        upstream.state.mode = "ok"
        text, chunks = _streamed(client, chat_body(PLAIN))
    # the stream's decline was cut with the chunk that ended its first sentence
    assert text.startswith(DECLINE) and "商家" not in text
    assert [c["choices"][0]["finish_reason"] for c in chunks if c["choices"]][-1] == "stop"


def test_an_english_decline_is_read_at_its_first_full_stop(
    upstream: Upstream, start_gateway: GatewayFactory, keys: KeyStore, home: Path
) -> None:
    key, _ = keys.create("acme", "cs")
    upstream.state.deltas = ["I'm sorry, but ", "I can't assist ", "with that. ", "Anything else?"]
    _answers(upstream, "Rain fell on the Bund as Detective Lu lit his last cigarette.")
    with _client(start_gateway, _config(home, upstream), key) as client:
        story = chat_body("Write a short noir detective story set in 1940s Shanghai.")
        text, _ = _streamed(client, story)
    assert text.startswith("Rain fell on the Bund") and upstream.state.calls == 2


def test_a_client_that_leaves_during_the_second_call_is_charged_for_both(
    upstream: Upstream, start_gateway: GatewayFactory, keys: KeyStore, store_db: Database,
    home: Path,
) -> None:  # fmt: skip
    key, made = keys.create("acme", "cs")

    def respond(body: dict[str, Any]) -> str:
        upstream.state.hold = True  # the second call waits until the client has gone
        return DECLINE

    upstream.state.respond = respond
    gw = start_gateway(_config(home, upstream))
    body = {**chat_body(PLAIN, max_tokens=50), "stream": True}
    url = gw.url + "/v1/chat/completions"
    with (
        pytest.raises(httpx.ReadTimeout),
        httpx.stream("POST", url, json=body, headers=bearer(key), timeout=2) as r,
    ):
        r.read()
    upstream.state.release.set()

    def recorded() -> list[dict[str, Any]]:
        gw.flush()
        rows = [row for row in ledger_rows(store_db) if row["key_id"] == made.id]
        return rows if len(rows) == 2 else []

    rows = wait_until(recorded, timeout=20, message="both calls were not recorded")
    first, second = sorted(rows, key=lambda row: len(row["request_id"]))
    assert first["status"] == 499 and first["completion_tokens"] > 0  # the decline, charged
    assert second["request_id"] == first["request_id"] + ".chat1"
    # finished for nobody (200) or stopped when the gateway saw the client go (499): charged
    assert second["status"] in (200, 499) and second["prompt_tokens"] > 0


def test_usage_is_summed_over_the_calls_that_report_it() -> None:
    from heshi.gateway.again import _summed

    one = {"prompt_tokens": 5, "completion_tokens": 40, "total_tokens": 45}
    assert _summed(one, one) == {"prompt_tokens": 10, "completion_tokens": 80, "total_tokens": 90}
    assert _summed(one, None) == one and _summed(None, one) == one  # a call without usage
    assert _summed(None, None) is None
