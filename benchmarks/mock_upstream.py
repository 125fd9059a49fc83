"""A fast loopback OpenAI-style upstream for benchmarks, in its own process.

Raw asyncio HTTP/1.1 with keep-alive, no framework, so the upstream costs microseconds and
whatever a benchmark measures in front of it is the client's or the gateway's own cost.

- ``POST …/chat/completions`` (or ``…/completions``): a fixed chat completion as JSON, or,
  when the body has ``"stream": true``, the same answer as ``SSE_EVENTS`` server-sent
  events (plus a usage chunk when ``stream_options.include_usage`` is set) and
  ``data: [DONE]``.
- ``POST …/stream``: always the SSE answer (the path ``http_client.py`` uses).
- ``GET …/models``: one model, ``qwen-bench``.

Run it as a script (it prints its port, then serves until its stdin closes) or use
:func:`running` from another benchmark.

    .venv/bin/python benchmarks/mock_upstream.py
"""

from __future__ import annotations

import asyncio
import subprocess
import sys
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import orjson
import uvloop

MODEL = "qwen-bench"
SSE_EVENTS = 20
USAGE = {"prompt_tokens": 42, "completion_tokens": 48, "total_tokens": 90}
CHAT_REPLY = orjson.dumps(
    {
        "id": "chatcmpl-1",
        "object": "chat.completion",
        "created": 1700000000,
        "model": MODEL,
        "choices": [
            {
                "index": 0,
                "message": {"role": "assistant", "content": "您好，您的快递预计明天下午送达。" * 4},
                "finish_reason": "stop",
            }
        ],
        "usage": USAGE,
    }
)


def _sse(payload: dict[str, Any]) -> bytes:
    return b"data: " + orjson.dumps(payload) + b"\n\n"


_CHUNK_BASE = {
    "id": "chatcmpl-1",
    "object": "chat.completion.chunk",
    "created": 1700000000,
    "model": MODEL,
}
SSE_CHUNK = _sse(
    {**_CHUNK_BASE, "choices": [{"index": 0, "delta": {"content": "您好"}, "finish_reason": None}]}
)
SSE_LAST = _sse({**_CHUNK_BASE, "choices": [{"index": 0, "delta": {}, "finish_reason": "stop"}]})
SSE_USAGE = _sse({**_CHUNK_BASE, "choices": [], "usage": USAGE})
SSE_DONE = b"data: [DONE]\n\n"
MODELS_REPLY = orjson.dumps(
    {"object": "list", "data": [{"id": MODEL, "object": "model", "owned_by": "mock"}]}
)


def _chunk(data: bytes) -> bytes:
    return b"%x\r\n%s\r\n" % (len(data), data)


def _wants_stream(body: bytes) -> tuple[bool, bool]:
    """(stream, include_usage) from a request body; only parsed when it mentions stream."""
    if b'"stream"' not in body:
        return False, False
    try:
        parsed = orjson.loads(body)
    except orjson.JSONDecodeError:
        return False, False
    if not isinstance(parsed, dict) or parsed.get("stream") is not True:
        return False, False
    options = parsed.get("stream_options") or {}
    return True, bool(isinstance(options, dict) and options.get("include_usage"))


class _UpstreamProtocol(asyncio.Protocol):
    """Just enough HTTP/1.1: Content-Length or chunked request bodies, keep-alive, SSE."""

    def __init__(self) -> None:
        self.buf = b""
        self.transport: Any = None  # uvloop's transports are not asyncio.Transport

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        self.transport = transport

    def data_received(self, data: bytes) -> None:
        self.buf += data
        while True:
            end = self.buf.find(b"\r\n\r\n")
            if end < 0:
                return
            head = self.buf[:end].lower()
            length, chunked = 0, False
            for line in head.split(b"\r\n")[1:]:
                if line.startswith(b"content-length:"):
                    length = int(line.split(b":", 1)[1])
                elif line.startswith(b"transfer-encoding:") and b"chunked" in line:
                    chunked = True
            if chunked:
                parsed = _dechunk(self.buf, end + 4)
                if parsed is None:
                    return
                body, consumed = parsed
            else:
                if len(self.buf) < end + 4 + length:
                    return
                body, consumed = self.buf[end + 4 : end + 4 + length], end + 4 + length
            method, path = head.split(b" ", 2)[:2]
            self.buf = self.buf[consumed:]
            self._respond(method, path, body)

    def _respond(self, method: bytes, path: bytes, body: bytes) -> None:
        assert self.transport is not None
        path = path.split(b"?", 1)[0]
        if method == b"GET":
            reply = MODELS_REPLY if path.endswith(b"/models") else b'{"status":"ok"}'
            self._json(reply)
            return
        stream, include_usage = (True, False) if path.endswith(b"/stream") else (False, False)
        if not stream:
            stream, include_usage = _wants_stream(body)
        if not stream:
            self._json(CHAT_REPLY)
            return
        self.transport.write(
            b"HTTP/1.1 200 OK\r\ncontent-type: text/event-stream\r\n"
            b"cache-control: no-cache\r\ntransfer-encoding: chunked\r\n\r\n"
        )
        # One write per event: each goes out in its own send(), as a real server's do.
        for _ in range(SSE_EVENTS - 1):
            self.transport.write(_chunk(SSE_CHUNK))
        self.transport.write(_chunk(SSE_LAST))
        if include_usage:
            self.transport.write(_chunk(SSE_USAGE))
        self.transport.write(_chunk(SSE_DONE) + b"0\r\n\r\n")

    def _json(self, reply: bytes) -> None:
        self.transport.write(
            b"HTTP/1.1 200 OK\r\ncontent-type: application/json\r\n"
            b"content-length: %d\r\n\r\n%s" % (len(reply), reply)
        )


def _dechunk(buf: bytes, start: int) -> tuple[bytes, int] | None:
    """A chunked body starting at ``start``: (body, end offset), or None if incomplete."""
    parts: list[bytes] = []
    pos = start
    while True:
        eol = buf.find(b"\r\n", pos)
        if eol < 0:
            return None
        size = int(buf[pos:eol].split(b";", 1)[0], 16)
        if size == 0:
            end = buf.find(b"\r\n\r\n", eol)  # no trailers expected: just the blank line
            return (b"".join(parts), end + 4) if end >= 0 else None
        if len(buf) < eol + 2 + size + 2:
            return None
        parts.append(buf[eol + 2 : eol + 2 + size])
        pos = eol + 2 + size + 2


async def serve(port: int = 0) -> None:
    """Listen on 127.0.0.1, print the port, serve until stdin closes."""
    loop = asyncio.get_running_loop()
    server = await loop.create_server(_UpstreamProtocol, "127.0.0.1", port, backlog=4096)
    print(server.sockets[0].getsockname()[1], flush=True)
    await loop.run_in_executor(None, sys.stdin.read)  # the parent closes stdin to stop us
    server.close()


class MockUpstream:
    """A running mock upstream process: its ``port`` and ``pid``."""

    def __init__(self, proc: subprocess.Popen[bytes], port: int) -> None:
        self.proc = proc
        self.port = port
        self.pid = proc.pid


@contextmanager
def running(python: str = sys.executable) -> Iterator[MockUpstream]:
    """Start the mock in a child process (its own core when there is one); stop it after."""
    proc = subprocess.Popen(
        [python, str(Path(__file__).resolve())], stdin=subprocess.PIPE, stdout=subprocess.PIPE
    )
    try:
        assert proc.stdout is not None
        line = proc.stdout.readline()
        if not line.strip():
            raise RuntimeError("mock upstream exited before printing its port")
        yield MockUpstream(proc, int(line))
    finally:
        assert proc.stdin is not None
        proc.stdin.close()
        try:
            proc.wait(timeout=10)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait(timeout=10)
        if proc.stdout is not None:
            proc.stdout.close()


if __name__ == "__main__":
    uvloop.run(serve(int(sys.argv[1]) if len(sys.argv) > 1 else 0))
