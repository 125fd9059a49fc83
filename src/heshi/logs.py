"""The process's log output: plain text, or one JSON object a line (``--log-format json``,
``server.log_format``) for a log collector.

A JSON line carries ``ts`` (RFC 3339, UTC, milliseconds), ``level``, ``logger`` and
``msg``; then, when known, ``request_id``, ``trace_id`` and ``span_id`` (the current
OpenTelemetry span's, else the ones a ``req_<trace id>_<span id>`` request id carries),
``exc`` (the traceback) and whatever ``extra=`` fields the caller passed. uvicorn's own
loggers write through the same handler, so one process writes one format.

Secrets never reach the log: ``Bearer <token>`` and Heshi / OpenAI-style keys (``hs-…``,
``hsa-…``, ``sk-…``) in a message, a traceback or a field are masked, in both formats.
"""

from __future__ import annotations

import json
import logging
import math
import re
import sys
import time
from typing import Any, Literal

LogFormat = Literal["text", "json"]

TEXT_FORMAT = "%(asctime)s %(levelname)s %(name)s: %(message)s"
UVICORN_LOGGERS = ("uvicorn", "uvicorn.error", "uvicorn.access", "uvicorn.asgi")

# "Authorization: Bearer <token>" as a client or a backend may echo it
_BEARER = re.compile(r"(?i)\b(bearer)\s+[A-Za-z0-9._~+/=-]+")
# API keys: Heshi's hs-<43 chars> (store/keys.py), admin tokens hsa-<43 chars>
# (admin/tokens.py), OpenAI / DashScope-style sk-… (sk-proj-…). The 12-character prefix a
# key listing shows (hs- and 9 more) is not a secret and stays readable.
_KEY = re.compile(r"(?<![A-Za-z0-9_-])(hsa|hs|sk)-[A-Za-z0-9_-]{16,}")
# tracing.py's request id: req_<32 hex trace id>_<16 hex span id>
_TRACED_ID = re.compile(r"req_([0-9a-f]{32})_([0-9a-f]{16})")
# what every LogRecord has; anything else on a record came from ``extra=``
_STANDARD = frozenset(logging.LogRecord("", 0, "", 0, "", None, None).__dict__) | {
    "message",
    "asctime",
    "taskName",
    "color_message",  # uvicorn's coloured copy of the message
}
_CORE = ("ts", "level", "logger", "msg")


def redact(text: str) -> str:
    """``text`` with bearer tokens and API keys masked (``Bearer ***``, ``hs-***``)."""
    return _KEY.sub(r"\1-***", _BEARER.sub(r"\1 ***", text))


class JsonFormatter(logging.Formatter):
    """One JSON object a line; non-ASCII text (Chinese) written as itself."""

    def format(self, record: logging.LogRecord) -> str:
        out: dict[str, Any] = {
            "ts": _timestamp(record),
            "level": record.levelname,
            "logger": record.name,
            "msg": redact(record.getMessage()),
        }
        for key, value in record.__dict__.items():
            if key not in _STANDARD and key not in _CORE and not key.startswith("_"):
                out[key] = _field(value)
        for key, value in _trace_ids(out.get("request_id")).items():
            out.setdefault(key, value)
        if record.exc_info:
            record.exc_text = record.exc_text or self.formatException(record.exc_info)
        if record.exc_text:
            out["exc"] = redact(record.exc_text)
        if record.stack_info:
            out["stack"] = redact(self.formatStack(record.stack_info))
        return json.dumps(out, ensure_ascii=False, default=str)


class RedactingFormatter(logging.Formatter):
    """The text format, with the same secrets masked."""

    def format(self, record: logging.LogRecord) -> str:
        return redact(super().format(record))


_FORMAT: list[LogFormat] = ["text"]  # what configure_logging set in this process


def json_logs() -> bool:
    """Whether this process logs JSON (native libraries then keep their own lines off
    stderr)."""
    return _FORMAT[0] == "json"


def configure_logging(level: str, fmt: LogFormat) -> logging.Handler:
    """Make one stderr handler in ``fmt`` the root logger's only one, at ``level``.

    With ``json``, uvicorn's loggers lose their own handlers and write through this one
    (start uvicorn with ``log_config=None`` so it does not install them again), and
    Python's warnings are logged too. Returns the handler.
    """
    _FORMAT[0] = fmt
    handler = logging.StreamHandler(sys.stderr)
    handler.setFormatter(JsonFormatter() if fmt == "json" else RedactingFormatter(TEXT_FORMAT))
    root = logging.getLogger()
    for old in list(root.handlers):
        root.removeHandler(old)
    root.addHandler(handler)
    root.setLevel(level.upper())
    if fmt == "json":
        for name in UVICORN_LOGGERS:
            logger = logging.getLogger(name)
            logger.handlers.clear()
            logger.propagate = True
        logging.captureWarnings(True)
    return handler


def _timestamp(record: logging.LogRecord) -> str:
    seconds = time.strftime("%Y-%m-%dT%H:%M:%S", time.gmtime(record.created))
    return f"{seconds}.{int(record.msecs):03d}Z"


def _field(value: Any) -> Any:
    """``value`` as JSON can hold it: kept when it is JSON already, else its ``str``;
    strings redacted."""
    if isinstance(value, str):
        return redact(value)
    if value is None or isinstance(value, bool | int):
        return value
    if isinstance(value, float):
        return value if math.isfinite(value) else str(value)
    if isinstance(value, dict):
        return {str(k): _field(v) for k, v in value.items()}
    if isinstance(value, list | tuple):
        return [_field(v) for v in value]
    return redact(str(value))


def _trace_ids(request_id: Any) -> dict[str, str]:
    """The trace and span ids of the span current where the line is logged (a stage, a
    routing attempt), else those a traced request id carries; none otherwise.

    ``heshi.tracing`` is looked up, not imported: the gateway has it when it traces.
    """
    tracing = sys.modules.get("heshi.tracing")
    span = tracing.current_span() if tracing is not None else None
    if span is not None:
        return {"trace_id": f"{span.trace_id:032x}", "span_id": f"{span.span_id:016x}"}
    if isinstance(request_id, str):
        match = _TRACED_ID.fullmatch(request_id)
        if match:
            return {"trace_id": match.group(1), "span_id": match.group(2)}
    return {}
