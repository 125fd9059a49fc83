"""The trace exporter: a child process of ``heshi serve`` (``tracing.enabled``) that turns
finished spans into OTLP/HTTP protobuf requests and posts them to ``tracing.endpoint``.

Encoding and sending run here, in a process of their own, so they never hold the
gateway's interpreter while a request waits (measured in benchmarks/scale.py). The
gateway writes frames on this process's stdin: a 4-byte little-endian length, then a
``marshal``-ed list of span tuples (``Span.end`` in :mod:`heshi.tracing`). End of input
(the gateway stopped or died) ends this process after the last frame is sent. It runs
at a lower CPU priority than the gateway (``nice`` 10).

    python -m heshi.tracing_export ENDPOINT SERVICE_NAME TIMEOUT_S
"""

from __future__ import annotations

import contextlib
import logging
import marshal
import os
import select
import struct
import sys
import traceback
import urllib.error
import urllib.request
from collections.abc import Sequence
from typing import Any

log = logging.getLogger("heshi.tracing")
_KIND = {"server": 2, "client": 3}  # OTLP Span.SpanKind; anything else is INTERNAL (1)


def _value(value: Any) -> Any:
    from opentelemetry.proto.common.v1.common_pb2 import AnyValue

    if isinstance(value, bool):
        return AnyValue(bool_value=value)
    if isinstance(value, int):
        return AnyValue(int_value=value)
    if isinstance(value, float):
        return AnyValue(double_value=value)
    return AnyValue(string_value=str(value))


def _attributes(attributes: dict[str, Any] | None) -> list[Any]:
    from opentelemetry.proto.common.v1.common_pb2 import KeyValue

    return [KeyValue(key=k, value=_value(v)) for k, v in (attributes or {}).items()]


def encode(spans: Sequence[tuple[Any, ...]], service: str) -> bytes:
    """An ``ExportTraceServiceRequest`` of ``spans`` from service ``service``."""
    from opentelemetry.proto.collector.trace.v1.trace_service_pb2 import (
        ExportTraceServiceRequest,
    )
    from opentelemetry.proto.common.v1.common_pb2 import InstrumentationScope
    from opentelemetry.proto.resource.v1.resource_pb2 import Resource
    from opentelemetry.proto.trace.v1.trace_pb2 import ResourceSpans, ScopeSpans, Span, Status

    out = []
    for trace_id, span_id, parent, name, kind, start, end, attrs, events, status in spans:
        span = Span(
            trace_id=trace_id.to_bytes(16, "big"),
            span_id=span_id.to_bytes(8, "big"),
            parent_span_id=parent.to_bytes(8, "big") if parent else b"",
            name=name,
            kind=_KIND.get(kind, 1),  # type: ignore[arg-type]
            start_time_unix_nano=start,
            end_time_unix_nano=end,
            attributes=_attributes(attrs),
            events=[
                Span.Event(time_unix_nano=t, name=n, attributes=_attributes(a))
                for n, t, a in events
            ],
        )
        if status is not None:  # (code, message): 2 = ERROR
            span.status.CopyFrom(Status(code=status[0], message=status[1]))
        out.append(span)
    resource = Resource(attributes=_attributes({"service.name": service}))
    scope = ScopeSpans(scope=InstrumentationScope(name="heshi.gateway"), spans=out)
    request = ExportTraceServiceRequest(
        resource_spans=[ResourceSpans(resource=resource, scope_spans=[scope])]
    )
    return bytes(request.SerializeToString())


def post(endpoint: str, body: bytes, timeout: float) -> bool:
    """Send one request (one retry after a 429/5xx or a connection error)."""
    for attempt in range(2):
        request = urllib.request.Request(
            endpoint,
            data=body,
            headers={"Content-Type": "application/x-protobuf", "User-Agent": "heshi"},
            method="POST",
        )
        try:
            with urllib.request.urlopen(request, timeout=timeout) as response:
                response.read()
                return True
        except urllib.error.HTTPError as exc:
            if exc.code not in (429, 502, 503, 504) or attempt:
                log.warning("trace collector %s answered %s: spans dropped", endpoint, exc.code)
                return False
        except (OSError, ValueError) as exc:
            if attempt:
                log.warning("trace collector %s unreachable (%s): spans dropped", endpoint, exc)
                return False
    return False


def batches(fd: int, most: int = 2048) -> Any:
    """Span lists from the gateway, until end of input. Frames that have already arrived
    are sent together (up to ``most`` spans), so a busy gateway costs fewer requests."""
    buffer = bytearray()
    while True:
        chunk = os.read(fd, 1 << 16)
        if not chunk:
            return
        buffer += chunk
        spans: list[Any] = []
        while True:
            while len(buffer) >= 4:
                (size,) = struct.unpack_from("<I", buffer)
                if len(buffer) < 4 + size:
                    break
                spans += marshal.loads(bytes(buffer[4 : 4 + size]))
                del buffer[: 4 + size]
            if len(spans) >= most or not select.select([fd], [], [], 0)[0]:
                break
            chunk = os.read(fd, 1 << 16)
            if not chunk:
                break
            buffer += chunk
        if spans:
            yield spans


def main(argv: Sequence[str] | None = None) -> int:
    endpoint, service, timeout = (sys.argv[1:] if argv is None else list(argv))[:3]
    logging.basicConfig(
        level=logging.WARNING, format="%(asctime)s %(levelname)s %(name)s: %(message)s"
    )
    with contextlib.suppress(OSError):  # below the gateway: requests come before export
        os.nice(10)
    for spans in batches(sys.stdin.fileno()):
        try:
            post(endpoint, encode(spans, service), float(timeout))
        except Exception:  # a malformed span must not end tracing for the process
            log.warning("could not export a batch of spans:\n%s", traceback.format_exc())
    return 0


if __name__ == "__main__":
    sys.exit(main())
