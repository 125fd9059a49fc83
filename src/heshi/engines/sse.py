"""Incremental parser for ``text/event-stream`` bodies as OpenAI-compatible servers send them.

Bytes go in as they arrive from the network, in pieces of any size; complete events come
out as soon as their terminating blank line has arrived. Line endings may be ``\\n``,
``\\r\\n`` or ``\\r``, even when a ``\\r\\n`` pair is split across two reads.

The parser is stricter than the SSE specification in one way: a line that is neither a
comment nor one of the four SSE fields is an error rather than silently ignored, because
an upstream that answers with something other than SSE (plain JSON, NDJSON from a
native API) should fail loudly instead of looking like an empty stream.
"""

from __future__ import annotations

import re
from collections.abc import Iterator
from dataclasses import dataclass

_LINE_END = re.compile(rb"\r\n|\r|\n")
_FIELDS = frozenset({"data", "event", "id", "retry"})
MAX_PENDING_BYTES = 8 * 1024 * 1024  # one event larger than this is not a chat chunk


class SSEProtocolError(ValueError):
    """The byte stream is not well-formed server-sent events."""


@dataclass(frozen=True)
class ServerSentEvent:
    """One dispatched event: its ``event:`` type (default ``message``) and joined data."""

    data: str
    event: str = "message"


class SSEDecoder:
    """Turns network reads into :class:`ServerSentEvent` objects, holding partial lines."""

    def __init__(self, max_pending_bytes: int = MAX_PENDING_BYTES) -> None:
        self._pending = b""
        self._data: list[str] = []
        self._event = ""
        self._max_pending = max_pending_bytes

    def feed(self, chunk: bytes) -> Iterator[ServerSentEvent]:
        """Consume ``chunk``; yield every event it completes, in order, one at a time.

        Lazy on purpose: a caller that stops at a terminal event (``[DONE]``) never has
        the bytes after it parsed. Iterate to the end otherwise, or later input is lost.
        Raises :class:`SSEProtocolError` on a line that is not SSE, on bytes that are not
        UTF-8, or when more than ``max_pending_bytes`` arrive without a line ending.
        """
        buf = self._pending + chunk if self._pending else chunk
        self._pending = b""
        pos = 0
        while (match := _LINE_END.search(buf, pos)) is not None:
            if match.group() == b"\r" and match.end() == len(buf):
                break  # may be the first half of a \r\n split across reads
            line, pos = buf[pos : match.start()], match.end()
            event = self._line(line)
            if event is not None:
                yield event
        self._pending = buf[pos:]
        if len(self._pending) > self._max_pending:
            raise SSEProtocolError(f"no line ending within {self._max_pending} bytes")

    def _line(self, raw: bytes) -> ServerSentEvent | None:
        if not raw:
            return self._dispatch()
        try:
            line = raw.decode("utf-8")
        except UnicodeDecodeError as exc:
            raise SSEProtocolError("event stream is not UTF-8") from exc
        if line.startswith(":"):
            return None  # comment, e.g. ": ping" keep-alives
        name, colon, value = line.partition(":")
        if name not in _FIELDS:
            raise SSEProtocolError(f"not a server-sent event line: {line[:200]!r}")
        if colon and value.startswith(" "):
            value = value[1:]
        if name == "data":
            self._data.append(value)
        elif name == "event":
            self._event = value
        return None

    def _dispatch(self) -> ServerSentEvent | None:
        data, event = self._data, self._event
        self._data, self._event = [], ""
        if not data:
            return None
        return ServerSentEvent(data="\n".join(data), event=event or "message")
