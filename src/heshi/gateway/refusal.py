"""The answer to a prompt the guard blocked: a normal completion whose text is the
refusal and whose ``finish_reason`` is ``content_filter`` (streamed when asked), so every
OpenAI client shows it like any other answer."""

from __future__ import annotations

import time
from collections.abc import AsyncIterator, Mapping

import orjson
from starlette.responses import Response, StreamingResponse

from heshi.engines.base import JSON

_DONE = b"data: [DONE]\n\n"


def _chat(model: str, request_id: str, refusal: str, stream: bool) -> JSON:
    created = int(time.time())
    if stream:
        return {
            "id": request_id,
            "object": "chat.completion.chunk",
            "created": created,
            "model": model,
            "choices": [
                {
                    "index": 0,
                    "delta": {"role": "assistant", "content": refusal},
                    "finish_reason": "content_filter",
                }
            ],
        }
    return {
        "id": request_id,
        "object": "chat.completion",
        "created": created,
        "model": model,
        "choices": [
            {
                "index": 0,
                "message": {"role": "assistant", "content": refusal},
                "finish_reason": "content_filter",
            }
        ],
        "usage": {"prompt_tokens": 0, "completion_tokens": 0, "total_tokens": 0},
    }


def _completion(model: str, request_id: str, refusal: str) -> JSON:
    return {
        "id": request_id,
        "object": "text_completion",
        "created": int(time.time()),
        "model": model,
        "choices": [{"index": 0, "text": refusal, "finish_reason": "content_filter"}],
        "usage": {"prompt_tokens": 0, "completion_tokens": 0, "total_tokens": 0},
    }


def refusal_response(
    body: JSON,
    model: str,
    request_id: str,
    refusal: str,
    endpoint: str,
    headers: Mapping[str, str],
) -> Response:
    stream = bool(body.get("stream"))
    payload = (
        _chat(model, request_id, refusal, stream)
        if endpoint == "chat"
        else _completion(model, request_id, refusal)
    )
    if not stream:
        return Response(orjson.dumps(payload), 200, headers=headers, media_type="application/json")

    async def frames() -> AsyncIterator[bytes]:
        yield b"data: " + orjson.dumps(payload) + b"\n\n"
        yield _DONE

    return StreamingResponse(
        frames(), media_type="text/event-stream", headers={"cache-control": "no-cache", **headers}
    )
