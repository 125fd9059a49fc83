"""Server-sent events: engine chunk dicts → ``data: …`` frames.

Validation, routing and the engine's first chunk all happen before the response
starts, so every error up to that point is a normal HTTP error. After the first byte an
error becomes one ``data: {"error": …}`` frame followed by ``data: [DONE]``.
"""

from __future__ import annotations

import time
from collections.abc import AsyncIterator, Awaitable, Callable
from dataclasses import dataclass

import anyio
import orjson

from heshi.engines.base import JSON
from heshi.errors import HeshiError
from heshi.gateway.errors import error_body

DONE = b"data: [DONE]\n\n"


@dataclass
class StreamAccount:
    """What one stream produced, for metering."""

    public_model: str
    include_usage: bool
    first_token_at: float | None = None
    usage: JSON | None = None
    token_chunks: int = 0  # chunks carrying text: the usage estimate if the stream breaks
    status: int = 200
    role_sent: bool = False


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
    if _has_token(chunk):
        account.token_chunks += 1
        if account.first_token_at is None:
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
    on_close: Callable[[StreamAccount], Awaitable[None]],
) -> AsyncIterator[bytes]:
    """Frames for ``StreamingResponse``; closes ``source`` and calls ``on_close`` once,
    however the stream ends (done, error, client gone). When it ends with ``[DONE]``,
    ``on_close`` runs before that last frame is sent: a client that saw the stream end
    has been metered, even if the gateway is killed right after."""
    try:
        if first is not None and (shaped := _shape(first, account)) is not None:
            yield b"data: " + orjson.dumps(shaped) + b"\n\n"
        async for chunk in source:
            if (shaped := _shape(chunk, account)) is not None:
                yield b"data: " + orjson.dumps(shaped) + b"\n\n"
        last = DONE
    except HeshiError as exc:
        account.status = exc.status_code
        last = b"data: " + error_body(exc) + b"\n\n" + DONE
    except BaseException:
        # The client went away (cancellation) or we broke: either way not a 200.
        account.status = 499
        raise
    finally:
        with anyio.CancelScope(shield=True):
            await source.aclose()  # type: ignore[attr-defined]
            await on_close(account)
    yield last
