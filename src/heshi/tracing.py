"""Traces of the request path (``tracing.enabled``; off by default), in OpenTelemetry's
model and wire format (OTLP/HTTP).

One trace a request: a ``heshi.request`` span from the moment the gateway reads it to the
moment it is recorded, and a child span per pipeline stage — ``admission``, ``guard.in``
(and ``guard.out``, ``label`` on the way back), ``generate`` (from the call
to the last chunk, with a ``first_token`` event), one ``route.attempt`` per backend tried
(retries and fallbacks included, with the backend and the outcome), and ``record``
(ledger, settlement, audit). The request id carries the trace id (``x-request-id:
req_<trace id>_<span id>``), so a failure's log line or a ledger row leads to its trace;
a W3C ``traceparent`` the client sends is continued, and the attempt's own is sent on to
remote backends.

Spans are recorded here without the OpenTelemetry SDK (a few microseconds each, where
the SDK took about 20) and handed in batches to a child process
(``heshi.tracing_export``) that encodes them (``heshi.otlp_wire``: protobuf written
directly, no OpenTelemetry package needed) and posts them: the gateway's interpreter is
never held for an export while requests wait. Sampling follows the SDK's
``ParentBased(TraceIdRatioBased)``: a trace is kept when its id falls under
``sample_ratio``, a client's unsampled ``traceparent`` is respected, and its sampled
flag does not override the ratio. Disabled, every call here is a cheap no-op and no
OpenTelemetry module is imported.
"""

from __future__ import annotations

import contextlib
import contextvars
import logging
import random
import re
import time
import traceback
from collections.abc import Iterator, Mapping, MutableMapping
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from heshi.config import TracingConfig
    from heshi.gateway.exchange import Exchange
    from heshi.tracing_export import SpanSink

log = logging.getLogger("heshi.gateway")

_UNTRACED = contextlib.nullcontext()  # reusable: what stage() and attempt() give untraced
_CURRENT: contextvars.ContextVar[Span | None] = contextvars.ContextVar("heshi_span", default=None)
# W3C trace context: version 00 has exactly four fields; a later version may add more
_TRACEPARENT = re.compile(
    r"^[ \t]*([0-9a-f]{2})-([0-9a-f]{32})-([0-9a-f]{16})-([0-9a-f]{2})(-.*)?[ \t]*$"
)
_TRACESTATE_MAX = 512  # bytes of a client's tracestate passed on (the spec's limit)
_ERROR = 2  # OTLP Status.code ERROR
_BOUND = 1 << 64


class Span:
    """One span; ``sink`` is None when the trace is not sampled (ids only, for
    propagation)."""

    __slots__ = ("attributes", "end_ns", "events", "kind", "name", "parent_id", "sink",
                 "span_id", "start_ns", "state", "status", "trace_id")  # fmt: skip

    def __init__(
        self, name: str, trace_id: int, parent_id: int, sink: SpanSink | None, kind: str = ""
    ) -> None:
        self.name = name
        self.trace_id = trace_id
        self.span_id = random.getrandbits(64) or 1
        self.parent_id = parent_id
        self.sink = sink
        self.kind = kind
        self.start_ns = time.time_ns()
        self.end_ns = 0
        self.attributes: dict[str, Any] = {}
        self.events: list[tuple[str, int, dict[str, Any] | None]] = []
        self.status: tuple[int, str] | None = None
        self.state = ""  # the W3C tracestate a client sent, passed on unchanged

    @property
    def sampled(self) -> bool:
        return self.sink is not None

    def child(self, name: str, kind: str = "") -> Span:
        span = Span(name, self.trace_id, self.span_id, self.sink, kind)
        span.state = self.state
        return span

    def set_attributes(self, attributes: Mapping[str, Any]) -> None:
        """Values kept as OTLP can carry them: bool, int, float, str (anything else as
        its ``str``; None left out), so every span can be sent."""
        if self.sink is None:
            return
        for key, value in attributes.items():
            if value is None:
                continue
            kind = type(value)
            self.attributes[key] = value if kind in (bool, int, float, str) else str(value)

    def add_event(self, name: str, attributes: dict[str, Any] | None = None) -> None:
        if self.sink is not None:
            self.events.append((name, time.time_ns(), attributes))

    def record_exception(self, error: BaseException) -> None:
        if self.sink is None:
            return
        stack = "".join(traceback.format_exception(type(error), error, error.__traceback__))
        attributes = {
            "exception.type": type(error).__name__,
            "exception.message": str(error),
            "exception.stacktrace": stack,
        }
        self.events.append(("exception", time.time_ns(), attributes))

    def fail(self, error: BaseException, description: str | None = None) -> None:
        """Record ``error`` and mark the span failed (by default with its type's name)."""
        self.record_exception(error)
        self.set_error(description or type(error).__name__)

    def set_error(self, description: str) -> None:
        self.status = (_ERROR, description)

    def end(self) -> None:
        if self.end_ns or self.sink is None:
            return
        self.end_ns = time.time_ns()
        self.sink.add(
            (self.trace_id, self.span_id, self.parent_id, self.name, self.kind,
             self.start_ns, self.end_ns, self.attributes, self.events, self.status)
        )  # fmt: skip

    def traceparent(self) -> str:
        flags = "01" if self.sink is not None else "00"
        return f"00-{self.trace_id:032x}-{self.span_id:016x}-{flags}"


class Tracing:
    """The gateway's tracer; :meth:`disabled` when ``tracing.enabled`` is false."""

    def __init__(self, sink: SpanSink | None = None, ratio: float = 1.0) -> None:
        self._sink = sink
        self._threshold = int(ratio * _BOUND)

    @classmethod
    def disabled(cls) -> Tracing:
        return cls()

    @classmethod
    def from_config(cls, config: TracingConfig, log_format: str = "text") -> Tracing:
        if not config.enabled:
            return cls.disabled()
        from heshi.tracing_export import SpanSink

        return cls(SpanSink(config, log_format), config.sample_ratio)

    @property
    def dropped(self) -> int:
        """Spans dropped because the exporter fell behind."""
        return self._sink.dropped if self._sink is not None else 0

    def shutdown(self, wait_s: float = 5.0) -> None:
        """Export what is held and stop, waiting at most ``wait_s``: a collector that is
        down must not hold the gateway's shutdown."""
        if self._sink is not None and not self._sink.close(wait_s):
            log.warning("trace export did not finish in %.0f s: the last spans are dropped", wait_s)

    # ------------------------------------------------------------------ a request

    def start(self, x: Exchange, headers: Mapping[str, str]) -> None:
        """Open the request's span (continuing a client's ``traceparent``) and make the
        request id the trace id."""
        if self._sink is None:
            return
        trace_id, parent, sampled = 0, 0, True
        match = _TRACEPARENT.match(headers.get("traceparent", ""))
        if match and (match.group(1) == "ff" or (match.group(1) == "00" and match.group(5))):
            match = None  # version ff is invalid, and version 00 has no fifth field
        if match:  # ids of zero are invalid too
            remote, remote_parent = int(match.group(2), 16), int(match.group(3), 16)
            if remote and remote_parent:
                trace_id, parent = remote, remote_parent
                sampled = int(match.group(4), 16) & 1 == 1  # a client's "not sampled" holds
        trace_id = trace_id or (random.getrandbits(128) or 1)
        keep = sampled and (trace_id & (_BOUND - 1)) < self._threshold
        span = Span("heshi.request", trace_id, parent, self._sink if keep else None, "server")
        state = headers.get("tracestate", "") if parent else ""  # with the client's trace
        span.state = state if len(state) <= _TRACESTATE_MAX else ""
        span.set_attributes({"heshi.endpoint": x.endpoint})
        x.span = span
        # The trace id alone would let a client choose the ledger's key (a traceparent
        # repeated on every call of one trace): Heshi's own span id keeps it unique.
        x.request_id = f"req_{trace_id:032x}_{span.span_id:016x}"

    def stage(
        self, x: Exchange, name: str | None, **attributes: Any
    ) -> contextlib.AbstractContextManager[Any]:
        """A child span of ``x``'s request, current while the block runs (so routing
        attempts and outgoing calls inside nest under it); none when ``name`` is None.
        Untraced, a shared no-op (every request passes several stages)."""
        if self._sink is None or x.span is None or name is None:
            return _UNTRACED
        span = x.span.child(name)
        span.set_attributes(attributes)
        return _ending(span)

    def open(self, x: Exchange, name: str) -> Any:
        """A child span that outlives the block it starts in (a stream's ``generate``):
        the caller ends it with :meth:`close`."""
        if self._sink is None or x.span is None:
            return None
        return x.span.child(name)

    @contextlib.contextmanager
    def current(self, span: Any) -> Iterator[None]:
        """Make ``span`` (from :meth:`open`) the current one while the block runs."""
        if span is None:
            yield
            return
        token = _CURRENT.set(span)
        try:
            yield
        finally:
            _CURRENT.reset(token)

    @staticmethod
    def event(span: Any, name: str) -> None:
        if span is not None:
            span.add_event(name)

    @staticmethod
    def failed(span: Any, error: BaseException) -> None:
        """Mark ``span`` failed with ``error`` (it still ends where it was opened)."""
        if span is not None:
            span.fail(error)

    @staticmethod
    def close(span: Any, error: BaseException | None = None) -> None:
        if span is None:
            return
        if error is not None:
            span.fail(error)
        span.end()

    def attempt(self, backend: str, number: int) -> contextlib.AbstractContextManager[Any]:
        """One routing attempt, under whatever span is current (``generate``)."""
        parent = _CURRENT.get()
        if self._sink is None or parent is None:
            return _UNTRACED
        span = parent.child("route.attempt", "client")
        span.set_attributes({"heshi.backend": backend, "heshi.attempt": number})
        return _ending(span)

    def finish(self, x: Exchange) -> None:
        """End the request's span with what became of it."""
        span, x.span = x.span, None
        if span is None:
            return
        span.set_attributes(
            {
                "heshi.model": x.model,
                "heshi.tenant": x.tenant,
                "heshi.backend": x.route.backend or "-",
                "heshi.reason": x.reason,
                "http.response.status_code": x.status,
                "heshi.prompt_tokens": x.usage.prompt_tokens,
                "heshi.completion_tokens": x.usage.completion_tokens,
            }
        )
        if x.status >= 500:
            span.set_error(x.reason)
        span.end()


class _ending:
    """``span`` current while the block runs, failed if it raises, ended after (a class:
    a generator-based context manager cost a few microseconds more per stage)."""

    __slots__ = ("span", "token")

    def __init__(self, span: Span) -> None:
        self.span = span

    def __enter__(self) -> Span:
        self.token = _CURRENT.set(self.span)
        return self.span

    def __exit__(self, kind: Any, error: BaseException | None, tb: Any) -> None:
        span = self.span
        try:
            if isinstance(error, Exception):
                span.fail(error, f"{type(error).__name__}: {error}")
        finally:  # even when the error cannot be described (its str() raises)
            _CURRENT.reset(self.token)
            span.end()


def inject(headers: MutableMapping[str, str]) -> None:
    """Add the current span's W3C ``traceparent`` to outgoing ``headers`` (nothing when
    tracing is off or no span is current)."""
    span = _CURRENT.get()  # only ever set while a request is traced
    if span is not None:
        headers["traceparent"] = span.traceparent()
        if span.state:
            headers["tracestate"] = span.state


def current_span() -> Span | None:
    """The span current in this context (log lines carry its ids), or None."""
    return _CURRENT.get()
