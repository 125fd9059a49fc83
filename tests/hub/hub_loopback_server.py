"""A real HTTP server on 127.0.0.1 that lays files out like Hugging Face and ModelScope.

It answers Range requests (206, or 416 past the end), can redirect like Hugging Face
does (302 carrying ``X-Linked-Etag``), advertise a sha256 ETag, cut a response short
once, ignore Range, stall, or demand a token; and it records every request it sees.
"""

from __future__ import annotations

import re
import socket
import threading
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any


@dataclass
class ServedFile:
    body: bytes
    etag: str | None = None  # sent as ETag (quoted) on the file's own response
    linked_etag: str | None = None  # when set, answer with a 302 carrying X-Linked-Etag


@dataclass(frozen=True)
class SeenRequest:
    path: str
    range: str | None
    authorization: str | None


@dataclass
class HubBehaviour:
    files: dict[str, ServedFile] = field(default_factory=dict)
    drop_after: int | None = None  # one-shot: send this many body bytes, then hang up
    ignore_range: bool = False
    required_token: str | None = None
    stall: threading.Event = field(default_factory=threading.Event)
    stalling: bool = False
    seen: list[SeenRequest] = field(default_factory=list)


class _Server(ThreadingHTTPServer):
    daemon_threads = True
    block_on_close = False

    def __init__(self, behaviour: HubBehaviour) -> None:
        super().__init__(("127.0.0.1", 0), _Handler)
        self.behaviour = behaviour

    def handle_error(self, request: Any, client_address: Any) -> None:
        # Clients hanging up mid-answer is part of what these tests do.
        pass


class _Handler(BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"
    server: _Server

    def log_message(self, format: str, *args: Any) -> None:
        pass

    def do_GET(self) -> None:
        hub = self.server.behaviour
        hub.seen.append(
            SeenRequest(self.path, self.headers.get("Range"), self.headers.get("Authorization"))
        )
        if hub.stalling:
            hub.stall.wait(10)
            return
        if hub.required_token and self.headers.get("Authorization") != (
            f"Bearer {hub.required_token}"
        ):
            self._answer(401, b"unauthorized", {})
            return
        cdn = self.path.startswith("/cdn/")
        served = hub.files.get(self.path.removeprefix("/cdn") if cdn else self.path)
        if served is None:
            self._answer(404, b"Entry not found", {})
            return
        if served.linked_etag and not cdn:
            headers = {"Location": "/cdn" + self.path, "X-Linked-Etag": f'"{served.linked_etag}"'}
            self._answer(302, b"", headers)
            return
        self._send_file(hub, served)

    def _send_file(self, hub: HubBehaviour, served: ServedFile) -> None:
        body, headers = served.body, {}
        if served.etag:
            headers["ETag"] = f'"{served.etag}"'
        match = re.match(r"^bytes=(\d+)-$", self.headers.get("Range") or "")
        if match and not hub.ignore_range:
            start = int(match[1])
            if start >= len(body):
                headers["Content-Range"] = f"bytes */{len(body)}"
                self._answer(416, b"", headers)
                return
            headers["Content-Range"] = f"bytes {start}-{len(body) - 1}/{len(body)}"
            self._answer(206, body[start:], headers)
            return
        self._answer(200, body, headers)

    def _answer(self, status: int, body: bytes, headers: dict[str, str]) -> None:
        hub = self.server.behaviour
        self.send_response(status)
        for name, value in headers.items():
            self.send_header(name, value)
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        if hub.drop_after is not None and status in (200, 206):
            cut, hub.drop_after = hub.drop_after, None
            self.wfile.write(body[:cut])
            self.wfile.flush()
            self.connection.shutdown(socket.SHUT_RDWR)
            self.close_connection = True
            return
        self.wfile.write(body)


class LoopbackHub:
    """Start with ``with LoopbackHub() as hub``; ``hub.url`` is the endpoint."""

    def __init__(self) -> None:
        self.behaviour = HubBehaviour()
        self._server = _Server(self.behaviour)
        # A short poll interval keeps shutdown (and so each test's teardown) quick.
        self._thread = threading.Thread(
            target=self._server.serve_forever, kwargs={"poll_interval": 0.02}, daemon=True
        )

    @property
    def url(self) -> str:
        host, port = self._server.server_address[:2]
        return f"http://{host!s}:{port}"

    def serve(self, path: str, body: bytes, **options: Any) -> None:
        self.behaviour.files[path] = ServedFile(body, **options)

    @property
    def seen(self) -> list[SeenRequest]:
        return self.behaviour.seen

    def __enter__(self) -> LoopbackHub:
        self._thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self.behaviour.stall.set()
        self._server.shutdown()
        self._server.server_close()
        self._thread.join(5)
