"""How the trace exporter process (:mod:`heshi.tracing_export`) sends an export request:
over one HTTP/1.1 connection kept open between batches, as OpenTelemetry's own
exporters do, instead of a new connection (and a new thread in many collectors) for
every batch. With ``HTTP(S)_PROXY`` set for the endpoint (and ``NO_PROXY`` not sparing
it) the request goes through ``urllib`` and the proxy, a connection each time.

The collector's answer decides: 2xx sent; 429, 502, 503 or 504 (or a connection error)
tried once more, on a new connection; anything else dropped and counted, so a batch is
sent at most twice. A
kept connection is looked at before it carries a batch: one the collector has closed (or
that holds bytes nobody asked for), or that has been idle longer than a load balancer or
NAT may keep it, is replaced by a new one before anything is sent on it.
"""

from __future__ import annotations

import functools
import gzip
import http.client
import logging
import os
import select
import time
import urllib.error
import urllib.parse
import urllib.request

log = logging.getLogger("heshi.tracing")
_RETRIED = (429, 502, 503, 504)
_ANSWER_MOST = 1 << 16  # bytes of a collector's answer read (an OTLP answer is a few)
_IDLE_MOST_S = 30.0  # a connection idle longer is not reused (balancers drop them at 60 s)


def pairs(text: str) -> dict[str, str]:
    """``key=value,key2=value2`` (values URL-encoded), as OTEL_* variables hold them."""
    out = {}
    for item in text.split(","):
        key, sep, value = item.partition("=")
        if sep and key.strip():
            out[urllib.parse.unquote(key.strip())] = urllib.parse.unquote(value.strip())
    return out


def _otel(name: str) -> str:
    """``OTEL_EXPORTER_OTLP_TRACES_<name>``, else ``OTEL_EXPORTER_OTLP_<name>``."""
    return os.environ.get(
        f"OTEL_EXPORTER_OTLP_TRACES_{name}", os.environ.get(f"OTEL_EXPORTER_OTLP_{name}", "")
    )


@functools.cache
def request_headers() -> tuple[dict[str, str], bool]:
    """The export request's headers (``OTEL_…_HEADERS`` included) and whether the body
    is gzipped (``OTEL_…_COMPRESSION``): read once, as an SDK exporter reads them."""
    headers = {"Content-Type": "application/x-protobuf", "User-Agent": "heshi"}
    headers |= pairs(_otel("HEADERS"))
    gzipped = _otel("COMPRESSION").strip().lower() == "gzip"
    if gzipped:
        headers["Content-Encoding"] = "gzip"
    return headers, gzipped


class Failures:
    """Export failures, logged at most once a minute with how many there were."""

    def __init__(
        self, message: str = "追踪导出失败 / trace export failed (%s); %d batch(es) dropped so far"
    ) -> None:
        self.message = message
        self.count = 0
        self.last = -60.0

    def note(self, what: str) -> None:
        self.count += 1
        now = time.monotonic()
        if now - self.last >= 60:
            self.last = now
            log.warning(self.message, what, self.count)


FAILURES = Failures()


class Poster:
    """Export requests to one endpoint (``http://`` or ``https://``), on a kept connection."""

    def __init__(self, endpoint: str, timeout: float) -> None:
        url = urllib.parse.urlsplit(endpoint)
        if url.scheme.lower() not in ("http", "https") or not url.hostname:
            raise ValueError(f"not an http(s) URL: {endpoint!r}")
        self.endpoint = endpoint
        self.timeout = timeout
        self.target = (url.path or "/") + (f"?{url.query}" if url.query else "")
        # an IPv6 zone (fe80::1%25eth0) is written escaped in a URL, bare on a socket
        self._host, self._port = urllib.parse.unquote(url.hostname), url.port
        self._tls = url.scheme.lower() == "https"
        proxy = urllib.request.getproxies().get(url.scheme.lower())
        self.proxied = bool(proxy) and not urllib.request.proxy_bypass(url.netloc)
        self._conn: http.client.HTTPConnection | None = None
        self._idle_since = 0.0
        self.connections = 0  # opened so far (a kept connection shows as one)

    def close(self) -> None:
        if self._conn is not None:
            self._conn.close()
            self._conn = None

    def post(self, body: bytes) -> bool:
        """Send one export request; True when the collector took it."""
        headers, gzipped = request_headers()
        if gzipped:
            body = gzip.compress(body)
        send = self._urllib if self.proxied else self._kept
        for attempt in range(2):
            try:
                status = send(body, headers)
            except (OSError, ValueError, http.client.HTTPException) as exc:
                self.close()
                if attempt:
                    FAILURES.note(f"the collector is unreachable: {type(exc).__name__}")
                    return False
                continue
            if 200 <= status < 300:
                return True
            if status not in _RETRIED or attempt:
                FAILURES.note(f"the collector answered {status}")
                return False
            self.close()  # the retry on a new connection: a busy collector may be closing this
        return False

    def _usable(self) -> bool:
        """Whether the kept connection can carry a batch: still open at the other end
        (nothing to read on an idle HTTP connection but its end), and not idle so long
        that something in between may have dropped it without a word."""
        sock = self._conn.sock if self._conn is not None else None
        if sock is None or time.monotonic() - self._idle_since > _IDLE_MOST_S:
            return False
        try:
            return not select.select([sock], [], [], 0)[0]
        except (OSError, ValueError):
            return False

    def _kept(self, body: bytes, headers: dict[str, str]) -> int:
        if self._conn is not None and not self._usable():
            self.close()  # before anything is sent on it: no batch goes out twice for this
        if self._conn is None:
            kind = http.client.HTTPSConnection if self._tls else http.client.HTTPConnection
            self._conn = kind(self._host, self._port, timeout=self.timeout)
            self.connections += 1
        self._conn.request("POST", self.target, body=body, headers=headers)
        response = self._conn.getresponse()
        response.read(_ANSWER_MOST)  # the answer, so the connection can carry the next
        if response.status < 200 or response.will_close or not response.isclosed():
            # an interim answer (103) leaves the real one on the line, and an answer
            # longer than a collector's is not read into memory: the connection goes
            self.close()
        self._idle_since = time.monotonic()
        return response.status

    def _urllib(self, body: bytes, headers: dict[str, str]) -> int:
        request = urllib.request.Request(self.endpoint, data=body, headers=headers, method="POST")
        try:
            with urllib.request.urlopen(request, timeout=self.timeout) as response:
                response.read(_ANSWER_MOST)
                return int(response.status)
        except urllib.error.HTTPError as exc:
            return exc.code
