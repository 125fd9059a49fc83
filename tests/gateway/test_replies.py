"""Unit tests of what the gateway writes itself: SSE framing (errors after the first byte,
usage chunks, the role delta, recording before [DONE], a client gone before the first
byte) and refusal payloads. Real parts throughout: a real Recorder over a real SQLite
ledger; the ASGI side is driven by hand, as a server would drive it."""

from __future__ import annotations

from collections.abc import AsyncIterator, Iterator
from pathlib import Path
from typing import Any

import orjson
import pytest

from heshi.config import HeshiConfig
from heshi.engines.base import JSON
from heshi.errors import UpstreamError
from heshi.gateway.exchange import Exchange
from heshi.gateway.governance import Governance
from heshi.gateway.metrics import GatewayMetrics
from heshi.gateway.pipeline import OpenStream
from heshi.gateway.record import Recorder
from heshi.gateway.replies import Refusal, SSEReply
from heshi.guard.stage import GuardStage
from heshi.routing.names import NameEntry, Target
from heshi.routing.router import RoutePlan
from tests.governance.conftest import ledger_rows


@pytest.fixture
async def recorder(tmp_path: Path) -> AsyncIterator[Recorder]:
    config = HeshiConfig(home=tmp_path, store={"ledger_flush_seconds": 0.05})
    gov = Governance(config)
    await gov.start()
    try:
        yield Recorder(gov, GatewayMetrics(), GuardStage(config))
    finally:
        await gov.close()


def _chunk(text: str | None = None, *, usage: JSON | None = None) -> JSON:
    choices = [] if text is None else [{"index": 0, "delta": {"content": text}}]
    chunk: JSON = {"object": "chat.completion.chunk", "model": "upstream-name", "choices": choices}
    if usage is not None:
        chunk["usage"] = usage
    return chunk


class Source:
    """A backend's stream as the pipeline holds it: chunks, then maybe an error."""

    def __init__(self, chunks: list[JSON], error: Exception | None = None) -> None:
        self.chunks = chunks
        self.error = error
        self.closed = 0
        self.aborted = 0
        self.usage: JSON | None = None
        self._iterator: Any = None

    def __aiter__(self) -> AsyncIterator[JSON]:
        self._iterator = self.iterate()
        return self._iterator

    async def aclose(self) -> None:
        """What a RoutedStream does: close the backend's stream (idempotent)."""
        if self._iterator is not None:
            await self._iterator.aclose()
        self.closed = max(self.closed, 1)

    async def iterate(self) -> AsyncIterator[JSON]:
        try:
            for chunk in self.chunks:
                yield chunk
            if self.error is not None:
                raise self.error
        finally:
            self.closed += 1

    def abort(self) -> None:
        self.aborted += 1


def _exchange(include_usage: bool = False) -> Exchange:
    x = Exchange(endpoint="chat", model="qwen", stream=True, include_usage=include_usage)
    x.authenticated, x.generated = True, True
    entry = NameEntry("qwen", "alias", (Target("up", "upstream-name"),))
    x.plan = RoutePlan("qwen", "qwen", (entry,))
    return x


class Wire:
    """The server side of one response: what the app sent, and when the client leaves."""

    def __init__(self, gone: bool = False) -> None:
        self.sent: list[dict[str, Any]] = []
        self.gone = gone

    async def receive(self) -> dict[str, Any]:
        if self.gone:
            return {"type": "http.disconnect"}
        import anyio

        await anyio.sleep_forever()
        raise AssertionError("unreachable")

    async def send(self, message: dict[str, Any]) -> None:
        if not self.gone:
            self.sent.append(message)

    def frames(self) -> list[bytes]:
        body = b"".join(m.get("body", b"") for m in self.sent if m["type"] == "http.response.body")
        return [f.removeprefix(b"data: ") for f in body.split(b"\n\n") if f]


async def _play(recorder: Recorder, source: Source, x: Exchange, wire: Wire) -> Iterator[Any]:
    chunks = aiter(source)
    stream = OpenStream(x, chunks, source, recorder)  # type: ignore[arg-type]
    await SSEReply(stream, x.response_headers())({"type": "http"}, wire.receive, wire.send)
    recorder.gov.ledger.flush()
    return iter(ledger_rows(recorder.gov.db))


async def test_frames_carry_the_public_model_a_role_and_usage_only_when_asked(
    recorder: Recorder,
) -> None:
    usage = {"prompt_tokens": 7, "completion_tokens": 2, "total_tokens": 9}
    for include_usage in (False, True):
        source = Source([_chunk("你"), _chunk("好"), _chunk(usage=usage)])
        x, wire = _exchange(include_usage), Wire()
        await _play(recorder, source, x, wire)
        frames = wire.frames()
        assert frames[-1] == b"[DONE]"
        chunks = [orjson.loads(f) for f in frames[:-1]]
        assert {c["model"] for c in chunks} == {"qwen"}  # never the upstream's own name
        assert chunks[0]["choices"][0]["delta"] == {"content": "你", "role": "assistant"}
        assert [c.get("usage") for c in chunks if not c["choices"]] == (
            [usage] if include_usage else []
        )
        assert wire.sent[0]["status"] == 200 and source.closed == 1


async def test_an_error_after_the_first_byte_is_one_error_frame_then_done(
    recorder: Recorder,
) -> None:
    source = Source([_chunk("你")], error=UpstreamError("backend up dropped the connection"))
    x, wire = _exchange(), Wire()
    rows = await _play(recorder, source, x, wire)
    frames = wire.frames()
    assert frames[-1] == b"[DONE]" and len(frames) == 3
    error = orjson.loads(frames[1])["error"]
    assert error["code"] == "bad_gateway" and "dropped" in error["message"]
    row = next(rows)
    assert (row["status"], row["reason"], row["completion_tokens"]) == (502, "upstream_error", 0)
    assert wire.sent[-1]["more_body"] is False


async def test_the_request_is_recorded_before_done_is_sent(recorder: Recorder) -> None:
    recorded_when: list[int] = []
    source = Source([_chunk("你")])
    x, wire = _exchange(), Wire()
    send = wire.send

    async def watching_send(message: dict[str, Any]) -> None:
        if message.get("more_body") is False:
            recorded_when.append(int(x.finished))
        await send(message)

    wire.send = watching_send  # type: ignore[method-assign]
    await _play(recorder, source, x, wire)
    assert recorded_when == [1]


async def test_a_client_gone_before_the_first_byte_stops_the_backend_and_is_recorded(
    recorder: Recorder,
) -> None:
    source = Source([_chunk(str(i)) for i in range(100)])
    x, wire = _exchange(), Wire(gone=True)
    rows = await _play(recorder, source, x, wire)
    assert source.aborted == 1 and source.closed == 1
    row = next(rows)
    assert (row["status"], row["reason"]) == (499, "client_gone")
    assert wire.sent == []  # nothing reached a client that was not there


@pytest.mark.parametrize(
    ("kind", "stream", "object_", "field"),
    [
        ("chat", False, "chat.completion", "message"),
        ("chat", True, "chat.completion.chunk", "delta"),
        ("completions", False, "text_completion", None),
    ],
)
def test_refusals_look_like_any_answer(
    kind: Any, stream: bool, object_: str, field: str | None
) -> None:
    payload = Refusal("抱歉").payload(kind, "qwen", "req_1", stream)
    assert (payload["object"], payload["model"], payload["id"]) == (object_, "qwen", "req_1")
    choice = payload["choices"][0]
    assert choice["finish_reason"] == "content_filter"
    text = choice[field]["content"] if field else choice["text"]
    assert text == "抱歉"
    assert ("usage" in payload) is (not stream)
    response = Refusal("抱歉").reply(kind, "qwen", "req_1", stream, {"x-request-id": "req_1"})
    assert response.headers["x-request-id"] == "req_1"
    if stream:
        body = bytes(response.body)
        assert body.endswith(b"data: [DONE]\n\n") and body.count(b"data: ") == 2
