"""Generated text read into prose and tool calls, incrementally for streams.

Qwen's templates ask for each call as ``<tool_call>{"name", "arguments"}</tool_call>``;
small models also write the call as bare JSON or in a ```json fence, alone or after a
sentence. :class:`ToolCallParser` takes all of these when they name an offered function.
"""

from __future__ import annotations

import secrets
from dataclasses import dataclass
from typing import Literal

import orjson

from heshi.engines.base import JSON

OPEN, CLOSE = "<tool_call>", "</tool_call>"
_FENCE = "```"


def new_call_id() -> str:
    return "call_" + secrets.token_hex(12)


@dataclass
class ToolCall:
    name: str
    arguments: str  # a JSON text, as OpenAI sends it
    id: str

    def as_json(self, index: int | None = None) -> JSON:
        call: JSON = {
            "id": self.id,
            "type": "function",
            "function": {"name": self.name, "arguments": self.arguments},
        }
        return call if index is None else {"index": index, **call}


def parse_call(text: str, names: frozenset[str] | None = None) -> list[ToolCall] | None:
    """The call(s) one JSON text holds — ``{"name", "arguments"}`` or a list of them, in a
    ```json fence or not — or None. ``names``: only these functions count."""
    body = text.strip()
    if body.startswith(_FENCE):
        body = body[len(_FENCE) :].removeprefix("json").removeprefix("JSON")
        body = body.removesuffix(_FENCE) if body.rstrip().endswith(_FENCE) else body
        body = body.strip().removesuffix(_FENCE).strip()
    try:
        value = orjson.loads(body)
    except orjson.JSONDecodeError:
        return None
    items = value if isinstance(value, list) else [value]
    calls = []
    for item in items:
        if not isinstance(item, dict):
            return None
        name = item.get("name")
        args = item.get("arguments", item.get("parameters", {}))
        if not isinstance(name, str) or (names is not None and name not in names):
            return None
        if isinstance(args, str):
            try:
                args = orjson.loads(args)
            except orjson.JSONDecodeError:
                return None
        if not isinstance(args, dict):
            return None
        calls.append(ToolCall(name, orjson.dumps(args).decode(), new_call_id()))
    return calls or None


@dataclass
class Event:
    """A piece of the answer: prose (``text``) or one complete call."""

    text: str = ""
    call: ToolCall | None = None


class ToolCallParser:
    """Generated text in, prose and calls out, as soon as each is certain.

    Prose is passed on at once except for a tail that could be the start of ``<tool_call>``
    or of a code fence; an answer whose first visible character is ``{``, ``[`` or a
    backtick is held to its end, when it is either a call in JSON or prose after all.

    A fenced JSON block inside prose (small models write "可以使用以下函数调用：" and then the
    call in a ```json fence instead of the tag) is held until its closing fence and becomes
    a call when it names an offered function; any other fence is prose, passed on as it
    comes."""

    def __init__(self, names: frozenset[str]) -> None:
        self.names = names
        self._pending = ""
        self._state: Literal["prose", "call", "fence?", "json", "code"] = "prose"
        self._held = False  # the answer began like bare JSON: held to the end
        self._began = False  # a visible character has been seen
        self.calls = 0

    def feed(self, text: str) -> list[Event]:
        self._pending += text
        out: list[Event] = []
        while not self._held and self._step(out):
            pass
        return out

    def _step(self, out: list[Event]) -> bool:
        """Consume what can be decided from the pending text; whether to go on."""
        step = {
            "prose": self._in_prose,
            "call": self._in_call,
            "fence?": self._at_fence,
            "json": self._in_json_fence,
            "code": self._in_code_fence,
        }[self._state]
        return step(out)

    def _in_prose(self, out: list[Event]) -> bool:
        pending = self._pending
        if not self._began:
            stripped = pending.lstrip()
            if not stripped:
                return False
            self._began = True
            if stripped[0] in "{[`":
                self._held = True
                return False
        marks = [(i, tag) for tag in (OPEN, _FENCE) if (i := pending.find(tag)) >= 0]
        if marks:
            start, tag = min(marks)
            out += self._prose(pending[:start])
            if tag == OPEN:
                self._pending, self._state = pending[start + len(OPEN) :], "call"
            else:
                self._pending, self._state = pending[start:], "fence?"
            return True
        keep = max(partial_suffix(pending, OPEN), partial_suffix(pending, _FENCE))
        out += self._prose(pending[: len(pending) - keep])
        self._pending = pending[len(pending) - keep :]
        return False

    def _in_call(self, out: list[Event]) -> bool:
        end = self._pending.find(CLOSE)
        if end < 0:
            return False
        out += self._call(self._pending[:end], closed=True)
        self._pending, self._state = self._pending[end + len(CLOSE) :], "prose"
        return True

    def _at_fence(self, out: list[Event]) -> bool:
        """``` seen in prose: a JSON fence (held) or some other code (passed on)?"""
        pending = self._pending
        line_end = pending.find("\n")
        body = pending[line_end + 1 :].lstrip() if line_end >= 0 else ""
        if not body:
            return False
        info = pending[len(_FENCE) : line_end].strip().lower()
        self._state = "json" if info in ("", "json") and body[0] in "{[" else "code"
        if self._state == "code":
            out += self._prose(pending[: line_end + 1])
            self._pending = pending[line_end + 1 :]
        return True

    def _in_json_fence(self, out: list[Event]) -> bool:
        end = self._pending.find(_FENCE, len(_FENCE))
        if end < 0:
            return False
        end += len(_FENCE)
        block, self._pending, self._state = self._pending[:end], self._pending[end:], "prose"
        calls = parse_call(block, self.names)
        if calls is None:
            out += self._prose(block)
        else:
            self.calls += len(calls)
            out += [Event(call=c) for c in calls]
        return True

    def _in_code_fence(self, out: list[Event]) -> bool:
        """Prose up to and with the closing fence."""
        pending = self._pending
        end = pending.find(_FENCE)
        if end >= 0:
            out += self._prose(pending[: end + len(_FENCE)])
            self._pending, self._state = pending[end + len(_FENCE) :], "prose"
            return True
        keep = partial_suffix(pending, _FENCE)
        out += self._prose(pending[: len(pending) - keep])
        self._pending = pending[len(pending) - keep :]
        return False

    def finish(self) -> list[Event]:
        """The end of the answer: whatever was held back."""
        rest, self._pending = self._pending, ""
        if self._held or self._state in ("json", "fence?"):
            calls = parse_call(rest, self.names)
            if calls is not None:
                self.calls += len(calls)
                return [Event(call=c) for c in calls]
            return self._prose(rest) if not self._held else [Event(text=rest)]
        if self._state == "call":  # the model stopped before closing the tag
            return self._call(rest, closed=False)
        return self._prose(rest)

    def _prose(self, text: str) -> list[Event]:
        if not text or (self.calls and not text.strip()):
            return []  # the line breaks between and after calls are not prose
        return [Event(text=text)]

    def _call(self, body: str, *, closed: bool) -> list[Event]:
        calls = parse_call(body) if self.names else None  # no names: an answer in words
        if calls is None:  # not a call after all: the model's text, as it wrote it
            return [Event(text=OPEN + body + (CLOSE if closed else ""))]
        self.calls += len(calls)
        return [Event(call=c) for c in calls]


def partial_suffix(text: str, tag: str) -> int:
    """The length of the longest end of ``text`` that is a start of ``tag``."""
    for n in range(min(len(tag) - 1, len(text)), 0, -1):
        if text.endswith(tag[:n]):
            return n
    return 0


def chat_message(text: str, parser: ToolCallParser) -> tuple[JSON, bool]:
    """The assistant message for a whole generated ``text``; whether it holds calls."""
    events = parser.feed(text) + parser.finish()
    prose = "".join(e.text for e in events)
    calls = [e.call.as_json() for e in events if e.call is not None]
    message: JSON = {"role": "assistant", "content": prose if prose or not calls else None}
    if calls:
        message["tool_calls"] = calls
    return message, bool(calls)
