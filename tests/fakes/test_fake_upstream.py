"""The fake upstream itself: the behaviours other tests rely on, and the knobs that no
other test turns yet (so they are known to work when someone needs them)."""

from __future__ import annotations

import json
import threading
import time
from collections.abc import Iterator
from typing import Any

import httpx
import pytest

from tests.fakes.upstream import UPSTREAM_MODEL, FakeUpstream, UpstreamState
from tests.fakes.waiting import wait_until

CHAT: dict[str, Any] = {"model": "m", "messages": [{"role": "user", "content": "你好"}]}


@pytest.fixture
def fake() -> Iterator[FakeUpstream]:
    with FakeUpstream() as upstream:
        yield upstream


def events(raw: bytes) -> list[Any]:
    """The data of each SSE event; ``[DONE]`` as the string."""
    out: list[Any] = []
    for frame in raw.split(b"\n\n"):
        if frame:
            assert frame.startswith(b"data: "), frame
            data = frame[6:].decode()
            out.append(data if data == "[DONE]" else json.loads(data))
    return out


def stream(fake: FakeUpstream, body: dict[str, Any] | None = None, **extra: Any) -> list[Any]:
    payload = (body or CHAT) | {"stream": True, **extra}
    r = httpx.post(fake.base_url + "/chat/completions", json=payload, timeout=10)
    assert r.status_code == 200 and r.headers["content-type"].startswith("text/event-stream")
    return events(r.content)


def contents(items: list[Any]) -> list[str]:
    return [
        e["choices"][0]["delta"]["content"] for e in items if isinstance(e, dict) and e["choices"]
    ]


def test_defaults_answer_json_and_streams_with_usage(fake: FakeUpstream) -> None:
    models = httpx.get(fake.base_url + "/models").json()
    assert models["data"][0]["id"] == UPSTREAM_MODEL
    r = httpx.post(fake.base_url + "/chat/completions", json=CHAT | {"max_tokens": 40}).json()
    assert r["choices"][0]["message"]["content"] == "好的" and r["model"] == "m"
    assert r["usage"] == {"prompt_tokens": 5, "completion_tokens": 40, "total_tokens": 45}
    text = httpx.post(fake.base_url + "/completions", json={"model": "m", "prompt": "x"}).json()
    assert (text["object"], text["choices"][0]["text"]) == ("text_completion", "好的")
    got = stream(fake, stream_options={"include_usage": True})
    assert contents(got) == ["字0", "字1", "字2"]
    assert got[-2]["usage"]["completion_tokens"] == 3 and got[-1] == "[DONE]"
    assert stream(fake)[-2]["choices"]  # no usage chunk unless asked
    embedded = httpx.post(fake.base_url + "/embeddings", json={"model": "m", "input": ["a", "b"]})
    assert len(embedded.json()["data"]) == 2
    assert fake.state.calls == 5 and len(fake.state.bodies) == 5
    assert [r.path for r in fake.state.requests][:2] == ["/v1/models", "/v1/chat/completions"]


def test_replies_echo_respond_and_deltas(fake: FakeUpstream) -> None:
    fake.state.reply = "你好世界"
    assert contents(stream(fake)) == ["你好", "世界"]
    fake.state.echo = True
    assert contents(stream(fake)) == ["你好"]
    fake.state.respond = lambda body: str(len(body["messages"]))
    assert contents(stream(fake)) == ["1"]
    fake.state.deltas = ["一", "二", "三"]
    assert contents(stream(fake)) == ["一", "二", "三"]
    fake.state.usage_from_max_tokens = False
    r = httpx.post(fake.base_url + "/chat/completions", json=CHAT | {"max_tokens": 40}).json()
    assert r["usage"]["completion_tokens"] == 3 and r["choices"][0]["message"]["content"] == "1"


@pytest.mark.parametrize("status", [400, 401, 500, 503])
def test_status_modes_answer_openai_errors_on_every_endpoint(
    fake: FakeUpstream, status: int
) -> None:
    fake.state.mode = str(status)
    fake.state.error_message = "no" if status == 503 else None
    for r in (
        httpx.get(fake.base_url + "/models"),
        httpx.post(fake.base_url + "/chat/completions", json=CHAT | {"stream": True}),
        httpx.post(fake.base_url + "/embeddings", json={"model": "m", "input": "x"}),
    ):
        assert r.status_code == status
        error = r.json()["error"]
        assert set(error) == {"message", "type", "param", "code"} and error["message"]
    assert error["message"] == {400: "max_tokens is too large", 401: "Unauthorized",
                                500: "Internal Server Error", 503: "no"}[status]  # fmt: skip


def test_garbage_and_hang(fake: FakeUpstream) -> None:
    fake.state.mode = "garbage"
    r = httpx.get(fake.base_url + "/models")
    assert r.status_code == 200 and r.text.startswith("<html>")
    fake.state.mode = "hang"
    with pytest.raises(httpx.ReadTimeout):
        httpx.get(fake.base_url + "/models", timeout=0.2)
    wait_until(lambda: fake.state.disconnects == 1, timeout=5, message="hang did not end")
    answers: list[httpx.Response] = []
    sender = threading.Thread(
        target=lambda: answers.append(httpx.post(fake.base_url + "/chat/completions", json=CHAT))
    )
    sender.start()
    wait_until(lambda: fake.state.calls == 1, timeout=5, message="request never arrived")
    assert not answers
    fake.state.release.set()  # a hang ends when released
    sender.join(10)
    assert answers and answers[0].status_code == 200


@pytest.mark.parametrize("mode", ["cut", "reset_after"])
def test_a_stream_can_drop_its_connection(fake: FakeUpstream, mode: str) -> None:
    if mode == "cut":
        fake.state.mode = "cut"
    else:
        fake.state.reset_after = 1
    with (
        httpx.stream(
            "POST", fake.base_url + "/chat/completions", json=CHAT | {"stream": True}
        ) as r,
        pytest.raises(httpx.RemoteProtocolError),
    ):
        r.read()
    assert contents(fake.state.sent) == ["字0"]


def test_empty_and_error_event_streams(fake: FakeUpstream) -> None:
    fake.state.mode = "empty"
    assert stream(fake) == ["[DONE]"]
    fake.state.mode = "error-event"
    got = stream(fake)
    assert contents(got[:1]) == ["字0"] and got[1]["error"]["message"] == "Internal Server Error"


def test_hold_delay_slow_first_chunk_and_chunk_delay(fake: FakeUpstream) -> None:
    state = fake.state
    state.delay = 0.3
    started = time.monotonic()
    httpx.post(fake.base_url + "/chat/completions", json=CHAT)
    assert time.monotonic() - started >= 0.3
    state.delay, state.mode, state.first_chunk_delay = 0.0, "slow-first-chunk", 0.3
    before = len(state.sent)
    with httpx.stream(
        "POST", fake.base_url + "/chat/completions", json=CHAT | {"stream": True}
    ) as r:
        headers_at = time.monotonic()
        assert len(state.sent) == before  # the headers came before the first chunk
        r.read()
    assert time.monotonic() - headers_at >= 0.3
    state.mode, state.chunk_delay = "ok", 0.1
    started = time.monotonic()
    assert contents(stream(fake)) == ["字0", "字1", "字2"]
    assert time.monotonic() - started >= 0.2  # two gaps between three chunks
    state.chunk_delay, state.hold = 0.0, True
    with pytest.raises(httpx.ReadTimeout):
        httpx.post(fake.base_url + "/chat/completions", json=CHAT, timeout=0.2)


def test_pause_after_holds_the_rest_of_a_stream_until_released(fake: FakeUpstream) -> None:
    fake.state.pause_after = 2
    with httpx.stream(
        "POST", fake.base_url + "/chat/completions", json=CHAT | {"stream": True}
    ) as r:
        lines = (line for line in r.iter_lines() if line)
        first = [json.loads(next(lines)[6:]) for _ in range(2)]  # a buffering server hangs
        assert contents(first) == contents(fake.state.sent) == ["字0", "字1"]
        fake.state.release.set()
        rest = [line[6:] for line in lines]
    assert rest[-1] == "[DONE]" and contents([json.loads(rest[0])]) == ["字2"]


def test_down_refuses_connections_and_up_serves_on_the_same_port(fake: FakeUpstream) -> None:
    port = fake.port
    with httpx.Client() as client:
        assert client.get(fake.base_url + "/models").status_code == 200  # kept alive
        fake.down()
        with pytest.raises(httpx.ConnectError):
            client.get(fake.base_url + "/models")
        fake.up()
        assert fake.port == port
        assert client.get(fake.base_url + "/models").status_code == 200


def test_a_state_given_is_the_state_used() -> None:
    state = UpstreamState(reply="好")
    with FakeUpstream(state) as fake:
        assert fake.state is state
        r = httpx.post(fake.base_url + "/chat/completions", json=CHAT)
        assert r.json()["choices"][0]["message"]["content"] == "好"
    with pytest.raises(httpx.ConnectError):
        httpx.get(fake.base_url + "/models")  # closed
    fake.close()  # twice is fine
