"""OpenTelemetry traces through a real gateway, a real fake upstream and a real OTLP
collector on loopback: a span per stage, the request id is the trace id, a client's
traceparent is continued and the attempt's own goes to the backend."""

from __future__ import annotations

from pathlib import Path

import httpx

from heshi.config import TracingConfig
from heshi.engines.openai_http import OpenAIHTTPEngine
from heshi.gateway.app import create_app
from heshi.gateway.governance import Governance
from tests.fakes.collector import otlp_collector
from tests.fakes.upstream import FakeUpstream
from tests.fakes.waiting import wait_until
from tests.governance.conftest import ALIAS, gateway_config, upstream
from tests.loopback import serve_app

__all__ = ["upstream"]  # fixture used here

CLIENT_TRACE = "4bf92f3577b34da6a3ce929d0e0e4736"


def test_spans_per_stage_request_id_and_traceparent(tmp_path: Path, upstream: FakeUpstream) -> None:
    with otlp_collector() as (endpoint, got):
        config = gateway_config(tmp_path / "home", upstream.base_url, open_mode=True)
        config = config.model_copy(
            update={"tracing": TracingConfig(enabled=True, endpoint=endpoint)}
        )
        engines = {n: OpenAIHTTPEngine(n, b) for n, b in config.backends.items()}
        app = create_app(config, engines, Governance(config))  # type: ignore[arg-type]
        with serve_app(app) as url, httpx.Client(base_url=url, timeout=30) as client:
            chat = {"model": ALIAS, "messages": [{"role": "user", "content": "你好"}]}
            plain = client.post("/v1/chat/completions", json=chat)
            assert plain.status_code == 200
            parent = {"traceparent": f"00-{CLIENT_TRACE}-00f067aa0ba902b7-01"}
            with client.stream(
                "POST", "/v1/chat/completions", json=chat | {"stream": True}, headers=parent
            ) as streamed:
                streamed.read()
            assert streamed.headers["x-request-id"].startswith(f"req_{CLIENT_TRACE}_")
        # the app's shutdown exported the last batch
        wait_until(lambda: len(got.named("heshi.request")) >= 2, timeout=10, interval=0.05)
    request_id = plain.headers["x-request-id"]
    trace_id = request_id.removeprefix("req_").split("_")[0]
    assert len(trace_id) == 32 and trace_id != CLIENT_TRACE
    spans = [s for s in got.spans if s.trace_id.hex() == trace_id]
    names = {s.name for s in spans}
    assert {"heshi.request", "admission", "generate", "route.attempt", "record"} <= names
    root = next(s for s in spans if s.name == "heshi.request")
    by_id = {s.span_id: s for s in spans}
    attempt = next(s for s in spans if s.name == "route.attempt")
    assert by_id[attempt.parent_span_id].name == "generate"
    assert by_id[by_id[attempt.parent_span_id].parent_span_id].span_id == root.span_id
    assert {a.key for a in attempt.attributes} >= {"heshi.backend", "heshi.attempt"}
    # the streamed request continued the client's trace and marked its first token
    continued = [s for s in got.spans if s.trace_id.hex() == CLIENT_TRACE]
    generate = next(s for s in continued if s.name == "generate")
    assert any(e.name == "first_token" for e in generate.events)
    # each attempt told the backend which span it was
    sent = [r.headers.get("traceparent", "") for r in upstream.state.requests]
    assert any(trace_id in t for t in sent) and any(CLIENT_TRACE in t for t in sent)


def test_tracing_is_off_by_default_and_imports_nothing(
    tmp_path: Path, upstream: FakeUpstream
) -> None:
    config = gateway_config(tmp_path / "home", upstream.base_url, open_mode=True)
    assert config.tracing.enabled is False
    engines = {n: OpenAIHTTPEngine(n, b) for n, b in config.backends.items()}
    app = create_app(config, engines, Governance(config))  # type: ignore[arg-type]
    with serve_app(app) as url:
        chat = {"model": ALIAS, "messages": [{"role": "user", "content": "你好"}]}
        r = httpx.post(url + "/v1/chat/completions", json=chat, timeout=30)
        assert r.status_code == 200 and r.headers["x-request-id"].startswith("req_")
    assert all("traceparent" not in r.headers for r in upstream.state.requests)


def test_a_repeated_traceparent_never_merges_ledger_rows(
    tmp_path: Path, upstream: FakeUpstream
) -> None:
    """An instrumented client sends the same trace id on every call of one trace; each
    call is still its own request id and its own ledger row (no metering bypass)."""
    from sqlalchemy import func, select

    from heshi.store.tables import usage_ledger

    with otlp_collector() as (endpoint, _):
        config = gateway_config(tmp_path / "home", upstream.base_url, open_mode=True)
        config = config.model_copy(
            update={"tracing": TracingConfig(enabled=True, endpoint=endpoint, sample_ratio=0)}
        )
        engines = {n: OpenAIHTTPEngine(n, b) for n, b in config.backends.items()}
        gov = Governance(config)
        app = create_app(config, engines, gov)  # type: ignore[arg-type]
        parent = {"traceparent": f"00-{CLIENT_TRACE}-00f067aa0ba902b7-01"}
        chat = {"model": ALIAS, "messages": [{"role": "user", "content": "你好"}]}
        with serve_app(app) as url, httpx.Client(base_url=url, timeout=30) as client:
            ids = {
                client.post("/v1/chat/completions", json=chat, headers=parent).headers[
                    "x-request-id"
                ]
                for _ in range(4)
            }
            assert gov.ledger.flush()
            with gov.db.engine.connect() as conn:
                rows = conn.execute(select(func.count()).select_from(usage_ledger)).scalar()
    assert len(ids) == 4 and all(i.startswith(f"req_{CLIENT_TRACE}_") for i in ids)
    assert rows == 4


def _traced_app(tmp_path: Path, upstream: FakeUpstream, tracing: TracingConfig) -> object:
    config = gateway_config(tmp_path / "home", upstream.base_url, open_mode=True)
    config = config.model_copy(update={"tracing": tracing})
    engines = {n: OpenAIHTTPEngine(n, b) for n, b in config.backends.items()}
    return create_app(config, engines, Governance(config))  # type: ignore[arg-type]


def test_unsampled_traces_export_nothing_but_still_propagate(
    tmp_path: Path, upstream: FakeUpstream
) -> None:
    chat = {"model": ALIAS, "messages": [{"role": "user", "content": "你好"}]}
    with otlp_collector() as (endpoint, got):
        # ratio 0: nothing is exported, whatever a client's flag says
        never = TracingConfig(enabled=True, endpoint=endpoint, sample_ratio=0)
        app = _traced_app(tmp_path, upstream, never)
        sampled = {"traceparent": f"00-{CLIENT_TRACE}-00f067aa0ba902b7-01"}
        with serve_app(app) as url, httpx.Client(base_url=url, timeout=30) as client:
            for headers in ({}, sampled):
                r = client.post("/v1/chat/completions", json=chat, headers=headers)
                assert r.status_code == 200
        assert got.spans == []
        # ratio 1, but the client said "not sampled": that holds
        always = TracingConfig(enabled=True, endpoint=endpoint)
        app = _traced_app(tmp_path / "b", upstream, always)
        unsampled = {"traceparent": f"00-{CLIENT_TRACE}-00f067aa0ba902b7-00"}
        with serve_app(app) as url, httpx.Client(base_url=url, timeout=30) as client:
            r = client.post("/v1/chat/completions", json=chat, headers=unsampled)
            assert r.status_code == 200
            assert r.headers["x-request-id"].startswith(f"req_{CLIENT_TRACE}_")
        assert got.spans == []
    # the backends were still told the trace, marked not sampled
    calls = [r for r in upstream.state.requests if r.method == "POST"]
    sent = [r.headers.get("traceparent", "") for r in calls]
    assert len(sent) == 3 and all(t.startswith("00-") and t.endswith("-00") for t in sent)
    assert sum(CLIENT_TRACE in t for t in sent) == 2


def test_a_dead_collector_costs_requests_nothing_and_shutdown_ends(
    tmp_path: Path, upstream: FakeUpstream
) -> None:
    import socket

    with socket.socket() as probe:  # a port nothing listens on
        probe.bind(("127.0.0.1", 0))
        dead = f"http://127.0.0.1:{probe.getsockname()[1]}/v1/traces"
    tracing = TracingConfig(enabled=True, endpoint=dead, export_timeout_s=1, export_batch_spans=8)
    app = _traced_app(tmp_path, upstream, tracing)
    chat = {"model": ALIAS, "messages": [{"role": "user", "content": "你好"}]}
    with serve_app(app) as url, httpx.Client(base_url=url, timeout=30) as client:
        statuses = [client.post("/v1/chat/completions", json=chat).status_code for _ in range(20)]
    assert statuses == [200] * 20  # and leaving the block shut the exporter down


def test_only_well_formed_traceparents_are_continued(
    tmp_path: Path, upstream: FakeUpstream
) -> None:
    """W3C trace context as the SDK read it: version 00 has four fields, lowercase hex,
    no zero ids, no version ff; a future version may carry more fields."""
    ids = "-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01"
    cases = {
        "00" + ids: True,
        "cc" + ids + "-what-comes-later": True,  # a later version's extra fields
        "00" + ids + "-extra": False,
        "00" + ids + "xyz": False,
        "cc" + ids + "xyz": False,
        "ff" + ids: False,
        "00" + ids.upper(): False,
        "00-" + "0" * 32 + "-00f067aa0ba902b7-01": False,
        "00-4bf92f3577b34da6a3ce929d0e0e4736-" + "0" * 16 + "-01": False,
    }
    with otlp_collector() as (endpoint, _):
        app = _traced_app(tmp_path, upstream, TracingConfig(enabled=True, endpoint=endpoint))
        chat = {"model": ALIAS, "messages": [{"role": "user", "content": "你好"}]}
        with serve_app(app) as url, httpx.Client(base_url=url, timeout=30) as client:
            for header, continued in cases.items():
                r = client.post(
                    "/v1/chat/completions",
                    json=chat,
                    headers={"traceparent": header, "tracestate": "vendor=1"},
                )
                assert r.status_code == 200
                got = r.headers["x-request-id"].startswith(f"req_{CLIENT_TRACE}_")
                assert got is continued, header
    # a continued trace passes the client's tracestate on; a new one does not
    calls = [r for r in upstream.state.requests if r.method == "POST"]
    for call in calls:
        ours = CLIENT_TRACE in call.headers["traceparent"]
        assert call.headers.get("tracestate") == ("vendor=1" if ours else None)


def _exporter_pid() -> int:
    """The trace exporter child of this process."""
    import os

    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit():
            continue
        try:
            cmdline = (entry / "cmdline").read_bytes()
            ppid = int((entry / "stat").read_text().rsplit(")", 1)[1].split()[1])
        except (OSError, ValueError, IndexError):
            continue
        if b"heshi.tracing_export" in cmdline and ppid == os.getpid():
            return int(entry.name)
    raise AssertionError("no trace exporter process")


def test_an_exporter_that_dies_costs_requests_nothing_and_is_counted(
    tmp_path: Path, upstream: FakeUpstream
) -> None:
    import os
    import signal

    from tests.conftest import ADMIN

    with otlp_collector() as (endpoint, _):
        tracing = TracingConfig(enabled=True, endpoint=endpoint, export_batch_spans=4)
        app = _traced_app(tmp_path, upstream, tracing)
        chat = {"model": ALIAS, "messages": [{"role": "user", "content": "你好"}]}
        with serve_app(app) as url, httpx.Client(base_url=url, timeout=30) as client:
            os.kill(_exporter_pid(), signal.SIGKILL)
            statuses = [
                client.post("/v1/chat/completions", json=chat).status_code for _ in range(20)
            ]
            metrics = client.get("/metrics", headers=ADMIN).text
        assert statuses == [200] * 20
        dropped = next(
            float(line.split()[-1])
            for line in metrics.splitlines()
            if line.startswith("heshi_trace_spans_dropped ")
        )
        assert dropped >= 20 * 4  # every request's spans, counted, none sent


def test_the_exporter_sends_what_has_arrived_together_and_everything_at_the_end() -> None:
    import marshal
    import os
    import struct

    from heshi.tracing_export import batches

    def frame(spans: list[tuple[int, ...]]) -> bytes:
        data = marshal.dumps(spans)
        return struct.pack("<I", len(data)) + data

    read, write = os.pipe()
    whole = b"".join(frame([(i,)]) for i in range(5))
    os.write(write, whole[:7])  # a frame split across writes is put back together
    os.write(write, whole[7:])
    os.close(write)  # the gateway is done: nothing may be left behind
    got = list(batches(read, most=3, linger=60))
    os.close(read)
    assert [len(b) for b in got] == [3, 2]  # no more than ``most`` a batch, none waits
    assert [s for b in got for s in b] == [(i,) for i in range(5)]


def test_a_stage_whose_error_cannot_be_described_still_ends_and_is_exported() -> None:
    from heshi.tracing import Span, _ending, current_span
    from heshi.tracing_export import SpanSink

    class Unprintable(Exception):
        def __str__(self) -> str:
            raise RuntimeError("no description")

    with otlp_collector() as (endpoint, got):
        sink = SpanSink(TracingConfig(enabled=True, endpoint=endpoint))
        root = Span("heshi.request", 7, 0, sink)
        try:
            with _ending(root.child("guard.in")):
                raise Unprintable
        except (Unprintable, RuntimeError):
            pass
        assert current_span() is None  # not left current for the rest of the task
        root.end()
        assert sink.close(10)
        wait_until(lambda: len(got.named("heshi.request")) == 1, timeout=10, interval=0.05)
    assert len(got.named("guard.in")) == 1  # ended, and exported
