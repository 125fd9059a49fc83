"""OTLP's ``ExportTraceServiceRequest`` written straight to protobuf's wire format.

The trace exporter (:mod:`heshi.tracing_export`) spent 30–47 µs of CPU per span building
``opentelemetry-proto`` message objects and serializing them (upb backend); on a 2-core
machine that CPU is taken from the gateway. The handful of messages a span needs are
written here directly, about 10 µs per span (docs/benchmarks.md), with no dependency.

Field numbers are those of ``opentelemetry/proto/trace/v1/trace.proto``,
``common/v1/common.proto``, ``resource/v1/resource.proto`` and
``collector/trace/v1/trace_service.proto`` (OTLP 1.x). Fields are written in field-number
order and proto3 defaults are left out, as protobuf's own serializers do; the tests
compare the bytes with those serializers'. Where protobuf would refuse a value (an int
beyond int64, text that is not valid UTF-8) it is sent as text instead.
"""

from __future__ import annotations

import struct
from collections.abc import Mapping, Sequence
from typing import Any

_INT64_MIN, _INT64_MAX = -(1 << 63), (1 << 63) - 1
_pack_fixed64 = struct.Struct("<Q").pack
_pack_double = struct.Struct("<d").pack


def _varint(value: int) -> bytes:
    if value < 0:
        value += 1 << 64  # int64: two's complement in ten bytes
    if value < 0x80:
        return bytes((value,))
    out = bytearray()
    while value >= 0x80:
        out.append((value & 0x7F) | 0x80)
        value >>= 7
    out.append(value)
    return bytes(out)


_TAGS = [bytes((n << 3 | 2,)) for n in range(16)]  # length-delimited fields 0-15


def _field(number: int, payload: bytes) -> bytes:
    """A length-delimited field (wire type 2): strings, bytes, messages."""
    size = len(payload)
    return _TAGS[number] + (bytes((size,)) if size < 0x80 else _varint(size)) + payload


def _text(number: int, value: str) -> bytes:
    return _field(number, value.encode("utf-8", "replace")) if value else b""


def _any_value(value: Any) -> bytes:
    """``AnyValue``: bool 2, int 3, double 4, anything else its ``str`` as string 1 (an
    int beyond int64 too). A oneof member is written even when it is the default."""
    if isinstance(value, bool):
        return b"\x10\x01" if value else b"\x10\x00"
    if isinstance(value, int) and _INT64_MIN <= value <= _INT64_MAX:
        return b"\x18" + _varint(int(value))
    if isinstance(value, float):
        return b"\x21" + _pack_double(value)
    return _field(1, str(value).encode("utf-8", "replace"))


# A span's attributes repeat from request to request (backend, model, tenant, status):
# the encoding of a short str / int / bool pair is kept, up to this many pairs, then the
# memory starts again. Anything else (floats, long text, other types) is encoded afresh.
_PAIRS: dict[tuple[str, type, Any], bytes] = {}
_PAIRS_MAX = 4096
_MEMO_TYPES = (str, int, bool)
_MEMO_TEXT = 256  # characters: a stack trace is not worth keeping


def _pair(key: str, value: Any) -> bytes:
    """One ``KeyValue`` message's bytes."""
    kind = type(value)
    if kind not in _MEMO_TYPES or (kind is str and len(value) > _MEMO_TEXT):
        return _text(1, key) + _field(2, _any_value(value))
    memo = (key, kind, value)
    found = _PAIRS.get(memo)
    if found is None:
        if len(_PAIRS) >= _PAIRS_MAX:
            _PAIRS.clear()
        found = _PAIRS[memo] = _text(1, key) + _field(2, _any_value(value))
    return found


def key_values(number: int, attributes: Mapping[str, Any] | None) -> bytes:
    """``repeated KeyValue`` as field ``number`` (None values left out)."""
    if not attributes:
        return b""
    return b"".join(
        _field(number, _pair(key, value)) for key, value in attributes.items() if value is not None
    )


def span(record: Sequence[Any], kinds: Mapping[str, int]) -> bytes:
    """One ``Span`` message's bytes, from a span record as :mod:`heshi.tracing` ends it:
    (trace id, span id, parent id or 0, name, kind name, start ns, end ns, attributes,
    events as (name, ns, attributes), status as (code, message) or None); ``kinds`` maps
    kind names to OTLP's SpanKind numbers (others are INTERNAL, 1)."""
    trace_id, span_id, parent, name, kind_name, start, end, attributes, events, status = record
    kind = kinds.get(kind_name, 1)
    out = [
        b"\x0a\x10" + trace_id.to_bytes(16, "big"),
        b"\x12\x08" + span_id.to_bytes(8, "big"),
    ]
    if parent:
        out.append(b"\x22\x08" + parent.to_bytes(8, "big"))
    out.append(_text(5, name))
    if kind:
        out.append(b"\x30" + _varint(kind))
    if start:
        out.append(b"\x39" + _pack_fixed64(start))
    if end:
        out.append(b"\x41" + _pack_fixed64(end))
    out.append(key_values(9, attributes))
    for event_name, at, event_attributes in events:
        body = (b"\x09" + _pack_fixed64(at) if at else b"") + _text(2, event_name)
        out.append(_field(11, body + key_values(3, event_attributes)))
    if status is not None:
        code, message = status
        body = _text(2, message) + (b"\x18" + _varint(code) if code else b"")
        out.append(_field(15, body))
    return _field(2, b"".join(out))  # as ScopeSpans.spans (field 2)


def export_request(spans: Sequence[bytes], resource: Mapping[str, Any], scope_name: str) -> bytes:
    """An ``ExportTraceServiceRequest``: one ``ResourceSpans`` with ``resource``'s
    attributes and one ``ScopeSpans`` named ``scope_name`` holding ``spans`` (each from
    :func:`span`)."""
    scope = _field(1, _text(1, scope_name)) + b"".join(spans)
    resource_spans = _field(1, key_values(1, resource)) + _field(2, scope)
    return _field(1, resource_spans)
