"""Whole answers from the in-process llama-server that stop when their client leaves.

llama.cpp's non-streaming handler runs a request to its end with no way to stop it: a
client that gave up (a 30 s timeout on a long answer) left a slot decoding for no one,
and four of them held every slot of the default engine. So a whole answer is generated
as a stream here and put together at the end (:func:`whole`): the stream can be stopped
at its next token, and its running counts say what was decoded. Under the gateway's
:data:`~heshi.engines.base.CALL` control, the stream's stop is registered while it runs
and every call's usage is reported, so the work done before the client left is charged.
"""

from __future__ import annotations

import asyncio
import threading
from typing import Any

import orjson

from heshi.engines.base import CALL, JSON
from heshi.engines.local_worker import (
    NOTHING,
    Handler,
    LocalStream,
    error_from,
    in_slot,
    is_error,
)
from heshi.errors import ClientGone, EngineError

GONE = "客户端已断开，生成已停止 / client closed the connection; generation stopped"


async def call_whole(
    handler: Handler,
    body: JSON,
    executor: Any,
    slots: threading.Semaphore | None = None,
    *,
    charged: bool = True,
) -> JSON:
    """``body`` answered whole by ``handler`` (chat or text completion), generated as a
    stream; ``ClientGone`` when the gateway's control says the client left. Its usage is
    reported to the control unless ``charged`` is false (the engine's own overhead)."""
    control = CALL.get()
    if control is not None and control.gone:
        raise ClientGone(GONE)
    if body.get("stop"):
        # llama.cpp's stream drops the text it holds back as a possible start of a stop
        # string when the length limit ends the answer ("你你" came back as ""): such an
        # answer is asked for whole, and runs to its end whatever the client does
        return await _unstoppable(handler, body, executor, slots)
    # the usage chunk is asked for: it is the one the whole answer would have carried
    extra = {"stream": True, "timings_per_token": True, "stream_options": {"include_usage": True}}
    payload = orjson.dumps(body | extra)
    stream = LocalStream(handler, payload, executor, slots)
    unregister = control.on_stop(stream.abort) if control is not None else None
    chunks: list[JSON] = []
    try:
        async for chunk in stream:
            chunks.append(chunk)
    finally:
        if unregister is not None:
            unregister()
        try:
            await stream.aclose()  # waits for the worker: the counts are final
        finally:
            if control is not None and charged:
                control.add(stream.usage)
    if control is not None and control.gone:
        raise ClientGone(GONE)
    if not chunks:
        raise EngineError(NOTHING)
    return whole(chunks, stream.usage)


async def _unstoppable(
    handler: Handler, body: JSON, executor: Any, slots: threading.Semaphore | None
) -> JSON:
    result: list[bytes] = []

    def on_result(data: bytes) -> bool:
        result.append(data)
        return False

    payload = orjson.dumps(body | {"stream": False})

    def run() -> None:
        in_slot(slots, threading.Event(), lambda: handler(payload, on_result))

    await asyncio.get_running_loop().run_in_executor(executor, run)
    if not result:
        raise EngineError(NOTHING)
    parsed = orjson.loads(result[0])
    if is_error(parsed):
        raise error_from(parsed)
    return dict(parsed)


def whole(chunks: list[JSON], counted: JSON | None) -> JSON:
    """The non-streaming response the chunks of one answer make: each choice's text (a
    chat message's content, thought and tool calls), finish reason and log-probabilities
    joined, the usage the stream reported or the engine counted, the last timings."""
    last = chunks[-1]
    chat = any(c.get("object") == "chat.completion.chunk" for c in chunks)
    choices: dict[int, JSON] = {}
    usage: JSON | None = None
    timings: JSON | None = None
    for chunk in chunks:
        if isinstance(chunk.get("usage"), dict):
            usage = chunk["usage"]
        if isinstance(chunk.get("timings"), dict):
            timings = chunk["timings"]
        for choice in chunk.get("choices") or ():
            index = int(choice.get("index") or 0)
            out = choices.setdefault(index, _empty(index, chat))
            if chat:
                _add_delta(out["message"], choice.get("delta") or {})
            elif isinstance(choice.get("text"), str):
                out["text"] += choice["text"]
            if choice.get("finish_reason"):
                out["finish_reason"] = choice["finish_reason"]
            _add_logprobs(out, choice.get("logprobs"))
    result: JSON = {
        "choices": [choices[i] for i in sorted(choices)] or [_empty(0, chat)],
        "created": last.get("created"),
        "model": last.get("model"),
        "system_fingerprint": last.get("system_fingerprint"),
        "object": "chat.completion" if chat else "text_completion",
        "id": last.get("id"),
    }
    usage = usage or _usage(counted, timings)
    if usage is not None:  # unknown: the gateway then counts the text (never free)
        result["usage"] = usage
    if timings is not None:
        result["timings"] = timings
    return result


def _empty(index: int, chat: bool) -> JSON:
    if chat:
        return {
            "finish_reason": None,
            "index": index,
            "message": {"role": "assistant", "content": ""},
        }
    return {"text": "", "index": index, "logprobs": None, "finish_reason": None}


def _add_delta(message: JSON, delta: JSON) -> None:
    for key in ("content", "reasoning_content"):
        piece = delta.get(key)
        if isinstance(piece, str):
            message[key] = message.get(key, "") + piece
    for call in delta.get("tool_calls") or ():
        calls: list[JSON] = message.setdefault("tool_calls", [])
        at = int(call.get("index") or 0)
        while len(calls) <= at:
            calls.append({"type": "function", "function": {"name": "", "arguments": ""}})
        into = calls[at]
        if call.get("id"):
            into["id"] = call["id"]
        function = call.get("function") or {}
        for key in ("name", "arguments"):
            if isinstance(function.get(key), str):
                into["function"][key] += function[key]


def _add_logprobs(out: JSON, logprobs: object) -> None:
    if not isinstance(logprobs, dict):
        return
    held = out.get("logprobs")
    if not isinstance(held, dict):
        out["logprobs"] = held = {}
    for key, value in logprobs.items():
        if isinstance(value, list):
            held.setdefault(key, []).extend(value)
        else:
            held[key] = value


def _usage(counted: JSON | None, timings: JSON | None) -> JSON | None:
    if counted is None:
        return None
    prompt = int(counted.get("prompt_tokens") or 0)
    completion = int(counted.get("completion_tokens") or 0)
    cached = int((timings or {}).get("cache_n") or 0)
    return {
        "completion_tokens": completion,
        "prompt_tokens": prompt,
        "total_tokens": prompt + completion,
        "prompt_tokens_details": {"cached_tokens": cached},
    }
