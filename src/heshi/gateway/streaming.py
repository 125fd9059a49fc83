"""Server-sent events: engine chunk dicts → ``data: …`` frames.

Validation, routing and the engine's first chunk all happen before the response
starts, so every error up to that point is a normal HTTP error. After the first byte an
error becomes one ``data: {"error": …}`` frame followed by ``data: [DONE]``.
"""

from __future__ import annotations

import time
from collections.abc import AsyncIterator, Callable
from dataclasses import dataclass, field

import anyio
import orjson

from heshi.engines.base import JSON
from heshi.errors import HeshiError
from heshi.gateway.errors import error_body
from heshi.gateway.metrics import GatewayMetrics

DONE = b"data: [DONE]\n\n"


@dataclass
class StreamAccount:
    """What one stream produced, for metrics (and later metering)."""

    public_model: str
    endpoint: str
    started: float
    include_usage: bool
    first_token_at: float | None = None
    usage: JSON | None = None
    status: str = "200"
    role_sent: bool = False
    extra: dict[str, object] = field(default_factory=dict)


async def first_chunk(source: AsyncIterator[JSON]) -> JSON | None:
    """Pull the first chunk so engine errors surface before the HTTP status is sent."""
    try:
        return await anext(source)
    except StopAsyncIteration:
        return None


def _has_token(chunk: JSON) -> bool:
    for choice in chunk.get("choices") or ():
        delta = choice.get("delta")
        if isinstance(delta, dict) and (delta.get("content") or delta.get("reasoning_content")):
            return True
        if choice.get("text"):
            return True
    return False


def _shape(chunk: JSON, account: StreamAccount) -> JSON | None:
    """Rewrite a chunk for the client; return None to drop it."""
    chunk["model"] = account.public_model
    if not account.role_sent and chunk.get("object") == "chat.completion.chunk":
        # llama.cpp skips the role delta when the first token is half a character.
        for choice in chunk.get("choices") or ():
            delta = choice.get("delta")
            if isinstance(delta, dict):
                delta.setdefault("role", "assistant")
                account.role_sent = True
    if account.first_token_at is None and _has_token(chunk):
        account.first_token_at = time.perf_counter()
    usage = chunk.get("usage")
    if usage:
        account.usage = usage
        if not account.include_usage:
            if not chunk.get("choices"):
                return None
            chunk.pop("usage", None)
    return chunk


async def sse_frames(
    first: JSON | None,
    source: AsyncIterator[JSON],
    account: StreamAccount,
    metrics: GatewayMetrics,
    on_close: Callable[[StreamAccount], None] | None = None,
) -> AsyncIterator[bytes]:
    """Frames for ``StreamingResponse``; closes ``source`` however the stream ends."""
    try:
        if first is not None and (shaped := _shape(first, account)) is not None:
            yield b"data: " + orjson.dumps(shaped) + b"\n\n"
        async for chunk in source:
            if (shaped := _shape(chunk, account)) is not None:
                yield b"data: " + orjson.dumps(shaped) + b"\n\n"
        yield DONE
    except HeshiError as exc:
        account.status = str(exc.status_code)
        yield b"data: " + error_body(exc) + b"\n\n"
        yield DONE
    except BaseException:
        # The client went away (cancellation) or we broke: either way not a 200.
        account.status = "499"
        raise
    finally:
        with anyio.CancelScope(shield=True):
            await source.aclose()  # type: ignore[attr-defined]
        _finish(account, metrics)
        if on_close is not None:
            on_close(account)


def _finish(account: StreamAccount, metrics: GatewayMetrics) -> None:
    now = time.perf_counter()
    model = account.public_model
    metrics.requests.labels(model, account.endpoint, account.status).inc()
    metrics.latency.labels(model, account.endpoint).observe(now - account.started)
    if account.first_token_at is not None:
        metrics.ttft.labels(model).observe(account.first_token_at - account.started)
    metrics.record_usage(model, account.usage)
    metrics.in_flight.labels(model).dec()
