"""Replies from the in-process llama-server read as the gateway's chunk streams: with
tool calls (:class:`ToolStream`) and with a thinking model's thought split out
(:class:`ThinkStream`), both over the plain :class:`~heshi.engines.local_worker.LocalStream`."""

from __future__ import annotations

import collections
from typing import TYPE_CHECKING, Any

from heshi.engines.base import JSON, add_usage
from heshi.engines.local_worker import LocalStream
from heshi.engines.reasoning import Kind, ThinkSplitter, split_text
from heshi.engines.toolcalls import ToolRequest
from heshi.engines.toolparse import Event, ToolCallParser, chat_message

if TYPE_CHECKING:
    from heshi.engines.llamacpp import LlamaCppEngine

# an answer the which-function question left to the model is held this long before it
# is sent: time to see whether it claims an action done that no call carried out
HOLD_CHARS = 64


def _is_finish(chunk: JSON) -> bool:
    return any(c.get("finish_reason") for c in chunk.get("choices") or ()) or bool(
        chunk.get("usage")
    )


def read_tool_answer(
    completion: JSON, tools: ToolRequest, opened: bool | None, *, calls: bool = True
) -> tuple[JSON, bool, str]:
    """The assistant message a tool-call completion holds, whether it calls, its thought
    (``calls=False``: an answer that may not call, read as prose whatever it holds)."""
    text = completion["choices"][0].get("text") or ""
    reasoning = ""
    if opened is not None:
        reasoning, text = split_text(text, opened=opened)
    message, called = chat_message(text, ToolCallParser(tools.names if calls else frozenset()))
    return message, called, reasoning


class ToolStream:
    """A streamed chat answer with tools: the rendered prompt completed as text (see
    :mod:`heshi.engines.toolcalls`), read back as ``chat.completion.chunk`` deltas — prose
    as ``content``, each call as one ``tool_calls`` delta once its JSON is complete — and a
    last ``finish_reason`` of ``tool_calls`` when the model called any. Where the
    which-function question left the choice to the model, the first :data:`HOLD_CHARS`
    characters of an answer in words are held back: if they claim the action done, the
    answer is started again as the call."""

    def __init__(
        self, engine: LlamaCppEngine, body: JSON, tools: ToolRequest, opened: bool | None
    ) -> None:
        self._engine = engine
        self._body = body
        self._tools = tools
        self._parser = ToolCallParser(tools.names)
        self._opened = opened
        self._thoughts = None if opened is None else ThinkSplitter(opened=opened)
        self._inner: LocalStream | None = None
        self._out: collections.deque[JSON] = collections.deque()
        self._aborted = False
        self._ended = False
        self._sent = 0  # calls sent so far: the next one's index
        self._said = False  # prose sent: the answer can no longer be started again
        # answer again: in words (the first answer made a call up) or as the call (the
        # first answer claimed in words to have done it); the current answer's terms
        self._retry: dict[str, Any] | None = None
        self._terms: dict[str, Any] = {}
        self._undecided: str | None = None
        self._held: list[str] = []  # prose not sent yet (see HOLD_CHARS)
        self._spent: JSON | None = None  # usage of an answer given up
        self._base: JSON = {"object": "chat.completion.chunk", "model": engine.model_name}

    @property
    def usage(self) -> JSON | None:
        now = self._inner.usage if self._inner is not None else None
        return add_usage(self._spent, now) if self._spent else now

    def __aiter__(self) -> ToolStream:
        return self

    async def __anext__(self) -> JSON:
        if self._retry is not None and not self._aborted and self._inner is not None:
            await self._inner.aclose()
            self._spent = add_usage(self._spent, self._inner.usage)
            self._inner, self._terms, self._retry = None, self._retry, None
            words = bool(self._terms.get("prose_only"))  # then a call in it is not read
            self._parser = ToolCallParser(frozenset() if words else self._tools.names)
            self._out = collections.deque(c for c in self._out if not _is_finish(c))
            self._ended = False
            self._held = []
        if self._inner is None and not self._aborted:
            body, opened, self._undecided = await self._engine.tool_completion_body(
                self._body, self._tools, self._opened, **self._terms
            )
            if self._thoughts is not None:
                self._thoughts = ThinkSplitter(opened=bool(opened))
            if self._aborted:
                raise StopAsyncIteration
            server = self._engine._require_server()
            self._inner = self._engine._stream(server.handle_completions, body)
        while not self._out or self._retry is not None:
            if self._aborted:  # the client left: no second answer, pending or not
                raise StopAsyncIteration
            if self._retry is not None:
                return await self.__anext__()
            if self._ended or self._inner is None:
                raise StopAsyncIteration
            try:
                chunk = await self._inner.__anext__()
            except StopAsyncIteration:
                self._ended = True
                continue
            self._translate(chunk)
        return self._out.popleft()

    def _translate(self, chunk: JSON) -> None:
        if "id" not in self._base:
            self._base.update(id=chunk.get("id"), created=chunk.get("created"))
            self._emit({"role": "assistant", "content": None})
        for choice in chunk.get("choices") or ():
            self._text(choice.get("text") or "", final=False)
            finish = choice.get("finish_reason")
            if finish is not None:
                self._text("", final=True)
                if finish == "stop" and self._parser.calls:
                    finish = "tool_calls"
                self._emit({}, finish)
        if chunk.get("usage"):
            extra: JSON = {k: chunk[k] for k in ("usage", "timings") if k in chunk}
            self._out.append({**self._base, "choices": [], **extra})

    def _text(self, text: str, *, final: bool) -> None:
        """Generated text: thought (a thinking model's) straight out, the answer through
        the tool-call parser."""
        pieces: list[tuple[Kind, str]] = [("content", text)]
        if self._thoughts is not None:
            pieces = self._thoughts.feed(text) + (self._thoughts.finish() if final else [])
        for kind, piece in pieces:
            if kind == "reasoning":
                self._emit({"reasoning_content": piece})
            else:
                self._events(self._parser.feed(piece))
        if final:
            self._events(self._parser.finish())
            self._release(judge=True)

    def _events(self, events: list[Event]) -> None:
        for event in events:
            if self._retry is not None:
                return
            if event.call is not None:
                if (
                    not self._sent
                    and not self._said
                    and self._engine._invented(self._body, [event.call.as_json()])
                ):
                    # nothing of this answer has been sent: start again, in words
                    self._retry = {"prose_only": True}
                    return
                self._release(judge=False)
                self._emit({"tool_calls": [event.call.as_json(self._sent)]})
                self._sent += 1
            elif event.text:
                if self._undecided is not None and not self._said and not self._sent:
                    self._held.append(event.text)
                    if sum(map(len, self._held)) >= HOLD_CHARS:
                        self._release(judge=True)
                    continue
                self._said = True
                self._emit({"content": event.text})

    def _release(self, *, judge: bool) -> None:
        """Send the prose held back, or (``judge``: when it claims an action done that no
        call carried out) start the answer again as the call."""
        held, self._held = "".join(self._held), []
        if not held:
            return
        if judge and self._undecided and self._engine.claims(self._body, held, self._undecided):
            self._retry = {"call": self._undecided}
            return
        self._said = True
        self._emit({"content": held})

    def _emit(self, delta: JSON, finish: str | None = None) -> None:
        choice = {"index": 0, "delta": delta, "finish_reason": finish}
        self._out.append({**self._base, "choices": [choice]})

    def abort(self) -> None:
        self._aborted = True
        if self._inner is not None:
            self._inner.abort()

    async def aclose(self) -> None:
        self._aborted = True
        self._ended = True
        if self._inner is not None:
            await self._inner.aclose()


class ThinkStream:
    """A thinking model's chat stream with its thought moved from ``content`` deltas into
    ``reasoning_content`` deltas (:mod:`heshi.engines.reasoning`)."""

    def __init__(self, inner: LocalStream, opened: bool) -> None:
        self._inner = inner
        self._splitter = ThinkSplitter(opened=opened)
        self._out: collections.deque[JSON] = collections.deque()

    @property
    def usage(self) -> JSON | None:
        return self._inner.usage

    def __aiter__(self) -> ThinkStream:
        return self

    async def __anext__(self) -> JSON:
        while not self._out:
            chunk = await self._inner.__anext__()
            self._translate(chunk)
        return self._out.popleft()

    def _translate(self, chunk: JSON) -> None:
        choices = chunk.get("choices") or []
        delta = choices[0].get("delta") if choices else None
        if not isinstance(delta, dict):
            self._out.append(chunk)  # the usage chunk
            return
        choice = choices[0]
        text = delta.get("content")
        final = choice.get("finish_reason") is not None
        pieces = self._splitter.feed(text) if isinstance(text, str) else []
        if final:
            pieces += self._splitter.finish()
        rest = {k: v for k, v in delta.items() if k != "content"}
        if not pieces:
            # A text held back (it may be the start of a tag) is dropped for now; a chunk
            # with something else to say (the role, the finish) is kept.
            if text is None or rest or final:
                self._out.append(
                    {**chunk, "choices": [{**choice, "delta": delta if text is None else rest}]}
                )
            return
        for i, (kind, piece) in enumerate(pieces):
            field = "reasoning_content" if kind == "reasoning" else "content"
            out = {**choice, "delta": {**(rest if i == 0 else {}), field: piece}}
            if i < len(pieces) - 1:
                out["finish_reason"] = None
            self._out.append({**chunk, "choices": [out]})

    def abort(self) -> None:
        self._inner.abort()

    async def aclose(self) -> None:
        await self._inner.aclose()
