"""The trace exporter: :class:`SpanSink`, the gateway's side, batches finished spans and
writes them to a child process of ``heshi serve`` (``tracing.enabled``, this module's
``main``) that turns them into OTLP/HTTP protobuf requests and posts them to
``tracing.endpoint``.

Encoding and sending run here, in a process of their own, so they never hold the
gateway's interpreter while a request waits (measured in benchmarks/scale.py). The
gateway writes frames on this process's stdin: a 4-byte little-endian length, then a
``marshal``-ed list of span tuples (``Span.end`` in :mod:`heshi.tracing`). End of input
(the gateway stopped or died) ends this process after the last frame is sent. It runs
at a lower CPU priority than the gateway (``nice`` 10).

Set by the gateway: ``HESHI_TRACE_ENDPOINT``, ``HESHI_TRACE_SERVICE``,
``HESHI_TRACE_TIMEOUT``, ``HESHI_LOG_FORMAT``. The OpenTelemetry variables an SDK exporter
reads are honoured too: ``OTEL_EXPORTER_OTLP_TRACES_HEADERS`` / ``OTEL_EXPORTER_OTLP_HEADERS``
(``key=value,…``, e.g. a collector's auth token), ``…_COMPRESSION=gzip`` and
``OTEL_RESOURCE_ATTRIBUTES``.
"""

from __future__ import annotations

import contextlib
import functools
import logging
import marshal
import os
import queue
import select
import signal
import struct
import subprocess
import sys
import threading
import time
import traceback
from collections.abc import Sequence
from typing import TYPE_CHECKING, Any, Literal

from heshi import otlp_wire
from heshi.tracing_post import Failures, Poster, pairs

if TYPE_CHECKING:
    from heshi.config import TracingConfig

log = logging.getLogger("heshi.tracing")
_KIND = {"server": 2, "client": 3}  # OTLP Span.SpanKind; anything else is INTERNAL (1)


class SpanSink:
    """Finished spans, batched and written to the exporter process by a writer thread.

    A batch is ``batch`` spans or whatever ``interval_s`` gathered; at most ``max_spans``
    wait (more are dropped and counted: a collector that is down must not grow memory).
    """

    def __init__(self, config: TracingConfig, log_format: str = "text") -> None:
        self.batch = config.export_batch_spans
        self.interval_s = config.export_interval_ms / 1000
        self.dropped = 0
        self._spans: list[tuple[Any, ...]] = []
        self._lock = threading.Lock()
        self._frames: queue.Queue[tuple[int, bytes] | None] = queue.Queue(
            maxsize=max(1, config.max_queue_spans // self.batch)
        )
        self._dead = False  # the exporter exited: spans are counted and dropped
        self._warned = -60.0
        # -P: nothing from the working directory on the child's path. Its own session: a
        # Ctrl-C or a signal to the gateway's process group does not stop it before the
        # gateway has handed over its last spans (it ends at the end of its input). The
        # endpoint and log format go in the environment, not on a command line ``ps``
        # shows (a URL may hold credentials).
        env = dict(os.environ)
        env.update(
            HESHI_TRACE_ENDPOINT=config.endpoint,
            HESHI_TRACE_SERVICE=config.service_name,
            HESHI_TRACE_TIMEOUT=str(config.export_timeout_s),
            HESHI_LOG_FORMAT=log_format,
        )
        self._child = subprocess.Popen(
            [sys.executable, "-P", "-m", "heshi.tracing_export"],
            stdin=subprocess.PIPE,
            close_fds=True,
            start_new_session=True,
            env=env,
        )
        self._writer = threading.Thread(target=self._write, name="heshi-trace-export", daemon=True)
        self._writer.start()

    def add(self, span: tuple[Any, ...]) -> None:
        with self._lock:
            self._spans.append(span)
            if len(self._spans) < self.batch:
                return
            full, self._spans = self._spans, []
        self._send(full)

    def _send(self, spans: list[tuple[Any, ...]]) -> None:
        if self._dead:
            self._drop(len(spans))
            return
        try:
            data = marshal.dumps(spans)
        except ValueError:  # a value marshal cannot hold: never fail a request for it
            self._drop(len(spans))
            return
        try:
            self._frames.put_nowait((len(spans), struct.pack("<I", len(data)) + data))
        except queue.Full:
            self._drop(len(spans))

    def _drop(self, count: int) -> None:
        with self._lock:
            self.dropped += count
            now = time.monotonic()
            if now - self._warned < 60:
                return
            self._warned = now
        log.warning(
            "追踪导出跟不上，已丢弃 %d 个 span / trace export is behind or stopped: %d spans "
            "dropped so far",
            self.dropped,
            self.dropped,
        )

    def _flush(self) -> None:
        with self._lock:
            spans, self._spans = self._spans, []
        if spans:
            self._send(spans)

    def _write(self) -> None:
        stdin = self._child.stdin
        assert stdin is not None
        while True:
            try:
                frame = self._frames.get(timeout=self.interval_s)
            except queue.Empty:
                self._flush()  # a quiet gateway's spans still leave within the interval
                continue
            if frame is None:
                break
            try:
                stdin.write(frame[1])
                stdin.flush()
            except (BrokenPipeError, ValueError, OSError):
                self._exporter_died(frame[0])
                return
        with contextlib.suppress(OSError):
            stdin.close()

    def _exporter_died(self, lost: int) -> None:
        self._dead = True
        if self._child.stdin is not None:
            with contextlib.suppress(OSError):
                self._child.stdin.close()
        self._child.wait()  # reaped, not left a zombie
        log.warning(
            "追踪导出进程已退出（%s），此后的 span 将被丢弃 / the trace exporter process exited "
            "(status %s): spans are dropped from now on",
            self._child.returncode,
            self._child.returncode,
        )
        self._drop(lost + self._drain())

    def _drain(self) -> int:
        """Spans in frames nobody will send now."""
        count = 0
        with contextlib.suppress(queue.Empty):
            while True:
                frame = self._frames.get_nowait()
                count += frame[0] if frame is not None else 0
        return count

    def close(self, wait_s: float) -> bool:
        """Send what is held, end the exporter; True when it finished within ``wait_s``."""
        self._flush()
        deadline = time.monotonic() + wait_s
        if self._dead or not self._writer.is_alive():
            self._drop(self._drain())
            return False
        with contextlib.suppress(queue.Full):
            self._frames.put(None, timeout=wait_s)
        self._writer.join(max(0.0, deadline - time.monotonic()))
        try:
            self._child.wait(max(0.01, deadline - time.monotonic()))
            return not self._writer.is_alive()
        except subprocess.TimeoutExpired:
            self._child.kill()
            self._child.wait()
            return False


# ---------------------------------------------------------------- the exporter process


def encode(spans: Sequence[tuple[Any, ...]], service: str) -> bytes:
    """An ``ExportTraceServiceRequest`` of ``spans`` from service ``service`` (with
    ``OTEL_RESOURCE_ATTRIBUTES``; ``service.name`` is ``service``). A span that cannot be
    written (a malformed record) is left out and logged, not the whole batch."""
    out = []
    for record in spans:
        try:
            out.append(otlp_wire.span(record, _KIND))
        except Exception as exc:  # one bad span must not cost the batch
            MALFORMED.note(f"{type(exc).__name__}: {exc}"[:200])
    resource = _resource(service, os.environ.get("OTEL_RESOURCE_ATTRIBUTES", ""))
    return otlp_wire.export_request(out, resource, "heshi.gateway")


@functools.cache
def _resource(service: str, described: str) -> dict[str, str]:
    """The resource's attributes (``OTEL_RESOURCE_ATTRIBUTES``, then ``service.name``),
    read once per value rather than for every batch."""
    return pairs(described) | {"service.name": service}


MALFORMED = Failures(
    "span 无法编码，已略去 / a span could not be encoded and was left out (%s); %d so far"
)


def batches(fd: int, most: int = 2048, linger: float = 0.0) -> Any:
    """Span lists from the gateway, until end of input: the frames that have arrived,
    together (up to ``most`` spans), plus what arrives within ``linger`` seconds.

    ``linger`` is 0 in the exporter: waiting 200 ms to send a few thousand spans at once
    made bursts of encoding that raised the gateway's p99 on a 2-core machine
    (benchmarks/scale.py: +0.84 ms against +0.27 / +0.28 ms without)."""
    buffer = bytearray()
    spans: list[Any] = []
    deadline = 0.0
    ended = False
    while True:
        while len(buffer) >= 4 and len(spans) < most:  # the complete frames, in order
            (size,) = struct.unpack_from("<I", buffer)
            if len(buffer) < 4 + size:
                break
            if not spans:
                deadline = time.monotonic() + linger
            spans += marshal.loads(bytes(buffer[4 : 4 + size]))
            del buffer[: 4 + size]
        if spans and not ended and len(spans) < most and select.select([fd], [], [], 0)[0]:
            chunk = os.read(fd, 1 << 16)  # more has arrived already: it goes along
            buffer += chunk
            ended = not chunk
            continue
        if spans and (ended or len(spans) >= most or time.monotonic() >= deadline):
            yield spans
            spans = []
            continue
        if ended:  # end of input: everything has gone, this process ends
            return
        wait = max(0.0, deadline - time.monotonic()) if spans else None
        if select.select([fd], [], [], wait)[0]:
            chunk = os.read(fd, 1 << 16)
            buffer += chunk
            ended = not chunk


def main() -> int:
    """Export what the gateway (:class:`SpanSink`) writes on stdin; settings from the
    environment it sets."""
    env = os.environ
    endpoint = env["HESHI_TRACE_ENDPOINT"]
    service = env.get("HESHI_TRACE_SERVICE", "heshi")
    timeout = env.get("HESHI_TRACE_TIMEOUT", "5")
    from heshi.logs import configure_logging

    fmt: Literal["text", "json"] = "json" if env.get("HESHI_LOG_FORMAT") == "json" else "text"
    configure_logging("warning", fmt)  # the gateway's format, on its stderr
    # The gateway ends this process by closing its input, after its last spans: a
    # Ctrl-C or SIGTERM meant for the gateway must not cut the hand-over short.
    for sig in (signal.SIGINT, signal.SIGTERM):
        signal.signal(sig, signal.SIG_IGN)
    with contextlib.suppress(OSError):  # below the gateway: requests come before export
        os.nice(10)
    poster = Poster(endpoint, float(timeout))
    for spans in batches(sys.stdin.fileno()):
        try:
            poster.post(encode(spans, service))
        except Exception:  # a malformed span must not end tracing for the process
            log.warning("could not export a batch of spans:\n%s", traceback.format_exc())
    poster.close()
    return 0


if __name__ == "__main__":
    sys.exit(main())
