"""How the trace exporter posts to a real collector on loopback: one kept connection for
many batches, a fresh one when the collector closed it while idle, the retry rules, the
OTEL_* headers and gzip, a proxy when the environment names one, and a tracing endpoint
that is not a URL refused when the configuration is read."""

from __future__ import annotations

import contextlib
import gzip
import threading
import time
from collections.abc import Iterator
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

import pytest
from pydantic import ValidationError

from heshi import tracing_post
from heshi.config import TracingConfig
from heshi.tracing_post import Poster


@dataclass
class Seen:
    bodies: list[bytes] = field(default_factory=list)
    headers: list[dict[str, str]] = field(default_factory=list)
    paths: list[str] = field(default_factory=list)
    connections: set[int] = field(default_factory=set)
    answers: list[int] = field(default_factory=list)  # statuses to give first, then 200
    reply: bytes = b""  # the body of each answer
    interim: bool = False  # a 103 Early Hints before each answer
    stray: bytes = b""  # written after an answer once ``idle`` is set, though nobody asked
    idle: threading.Event = field(default_factory=threading.Event)  # the answer was read
    written: threading.Event = field(default_factory=threading.Event)  # the stray bytes too


@contextlib.contextmanager
def collector(close_silently: bool = False) -> Iterator[tuple[str, Seen]]:
    """An HTTP/1.1 collector; ``close_silently`` drops each connection after answering
    without saying so (as a collector's idle timeout does between two batches)."""
    seen = Seen()
    lock = threading.Lock()

    class Handler(BaseHTTPRequestHandler):
        protocol_version = "HTTP/1.1"

        def do_POST(self) -> None:
            body = self.rfile.read(int(self.headers.get("Content-Length", 0)))
            with lock:
                seen.bodies.append(body)
                seen.headers.append(dict(self.headers))
                seen.paths.append(self.path)
                seen.connections.add(id(self.connection))
                status = seen.answers.pop(0) if seen.answers else 200
            if seen.interim:
                self.send_response_only(103)
                self.end_headers()
                self.wfile.flush()
                time.sleep(0.05)
            self.send_response(status)
            self.send_header("Content-Length", str(len(seen.reply)))
            self.end_headers()
            with contextlib.suppress(OSError):  # the exporter may stop reading
                self.wfile.write(seen.reply)
            if seen.stray:  # once the exporter has read the answer: on an idle connection
                self.wfile.flush()
                if seen.idle.wait(10):
                    seen.idle.clear()
                    self.wfile.write(seen.stray)
                    self.wfile.flush()
                    seen.written.set()
            self.close_connection = close_silently

        def log_message(self, *args: Any) -> None:
            return

    server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    try:
        yield f"http://127.0.0.1:{server.server_address[1]}/v1/traces", seen
    finally:
        server.shutdown()
        server.server_close()


@pytest.fixture(autouse=True)
def _fresh_settings(monkeypatch: pytest.MonkeyPatch) -> Iterator[None]:
    for name in ("HTTP_PROXY", "http_proxy", "HTTPS_PROXY", "https_proxy", "NO_PROXY",
                 "no_proxy", "ALL_PROXY", "all_proxy"):  # fmt: skip
        monkeypatch.delenv(name, raising=False)
    tracing_post.request_headers.cache_clear()
    yield
    tracing_post.request_headers.cache_clear()


def test_many_batches_go_over_one_kept_connection() -> None:
    with collector() as (url, seen):
        poster = Poster(url, 5)
        bodies = [bytes([i]) * (1000 + i) for i in range(20)]
        assert all(poster.post(body) for body in bodies)
        poster.close()
    assert seen.bodies == bodies
    assert poster.connections == 1 and len(seen.connections) == 1
    assert seen.paths == ["/v1/traces"] * 20
    assert seen.headers[0]["Content-Type"] == "application/x-protobuf"


def _posted_after_a_pause(poster: Poster, body: bytes) -> bool:
    time.sleep(0.05)  # idle: the collector's close has arrived
    return poster.post(body)


def test_a_connection_the_collector_closed_while_idle_is_reopened_without_loss() -> None:
    before = tracing_post.FAILURES.count
    with collector(close_silently=True) as (url, seen):
        poster = Poster(url, 5)
        assert all(_posted_after_a_pause(poster, f"batch {i}".encode()) for i in range(6))
        seen.answers = [503]  # the one retry is still there for a busy collector
        assert _posted_after_a_pause(poster, b"batch 6")
        poster.close()
    assert seen.bodies[:6] == [f"batch {i}".encode() for i in range(6)]  # once each, in order
    assert seen.bodies[6:] == [b"batch 6"] * 2
    assert poster.connections == 8
    assert tracing_post.FAILURES.count == before  # not a failure, not the one retry


def test_a_connection_holding_bytes_nobody_asked_for_is_not_reused() -> None:
    with collector() as (url, seen):
        seen.stray = b"\r\n"  # the next answer would be misread on this connection
        poster = Poster(url, 5)
        for i in range(4):
            assert poster.post(f"b{i}".encode())
            seen.idle.set()  # the answer is read: now the stray bytes arrive
            assert seen.written.wait(10)
            seen.written.clear()
        poster.close()
    assert seen.bodies == [b"b0", b"b1", b"b2", b"b3"]  # each batch once
    assert poster.connections == 4  # none reused with bytes waiting on it


def test_an_interim_answer_never_stands_for_the_next_batch() -> None:
    with collector() as (url, seen):
        poster = Poster(url, 5)
        seen.interim = True  # 103, then the real answer on the same line
        assert not poster.post(b"first")  # not an answer: dropped, the connection too
        seen.interim = False
        assert poster.post(b"second")
        seen.answers = [400]
        assert not poster.post(b"refused")
        assert poster.post(b"third")  # its own answer, not one left over
        poster.close()


def test_a_connection_idle_too_long_is_not_reused(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(tracing_post, "_IDLE_MOST_S", 0.02)  # a balancer's idle timeout
    with collector() as (url, seen):
        poster = Poster(url, 5)
        assert poster.post(b"a") and poster.post(b"b")  # back to back: one connection
        assert _posted_after_a_pause(poster, b"c")
        poster.close()
    assert seen.bodies == [b"a", b"b", b"c"] and poster.connections == 2


def test_busy_answers_are_tried_once_more_and_refusals_are_not() -> None:
    with collector() as (url, seen):
        poster = Poster(url, 5)
        before = tracing_post.FAILURES.count
        seen.answers = [503]
        assert poster.post(b"a") and len(seen.bodies) == 2  # once more, then taken
        seen.answers = [429, 502]
        assert not poster.post(b"b") and len(seen.bodies) == 4  # twice busy: dropped
        seen.answers = [400]
        assert not poster.post(b"c") and len(seen.bodies) == 5  # refused: not repeated
        assert tracing_post.FAILURES.count == before + 2
        assert poster.post(b"d")  # the connection still serves
        poster.close()
    assert poster.connections == 3  # each retry on a new connection; a refusal keeps it


def test_an_endless_answer_is_not_read_into_memory() -> None:
    with collector() as (url, seen):
        poster = Poster(url, 5)
        seen.reply = b"x" * (8 << 20)  # not a collector's answer: 8 MiB
        assert poster.post(b"a")  # taken (a 200), the rest of the answer left unread
        seen.reply = b""
        assert poster.post(b"b")  # on a fresh connection: the old one was not reusable
        poster.close()
    assert seen.bodies == [b"a", b"b"] and poster.connections == 2


def test_an_unreachable_collector_is_counted_not_raised() -> None:
    with collector() as (url, _):
        pass  # closed: nothing listens on the port any more
    before = tracing_post.FAILURES.count
    poster = Poster(url, 2)
    assert not poster.post(b"lost")
    poster.close()
    assert tracing_post.FAILURES.count == before + 1


def test_otel_headers_and_gzip_are_honoured(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("OTEL_EXPORTER_OTLP_HEADERS", "x-scope=general,authorization=no")
    monkeypatch.setenv("OTEL_EXPORTER_OTLP_TRACES_HEADERS", "authorization=Bearer%20t0k")
    monkeypatch.setenv("OTEL_EXPORTER_OTLP_TRACES_COMPRESSION", "gzip")
    body = "追踪 span ".encode() * 500
    with collector() as (url, seen):
        poster = Poster(url, 5)
        assert poster.post(body)
        poster.close()
    got = seen.headers[0]
    assert got["authorization"] == "Bearer t0k"  # the traces-specific variable wins
    assert "x-scope" not in got
    assert got["Content-Encoding"] == "gzip"
    assert gzip.decompress(seen.bodies[0]) == body


def test_a_proxy_named_by_the_environment_carries_the_export(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    with collector() as (proxy, seen):
        monkeypatch.setenv("HTTP_PROXY", proxy.removesuffix("/v1/traces"))
        poster = Poster("http://collector.internal:4318/v1/traces", 5)
        assert poster.proxied
        assert poster.post(b"via the proxy")
        assert seen.paths == ["http://collector.internal:4318/v1/traces"]  # a proxy's request
        monkeypatch.setenv("NO_PROXY", "collector.internal")
        assert not Poster("http://collector.internal:4318/v1/traces", 5).proxied


@pytest.mark.parametrize(
    "endpoint",
    ["localhost:4318/v1/traces", "ftp://collector/v1/traces", "http://", "http://h:x/",
     "http://user:secret@collector:4318/v1/traces"],
)  # fmt: skip
def test_a_tracing_endpoint_that_is_not_an_http_url_is_refused(endpoint: str) -> None:
    with pytest.raises(ValidationError, match=r"tracing\.endpoint"):
        TracingConfig(enabled=True, endpoint=endpoint)
    assert TracingConfig(enabled=False, endpoint=endpoint)  # unused while tracing is off
    padded = TracingConfig(enabled=True, endpoint=" HTTPS://otel.example.cn/v1/traces\n")
    assert padded.endpoint == "HTTPS://otel.example.cn/v1/traces"
    assert Poster(padded.endpoint, 5).target == "/v1/traces"
