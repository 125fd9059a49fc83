"""OpenTelemetry traces of the request path (``tracing.enabled``; off by default).

One trace a request: a ``heshi.request`` span from the moment the gateway reads it to the
moment it is recorded, and a child span per pipeline stage — ``admission``, ``guard.in``
(and ``guard.out``, ``label`` on the way back), ``generate`` (from the call
to the last chunk, with a ``first_token`` event), one ``route.attempt`` per backend tried
(retries and fallbacks included, with the backend and the outcome), and ``record``
(ledger, settlement, audit). The request id carries the trace id (``x-request-id:
req_<trace id>_<span id>``), so a failure's log line or a ledger row leads to its trace;
a W3C ``traceparent`` the client sends is continued, and the attempt's own is sent on to
remote backends.

Spans are batched and exported over OTLP/HTTP (``tracing.endpoint``) from a background
thread. Disabled, every call here is a cheap no-op and no OpenTelemetry module is
imported.
"""

from __future__ import annotations

import contextlib
import logging
import threading
from collections.abc import Iterator, Mapping, MutableMapping
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from heshi.config import TracingConfig
    from heshi.gateway.exchange import Exchange

log = logging.getLogger("heshi.gateway")

# Set once a tracer exists in this process: outgoing calls then carry ``traceparent``
_EXPORTING = threading.Event()


class Tracing:
    """The gateway's tracer; :meth:`disabled` when ``tracing.enabled`` is false."""

    def __init__(self, tracer: Any = None, provider: Any = None) -> None:
        self._tracer = tracer
        self._provider = provider

    @classmethod
    def disabled(cls) -> Tracing:
        return cls()

    @classmethod
    def from_config(cls, config: TracingConfig) -> Tracing:
        if not config.enabled:
            return cls.disabled()
        try:
            from opentelemetry.exporter.otlp.proto.http.trace_exporter import OTLPSpanExporter
            from opentelemetry.sdk.resources import Resource
            from opentelemetry.sdk.trace import TracerProvider
            from opentelemetry.sdk.trace.export import BatchSpanProcessor
            from opentelemetry.sdk.trace.sampling import ParentBased, TraceIdRatioBased
        except ImportError as exc:
            from heshi.errors import ConfigError

            raise ConfigError(
                "tracing.enabled 需要 OpenTelemetry：pip install 'heshi[otel]' / tracing "
                f"needs OpenTelemetry: pip install 'heshi[otel]' ({exc})"
            ) from exc
        provider = TracerProvider(
            resource=Resource.create({"service.name": config.service_name}),
            # a client's "sampled" flag does not decide: the ratio does, for every trace
            sampler=ParentBased(
                TraceIdRatioBased(config.sample_ratio),
                remote_parent_sampled=TraceIdRatioBased(config.sample_ratio),
            ),
        )
        exporter = OTLPSpanExporter(endpoint=config.endpoint, timeout=config.export_timeout_s)
        # Small batches often: each export holds the interpreter while it encodes, so a
        # big batch is a pause every request in flight waits through.
        provider.add_span_processor(
            BatchSpanProcessor(
                exporter,
                max_queue_size=config.max_queue_spans,
                max_export_batch_size=config.export_batch_spans,
                schedule_delay_millis=config.export_interval_ms,
            )
        )
        _EXPORTING.set()
        return cls(provider.get_tracer("heshi.gateway"), provider)

    @property
    def enabled(self) -> bool:
        return self._tracer is not None

    def shutdown(self, wait_s: float = 5.0) -> None:
        """Export what is queued and stop, waiting at most ``wait_s``: a collector that is
        down must not hold the gateway's shutdown (the SDK itself waits up to 30 s)."""
        if self._provider is None:
            return
        worker = threading.Thread(target=self._provider.shutdown, daemon=True)
        worker.start()
        worker.join(wait_s)
        if worker.is_alive():
            log.warning("trace export did not finish in %.0f s: the last spans are dropped", wait_s)

    # ------------------------------------------------------------------ a request

    def start(self, x: Exchange, headers: Mapping[str, str]) -> None:
        """Open the request's span (continuing a client's ``traceparent``) and make the
        request id the trace id."""
        if self._tracer is None:
            return
        from opentelemetry.propagate import extract

        parent = extract(dict(headers)) if "traceparent" in headers else None
        span = self._tracer.start_span(
            "heshi.request", context=parent, attributes={"heshi.endpoint": x.endpoint}
        )
        x.span = span
        context = span.get_span_context()
        if context.trace_id:
            # The trace id alone would let a client choose the ledger's key (a traceparent
            # repeated on every call of one trace): Heshi's own span id keeps it unique.
            x.request_id = f"req_{context.trace_id:032x}_{context.span_id:016x}"

    @contextlib.contextmanager
    def stage(self, x: Exchange, name: str | None, **attributes: Any) -> Iterator[Any]:
        """A child span of ``x``'s request, current while the block runs (so routing
        attempts and outgoing calls inside nest under it); none when ``name`` is None."""
        if self._tracer is None or x.span is None or name is None:
            yield None
            return
        from opentelemetry import trace

        context = trace.set_span_in_context(x.span)
        with self._tracer.start_as_current_span(
            name, context=context, attributes=attributes
        ) as span:
            yield span

    def open(self, x: Exchange, name: str) -> Any:
        """A child span that outlives the block it starts in (a stream's ``generate``):
        the caller ends it with :meth:`close`."""
        if self._tracer is None or x.span is None:
            return None
        from opentelemetry import trace

        return self._tracer.start_span(name, context=trace.set_span_in_context(x.span))

    @contextlib.contextmanager
    def current(self, span: Any) -> Iterator[None]:
        """Make ``span`` (from :meth:`open`) the current one while the block runs."""
        if span is None:
            yield
            return
        from opentelemetry import trace

        with trace.use_span(span, end_on_exit=False):
            yield

    @staticmethod
    def event(span: Any, name: str) -> None:
        if span is not None:
            span.add_event(name)

    @staticmethod
    def failed(span: Any, error: BaseException) -> None:
        """Mark ``span`` failed with ``error`` (it still ends where it was opened)."""
        if span is not None:
            span.record_exception(error)
            _failed(span, error)

    @staticmethod
    def close(span: Any, error: BaseException | None = None) -> None:
        if span is None:
            return
        if error is not None:
            span.record_exception(error)
            _failed(span, error)
        span.end()

    @contextlib.contextmanager
    def attempt(self, backend: str, number: int) -> Iterator[Any]:
        """One routing attempt, under whatever span is current (``generate``)."""
        if self._tracer is None:
            yield None
            return
        attributes = {"heshi.backend": backend, "heshi.attempt": number}
        with self._tracer.start_as_current_span("route.attempt", attributes=attributes) as span:
            yield span

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
            from opentelemetry.trace import Status, StatusCode

            span.set_status(Status(StatusCode.ERROR, x.reason))
        span.end()


def _failed(span: Any, error: BaseException) -> None:
    from opentelemetry.trace import Status, StatusCode

    span.set_status(Status(StatusCode.ERROR, type(error).__name__))


def inject(headers: MutableMapping[str, str]) -> None:
    """Add the current span's W3C ``traceparent`` to outgoing ``headers`` (nothing when
    tracing is off or no span is current)."""
    if not _EXPORTING.is_set():
        return
    from opentelemetry.propagate import inject as otel_inject

    otel_inject(headers)
