"""Connections that cannot hold the gateway hostage (issue 9, defect 5): idle sockets,
slow headers and stalled bodies are closed on time, and past the connection ceiling the
longest-idle connection makes room, so a normal request is still served."""

from __future__ import annotations

import contextlib
import logging
import socket
import threading
import time
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest
import uvicorn

from heshi.config import HeshiConfig, ServerConfig
from heshi.engines.openai_http import OpenAIHTTPEngine
from heshi.gateway.app import create_app
from heshi.gateway.connections import default_max_connections, raise_open_file_limit
from heshi.gateway.governance import Governance
from heshi.gateway.server import server_config
from heshi.store.db import Database
from heshi.store.keys import KeyStore
from tests.fakes.waiting import wait_until
from tests.governance.conftest import Upstream, bearer, chat_body, gateway_config, ledger_rows
from tests.loopback import free_port
from tests.pipeline.conftest import raw_chat_post


@contextlib.contextmanager
def guarded_gateway(config: HeshiConfig) -> Iterator[tuple[str, Governance]]:
    """The gateway under the server ``heshi serve`` runs (limits included), on loopback."""
    engines = {n: OpenAIHTTPEngine(n, b) for n, b in config.backends.items()}
    gov = Governance(config)
    port = free_port()
    server = uvicorn.Server(
        server_config(
            create_app(config, engines, gov), config.server, port=port, log_level="warning"
        )
    )
    thread = threading.Thread(target=server.run, daemon=True)
    thread.start()
    wait_until(
        lambda: server.started or not thread.is_alive(),
        timeout=30,
        message="the gateway did not start",
    )
    assert server.started, "the gateway exited at start-up"
    try:
        yield f"http://127.0.0.1:{port}", gov
    finally:
        server.should_exit = True
        thread.join(timeout=30)


def _config(home: Path, upstream: Upstream, **server: object) -> HeshiConfig:
    base = gateway_config(home, upstream.base_url)
    return base.model_copy(update={"server": ServerConfig.model_validate(server)})


def _closed_within(sock: socket.socket, seconds: float) -> bool:
    """True when the server closes ``sock`` within ``seconds``."""
    sock.settimeout(seconds)
    try:
        while sock.recv(4096):
            pass
    except TimeoutError:
        return False
    except OSError:
        return True
    return True


def _connect(url: str) -> socket.socket:
    return socket.create_connection(("127.0.0.1", int(url.rsplit(":", 1)[1])))


def test_idle_and_slow_header_connections_are_closed(upstream: Upstream, home: Path) -> None:
    config = _config(home, upstream, header_timeout_seconds=0.5)
    with guarded_gateway(config) as (url, _):
        idle = _connect(url)  # never sends a byte
        slow = _connect(url)  # sends its headers a byte at a time, too slowly
        slow.sendall(b"GET /healthz HT")
        started = time.monotonic()
        assert _closed_within(idle, 5) and _closed_within(slow, 5)
        assert time.monotonic() - started < 4
        # a prompt client on a fresh connection is unaffected
        assert httpx.get(url + "/healthz").status_code == 200
        idle.close()
        slow.close()


def test_a_stalled_body_is_closed_and_recorded_as_the_client_gone(
    upstream: Upstream, home: Path, keys: KeyStore, store_db: Database
) -> None:
    plaintext, key = keys.create("acme", "staller")
    config = _config(home, upstream, body_timeout_seconds=0.5)
    with guarded_gateway(config) as (url, gov), _connect(url) as sock:
        sock.sendall(
            b"POST /v1/chat/completions HTTP/1.1\r\nHost: x\r\nContent-Length: 1000\r\n"
            b"Authorization: Bearer " + plaintext.encode() + b'\r\n\r\n{"model":'
        )
        assert _closed_within(sock, 5)
        assert gov.ledger.flush(10)
    (row,) = ledger_rows(store_db)
    assert (row["key_id"], row["status"], row["reason"]) == (key.id, 499, "client_gone")


def test_past_the_ceiling_the_longest_idle_connection_makes_room(
    upstream: Upstream, home: Path, caplog: pytest.LogCaptureFixture
) -> None:
    """More idle sockets than the ceiling allows: normal requests are still answered, the
    oldest idle sockets were the ones closed, and the gateway said so in its log."""
    caplog.set_level(logging.WARNING, logger="heshi.gateway")
    config = _config(home, upstream, max_connections=20, header_timeout_seconds=60)
    with guarded_gateway(config) as (url, _):
        idle = [_connect(url) for _ in range(30)]
        time.sleep(0.2)  # let the server accept them all
        with httpx.Client() as client:
            for _ in range(10):
                r = client.post(url + "/v1/chat/completions", json=chat_body())
                assert r.status_code == 200
        oldest_closed = sum(_closed_within(s, 0.5) for s in idle[:10])
        newest_open = sum(not _closed_within(s, 0.2) for s in idle[-5:])
        for s in idle:
            s.close()
    assert oldest_closed == 10 and newest_open == 5
    assert any("ceiling 20" in r.getMessage() for r in caplog.records)


def test_a_request_in_progress_is_never_evicted(upstream: Upstream, home: Path) -> None:
    """Only idle connections make room; a busy one finishes, and a newcomer that finds no
    idle connection to replace is refused instead."""
    upstream.state.hold = True
    config = _config(home, upstream, max_connections=3)
    with guarded_gateway(config) as (url, _):
        results: list[int] = []

        def slow_request() -> None:
            results.append(
                httpx.post(url + "/v1/chat/completions", json=chat_body(), timeout=30).status_code
            )

        busy = [threading.Thread(target=slow_request) for _ in range(3)]
        for t in busy:
            t.start()
        wait_until(lambda: upstream.state.calls == 3, message="the three requests never arrived")
        with pytest.raises(httpx.TransportError):
            httpx.get(url + "/healthz", timeout=5)
        upstream.state.release.set()
        for t in busy:
            t.join(30)
        assert results == [200, 200, 200]


def test_the_default_ceiling_leaves_room_below_the_open_file_limit() -> None:
    assert default_max_connections(1024) == 720
    assert raise_open_file_limit() >= 1024


def test_key_is_needed_once_keys_exist_even_on_a_guarded_server(
    upstream: Upstream, home: Path, keys: KeyStore
) -> None:
    plaintext, _ = keys.create("acme", "k")
    with guarded_gateway(_config(home, upstream)) as (url, _):
        assert httpx.post(url + "/v1/chat/completions", json=chat_body()).status_code == 401
        r = httpx.post(url + "/v1/chat/completions", json=chat_body(), headers=bearer(plaintext))
        assert r.status_code == 200


def test_a_client_that_stops_reading_its_stream_is_dropped_and_frees_the_backend(
    upstream: Upstream, home: Path, keys: KeyStore, store_db: Database
) -> None:
    """A stream nobody reads would hold its backend connection and reservation forever:
    once the gateway's writes stall past the write timeout the client is dropped, the
    upstream is told, and the request is recorded."""
    plaintext, _ = keys.create("acme", "sponge")
    upstream.state.deltas = ["字" * 1000] * 4000  # ~12 MB of stream, more than buffers hold
    upstream.state.chunk_delay = 0.0005
    config = _config(home, upstream, write_timeout_seconds=0.5)
    body = b'{"model":"qwen","stream":true,"messages":[{"role":"user","content":"hi"}]}'
    with guarded_gateway(config) as (url, gov):
        sock = _connect(url)
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 4096)
        sock.sendall(raw_chat_post(body, plaintext))
        # never read: the gateway's writes stall, then it gives up on this client
        wait_until(
            lambda: gov.ledger.flush() and ledger_rows(store_db),
            timeout=30,
            message="the stalled stream was never recorded",
        )
        sock.close()
    (row,) = ledger_rows(store_db)
    assert (row["status"], row["reason"]) == (499, "client_gone")
    assert row["completion_tokens"] > 0  # what was generated before it stalled is charged
    wait_until(
        lambda: upstream.state.disconnects >= 1 or upstream.state.calls == 0,
        message="the upstream was never told",
    )
