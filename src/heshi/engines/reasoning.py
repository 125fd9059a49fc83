"""Thinking models on the embedded engine: ``<think>…</think>`` out of the answer and
into ``reasoning_content``, as vLLM, SGLang and DeepSeek's API return it.

Qwen3 (hybrid) writes ``<think>`` itself, and its template gives the block empty
(``<think>\\n\\n</think>``) when ``enable_thinking`` is false; QwQ and Qwen3-Thinking
templates open the block in the prompt, so the model's first words are already thought.
Either way the model closes it with ``</think>``. :class:`ThinkSplitter` reads generated
text, incrementally for streams, into thought and answer; it is given whether the prompt
left a block open. Heshi does this itself rather than through llama.cpp's chat parsers,
which recognise only the templates they know (and tool-call answers bypass them).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Literal

from heshi.engines.base import content_text
from heshi.engines.toolparse import partial_suffix

OPEN, CLOSE = "<think>", "</think>"
Kind = Literal["reasoning", "content"]


@dataclass(frozen=True)
class Thinking:
    """How a model's chat template handles thinking."""

    opens_block: bool  # with thinking on, the prompt itself opens <think> (QwQ, *-Thinking)
    switchable: bool  # ``enable_thinking`` changes the prompt (Qwen3's hybrid models)


def soft_switch(messages: Any) -> bool | None:
    """Qwen's soft switch: ``/think`` or ``/no_think`` in a user turn turns thinking on or
    off; the latest turn that has one decides (None: no turn has one)."""
    if not isinstance(messages, list):
        return None
    for message in reversed(messages):
        if not isinstance(message, dict) or message.get("role") != "user":
            continue
        content = content_text(message.get("content"), " ")
        on, off = content.rfind("/think"), content.rfind("/no_think")
        if on >= 0 or off >= 0:
            return on > off
    return None


class ThinkSplitter:
    """Generated text in, ``("reasoning" | "content", text)`` pieces out, as soon as each
    is certain. ``opened``: the prompt ends inside a think block."""

    def __init__(self, *, opened: bool) -> None:
        self._state: Literal["start", "thinking", "answer"] = "thinking" if opened else "start"
        self._pending = ""
        self._fresh = True  # at the start of a part: its leading line breaks are dropped

    def feed(self, text: str) -> list[tuple[Kind, str]]:
        self._pending += text
        out: list[tuple[Kind, str]] = []
        while True:
            if self._state == "start":
                head = self._pending.lstrip()
                if not head or (OPEN.startswith(head) and head != OPEN):
                    return out  # nothing yet, or what may become the opening tag
                if head.startswith(OPEN):
                    self._pending = head[len(OPEN) :]
                    self._state, self._fresh = "thinking", True
                    continue
                self._state = "answer"  # no thought: the answer, as written
                self._fresh = False
                continue
            if self._state == "thinking":
                end = self._pending.find(CLOSE)
                if end >= 0:
                    out += self._piece("reasoning", self._pending[:end])
                    self._pending = self._pending[end + len(CLOSE) :]
                    self._state, self._fresh = "answer", True
                    continue
                keep = partial_suffix(self._pending, CLOSE)
                out += self._piece("reasoning", self._pending[: len(self._pending) - keep])
                self._pending = self._pending[len(self._pending) - keep :]
                return out
            out += self._piece("content", self._pending)
            self._pending = ""
            return out

    def finish(self) -> list[tuple[Kind, str]]:
        """The end of the generation: what was held back (an unclosed thought stays
        thought — the model ran out of tokens while thinking)."""
        rest, self._pending = self._pending, ""
        kind: Kind = "reasoning" if self._state == "thinking" else "content"
        return self._piece(kind, rest)

    def _piece(self, kind: Kind, text: str) -> list[tuple[Kind, str]]:
        if self._fresh:
            text = text.lstrip("\n")
            if not text:
                return []
            self._fresh = False
        return [(kind, text)] if text else []


def split_text(text: str, *, opened: bool) -> tuple[str, str]:
    """A whole generation as (reasoning, answer); the thought's trailing line breaks off."""
    splitter = ThinkSplitter(opened=opened)
    pieces = splitter.feed(text) + splitter.finish()
    reasoning = "".join(t for k, t in pieces if k == "reasoning").rstrip("\n")
    return reasoning, "".join(t for k, t in pieces if k == "content")
