"""The Engine protocol every token producer implements.

The gateway speaks to engines in OpenAI-shaped dicts: a request body in, a response
dict (or an async stream of chunk dicts) out. Engines raise ``heshi.errors`` types;
they never build HTTP responses themselves.
"""

from __future__ import annotations

from collections.abc import AsyncGenerator, AsyncIterator, Callable
from contextvars import ContextVar
from dataclasses import dataclass, field
from typing import Any, Protocol, runtime_checkable

JSON = dict[str, Any]


def content_text(content: object, sep: str = "") -> str:
    """The text of a chat message's ``content``: a string, or OpenAI content parts' texts
    joined by ``sep`` (images and other parts have none)."""
    if isinstance(content, str):
        return content
    if isinstance(content, list):
        return sep.join(str(p.get("text", "")) for p in content if isinstance(p, dict))
    return ""


def asked_completion_tokens(body: JSON) -> int | None:
    """The completion length a request asks for (``max_completion_tokens`` wins), if any."""
    asked = body.get("max_completion_tokens") or body.get("max_tokens")
    return asked if isinstance(asked, int) else None


def add_usage(a: JSON | None, b: JSON | None) -> JSON | None:
    """Two model calls' usage, summed (both were computed, both are paid for); ``b``'s
    other fields are kept."""
    if not a or not b:
        return b or a
    keys = ("prompt_tokens", "completion_tokens", "total_tokens")
    return {**b, **{k: int(a.get(k) or 0) + int(b.get(k) or 0) for k in keys}}


async def prepend(first: JSON | None, rest: AsyncIterator[JSON]) -> AsyncGenerator[JSON, None]:
    """``first`` (when there is one), then ``rest``; ``rest`` is closed however it ends."""
    try:
        if first is not None:
            yield first
        async for chunk in rest:
            yield chunk
    finally:
        await rest.aclose()  # type: ignore[attr-defined]


class ChunkStream(Protocol):
    """An engine's stream of chunk dicts. ``aclose()`` stops generation and frees what the
    request held; once it has returned, ``usage`` is final. ``abort()`` (on the event
    loop's thread; it does not wait) makes a pending ``__anext__`` end soon."""

    usage: JSON | None  # {"prompt_tokens", "completion_tokens"} as the engine counted them

    def __aiter__(self) -> ChunkStream: ...

    async def __anext__(self) -> JSON: ...

    async def aclose(self) -> None: ...

    def abort(self) -> None: ...


@runtime_checkable
class TokenCounting(Protocol):
    """An engine that knows how long prompts are and how much it may generate; admission
    reserves from these (engines without them: estimates, and 1,024 completion tokens)."""

    async def count_prompt_tokens(self, op: str, body: JSON) -> int | None:
        """The prompt's exact length in tokens, or None when it cannot count it."""
        ...

    def completion_cap(self, prompt_tokens: int, model: str | None = None) -> int | None:
        """The most a request to ``model`` (an engine holding several models needs it)
        with this many prompt tokens can generate (None: no limit known); 0 or less means
        the prompt does not fit."""
        ...

    def default_completion(self, prompt_tokens: int, model: str | None = None) -> int:
        """What a request to ``model`` that sets no ``max_tokens`` may generate."""
        ...


@runtime_checkable
class CostBounded(Protocol):
    """An engine whose requests cost more than their prompt and ``max_tokens`` say (a
    knowledge base's answers read retrieved passages): admission reserves this instead."""

    async def most_tokens(self, op: str, body: JSON) -> int | None:
        """The most tokens (prompt and completion) ``body`` can be charged; None: no bound
        beyond the usual one."""
        ...


class CallControl:
    """What the gateway hands an engine for one non-streaming answer (through ``CALL``):
    a place to report the model work each call did, and a way to stop the calls when the
    client has left (:meth:`stop`).

    An engine that can stop a generation and count what it decoded (the embedded one)
    registers its stop while it generates and reports every call's usage, finished or
    stopped; the gateway then charges what was done. An engine that cannot (an HTTP
    upstream, whose cost is known only from its answer) does neither: its answer runs to
    the end and is charged in full, as before.
    """

    def __init__(self) -> None:
        self.gone = False
        self.spent: JSON | None = None  # the usage of every call so far, summed
        self._stops: list[Callable[[], None]] = []

    def add(self, usage: JSON | None) -> None:
        """Count one call's usage (a call that decoded nothing adds nothing)."""
        if usage and (usage.get("prompt_tokens") or usage.get("completion_tokens")):
            self.spent = add_usage(self.spent, usage)

    def on_stop(self, stop: Callable[[], None]) -> Callable[[], None]:
        """Run ``stop`` if the client leaves; returns the function that unregisters it."""
        self._stops.append(stop)
        return lambda: self._stops.remove(stop) if stop in self._stops else None

    def stop(self) -> None:
        """The client has left: stop what is generating (on the event loop's thread)."""
        self.gone = True
        for stop in list(self._stops):
            stop()


# The control of the non-streaming answer being generated in this context, if any.
CALL: ContextVar[CallControl | None] = ContextVar("heshi_call", default=None)


def stream_usage(source: object) -> JSON | None:
    """The usage an engine stream reports (None for streams that do not count)."""
    usage = getattr(source, "usage", None)
    return usage if isinstance(usage, dict) else None


def abort_stream(source: object) -> None:
    """Ask an engine stream to stop now, if it can be asked (async generators cannot)."""
    abort = getattr(source, "abort", None)
    if callable(abort):
        abort()


@dataclass(frozen=True)
class ServedModel:
    """One model an engine serves, under the name the engine itself knows it by."""

    name: str
    context_length: int | None = None
    can_embed: bool = False
    owned_by: str = "heshi"
    meta: dict[str, Any] = field(default_factory=dict)


@runtime_checkable
class Engine(Protocol):
    """A source of completions. ``model`` arguments are the engine's own model names."""

    name: str

    def served_models(self) -> list[ServedModel]:
        """The models this engine can answer for right now."""
        ...

    async def start(self) -> None:
        """Load models / open connection pools. Raise a ``HeshiError`` on failure."""
        ...

    async def close(self) -> None:
        """Release threads, slots and connections. Safe to call twice."""
        ...

    async def chat(self, body: JSON) -> JSON:
        """Answer a non-streaming ``/v1/chat/completions`` body."""
        ...

    def stream_chat(self, body: JSON) -> AsyncIterator[JSON]:
        """Yield ``chat.completion.chunk`` dicts; closing the iterator cancels generation."""
        ...

    async def completion(self, body: JSON) -> JSON:
        """Answer a non-streaming ``/v1/completions`` body."""
        ...

    def stream_completion(self, body: JSON) -> AsyncIterator[JSON]:
        """Yield ``text_completion`` chunk dicts; closing the iterator cancels generation."""
        ...

    async def embeddings(self, body: JSON) -> JSON:
        """Answer a ``/v1/embeddings`` body, or raise ``CapabilityMissing``."""
        ...
