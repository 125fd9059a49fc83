"""The request path as one straight pipeline of stages around the generation.

Stages are layered like an onion, outermost first: each ``before`` runs in order before
the backend is called (one may answer the request itself, e.g. the guard's refusal),
and ``after`` (a complete result) or ``stream`` (streamed chunks) run in reverse order
on the way out. The gateway's public pipeline is ``[Admit, Label, Guard]``:

    admit → guard in → route + generate → guard out → label → record

``record`` (settle, meter, audit: :class:`~heshi.gateway.record.Recorder`) is not a
stage: it runs exactly once for every request however it ends — answered, refused,
failed, or abandoned by its client before or during a stream.
"""

from __future__ import annotations

from collections.abc import AsyncGenerator, Sequence
from typing import Any, Protocol

import anyio
import orjson

from heshi.engines.base import CALL, JSON
from heshi.engines.sizing import text_tokens
from heshi.errors import ClientGone
from heshi.gateway.exchange import Exchange, Usage
from heshi.gateway.record import Recorder
from heshi.gateway.replies import Refusal
from heshi.routing.router import Op, RoutePlan, Router, StreamOp
from heshi.routing.stream import RoutedStream
from heshi.tracing import Tracing

Chunks = AsyncGenerator[JSON, None]  # closed with ``aclose()`` however it ends

_UNARY_OPS: dict[str, Op] = {
    "chat": "chat",
    "guard": "chat",
    "completions": "completion",
    "embeddings": "embeddings",
    "rerank": "rerank",
}


class Stage(Protocol):
    """One step of the request path; see the module docstring for the order."""

    span_in: str | None  # the trace span of ``before`` (None: none, it does no work)
    span_out: str | None  # of ``after`` / ``stream``

    async def before(self, x: Exchange) -> Refusal | None:
        """Before the backend is called; a reply answers the request instead."""
        ...

    async def after(self, x: Exchange, result: JSON) -> None:
        """A complete result, changed in place."""
        ...

    def stream(self, x: Exchange, chunks: Chunks) -> Chunks:
        """The streamed chunks, wrapped; closing the wrapper closes ``chunks``."""
        ...


class OpenStream:
    """A stream whose first chunk has arrived: the chunks for the client, and the one
    :meth:`close` that stops the backend and records the request."""

    def __init__(
        self,
        x: Exchange,
        chunks: Chunks,
        source: RoutedStream,
        recorder: Recorder,
        span: Any = None,
    ) -> None:
        self.x = x
        self.chunks = chunks
        self._source = source
        self._recorder = recorder
        self._span = span  # the stream's ``generate`` span, ended with the stream
        self._closed = False

    def abort(self) -> None:
        """The client left: ask the backend to stop now (it does not wait)."""
        self._source.abort()

    async def close(self) -> None:
        """Close the chunks and the backend's stream itself (a chain of wrappers never
        started runs none of its ``finally`` blocks), then record the request.
        Idempotent, and safe to call while the calling task is being cancelled."""
        if self._closed:
            return
        self._closed = True
        with anyio.CancelScope(shield=True):
            try:
                await self.chunks.aclose()
            finally:
                await _close_source(self.x, self._source)
                Tracing.close(self._span)
                await self._recorder.finish(self.x)


class Pipeline:
    """``stages`` around routing and generation; ``recorder`` records every request."""

    def __init__(
        self,
        stages: Sequence[Stage],
        router: Router,
        recorder: Recorder,
        tracing: Tracing | None = None,
    ) -> None:
        self.stages = tuple(stages)
        self.router = router
        self.recorder = recorder
        self.tracing = tracing or Tracing.disabled()

    async def unary(self, x: Exchange) -> JSON | Refusal:
        """Answer a request whose answer is sent whole; recorded before it returns."""
        trace = self.tracing
        try:
            for stage in self.stages:
                with trace.stage(x, stage.span_in):
                    reply = await stage.before(x)
                if reply is not None:
                    return reply
            with trace.stage(x, "generate"):
                result = await self._generate(x)
            # The usage is known: give back what was reserved and not used before the
            # answer is screened (the guard model's own call must fit beside it).
            await self.recorder.settle(x)
            for stage in reversed(self.stages):
                with trace.stage(x, stage.span_out):
                    await stage.after(x, result)
            return result
        except BaseException as exc:
            x.fail(exc)
            raise
        finally:
            await self.recorder.finish(x)

    async def stream(self, x: Exchange) -> OpenStream | Refusal:
        """Open a streamed answer: everything up to its first chunk happens here (errors
        are plain HTTP errors); the caller must :meth:`OpenStream.close` what it gets."""
        source: RoutedStream | None = None
        trace = self.tracing
        span = None
        try:
            for stage in self.stages:
                with trace.stage(x, stage.span_in):
                    reply = await stage.before(x)
                if reply is not None:
                    await self.recorder.finish(x)
                    return reply
            op: StreamOp = "chat" if x.endpoint == "chat" else "completion"
            # Always ask for usage, so streams are charged what the backend counted.
            body = {**x.body, "stream_options": {"include_usage": True}}
            span = trace.open(x, "generate")  # ends when the stream is closed
            with trace.current(span):
                routed = await self.router.open_stream(_plan(x), op, body, x.route)
            trace.event(span, "first_token")
            x.generated = True
            source = routed.value.rest
            chunks: Chunks = _metered(x, routed.value.first, source)
            for stage in reversed(self.stages):
                chunks = stage.stream(x, chunks)
            return OpenStream(x, chunks, source, self.recorder, span)
        except BaseException as exc:
            x.fail(exc)
            with anyio.CancelScope(shield=True):
                if source is not None:
                    await _close_source(x, source)
                Tracing.close(span, exc)
                await self.recorder.finish(x)
            raise

    async def _generate(self, x: Exchange) -> JSON:
        op = _UNARY_OPS[x.endpoint]
        control = x.control  # a knowledge base's model calls run under it too
        token = CALL.set(control)
        try:
            routed = await self.router.call(_plan(x), op, x.body, x.route)
        except ClientGone:
            if control.spent:  # stopped when the client left: what was decoded is charged
                x.generated = True
                x.usage.report(control.spent)
            raise
        finally:
            CALL.reset(token)
        x.generated = True
        result = routed.value
        x.usage.report(result.get("usage"))
        if not x.usage.reported_completion:  # a backend that counts nothing is not free
            x.usage.completion_tokens = sum(text_tokens(t) for t in _answers(result))
        result["model"] = x.model
        return result


def _plan(x: Exchange) -> RoutePlan:
    assert x.plan is not None, "the edge plans the route before the pipeline runs"
    return x.plan


async def _close_source(x: Exchange, source: RoutedStream) -> None:
    """Close the backend's stream (idempotent) and take what the engine counted."""
    await source.aclose()
    x.usage.report(source.usage)


async def _metered(x: Exchange, first: JSON | None, source: RoutedStream) -> Chunks:
    """The backend's chunks, counted as they arrive (before any stage holds text back):
    generated-text chunks, the usage chunk, and at the end what the engine itself counted,
    which includes tokens decoded after the client left."""
    usage = x.usage
    try:
        if first is not None:
            _count(usage, first)
            yield first
        async for chunk in source:
            _count(usage, chunk)
            yield chunk
    finally:
        await _close_source(x, source)


def _count(usage: Usage, chunk: JSON) -> None:
    """Take a usage chunk as reported; estimate the tokens of generated text from above
    (what is charged if the stream ends before any usage is reported)."""
    if chunk.get("usage"):
        usage.report(chunk["usage"])
    for choice in chunk.get("choices") or ():
        delta = choice.get("delta")
        parts: list[Any] = []
        if isinstance(delta, dict):
            parts = [delta.get("content"), delta.get("reasoning_content")]
            parts += [orjson.dumps(c).decode() for c in delta.get("tool_calls") or ()]
        else:
            parts = [choice.get("text")]
        text = "".join(p for p in parts if isinstance(p, str))
        if text:
            usage.text_tokens += max(1, text_tokens(text))


def _answers(result: JSON) -> list[str]:
    out = []
    for choice in result.get("choices") or ():
        message = choice.get("message") or {}
        text = message.get("content") if isinstance(message, dict) else None
        text = text or choice.get("text")
        if isinstance(text, str):
            out.append(text)
    return out
