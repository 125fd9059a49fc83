"""Bad requests get OpenAI-style 4xx errors that name the problem."""

from __future__ import annotations

import re
from typing import Any

import httpx
import pytest

from tests.conftest import TINY_CTX, TINY_NAME

CHAT = "/v1/chat/completions"


def chat_body(**changes: Any) -> dict[str, Any]:
    body: dict[str, Any] = {
        "model": TINY_NAME,
        "messages": [{"role": "user", "content": "你好"}],
        "max_tokens": 4,
    }
    body.update(changes)
    return body


def error_of(resp: httpx.Response) -> dict[str, Any]:
    err = resp.json()["error"]
    assert set(err) >= {"message", "type", "code"}
    return dict(err)


def test_unknown_model_is_404_listing_available(gateway_url: str) -> None:
    r = httpx.post(gateway_url + CHAT, json=chat_body(model="gpt-4o"))
    assert r.status_code == 404
    err = error_of(r)
    assert err["code"] == "model_not_found"
    assert "gpt-4o" in err["message"] and TINY_NAME in err["message"]


def test_malformed_json_is_400(gateway_url: str) -> None:
    r = httpx.post(
        gateway_url + CHAT,
        content=b'{"model": "x", "messages": [',
        headers={"content-type": "application/json"},
    )
    assert r.status_code == 400
    assert "JSON" in error_of(r)["message"]


def test_body_must_be_an_object(gateway_url: str) -> None:
    r = httpx.post(gateway_url + CHAT, json=[1, 2])
    assert r.status_code == 400
    assert "object" in error_of(r)["message"]


@pytest.mark.parametrize(
    ("changes", "field"),
    [
        ({"temperature": "hot"}, "temperature"),
        ({"temperature": 3.5}, "temperature"),
        ({"max_tokens": 0}, "max_tokens"),
        ({"messages": []}, "messages"),
        ({"messages": "hi"}, "messages"),
        ({"messages": [{"role": "robot", "content": "hi"}]}, "messages.0.role"),
        ({"messages": [{"content": "hi"}]}, "messages.0.role"),
        ({"stream": "yes"}, "stream"),
        ({"n": 2}, "n"),
        ({"logit_bias": "x"}, "logit_bias"),
        ({"best_of": 3}, "best_of"),
        ({"functions": []}, "functions"),
    ],
)
def test_invalid_fields_are_named(gateway_url: str, changes: dict[str, Any], field: str) -> None:
    r = httpx.post(gateway_url + CHAT, json=chat_body(**changes))
    assert r.status_code == 400, r.text
    err = error_of(r)
    assert err["param"] == field
    assert field in err["message"]
    assert err["type"] == "invalid_request_error"


def test_missing_model_field(gateway_url: str) -> None:
    body = chat_body()
    del body["model"]
    r = httpx.post(gateway_url + CHAT, json=body)
    assert r.status_code == 400
    assert error_of(r)["param"] == "model"


def test_max_tokens_beyond_context_is_400_with_numbers(gateway_url: str) -> None:
    r = httpx.post(gateway_url + CHAT, json=chat_body(max_tokens=TINY_CTX + 1))
    assert r.status_code == 400
    msg = error_of(r)["message"]
    assert str(TINY_CTX + 1) in msg and str(TINY_CTX) in msg


@pytest.mark.parametrize("stream", [False, True])
def test_prompt_longer_than_context_states_both_numbers(gateway_url: str, stream: bool) -> None:
    long_prompt = "你好世界" * 200  # byte-level vocab: far more than 256 tokens
    r = httpx.post(
        gateway_url + CHAT,
        json=chat_body(messages=[{"role": "user", "content": long_prompt}], stream=stream),
        timeout=60,
    )
    assert r.status_code == 400
    err = error_of(r)
    assert err["code"] == "context_length_exceeded"
    assert str(TINY_CTX) in err["message"]
    numbers = [int(n) for n in re.findall(r"\d+", err["message"])]
    assert TINY_CTX in numbers
    assert any(n > TINY_CTX for n in numbers)  # the prompt's own length


def test_unknown_route_is_json_404(gateway_url: str) -> None:
    r = httpx.get(gateway_url + "/v1/nothing")
    assert r.status_code == 404
    assert error_of(r)["code"] == "not_found"


def test_wrong_method_is_json_405(gateway_url: str) -> None:
    r = httpx.get(gateway_url + CHAT)
    assert r.status_code == 405
    assert error_of(r)["code"] == "method_not_allowed"


def test_oversized_body_is_rejected(gateway_url: str) -> None:
    r = httpx.post(
        gateway_url + CHAT,
        content=b"{" + b" " * (9 * 1024 * 1024) + b"}",
        headers={"content-type": "application/json"},
        timeout=60,
    )
    assert r.status_code == 400
    assert "exceeds" in error_of(r)["message"]
