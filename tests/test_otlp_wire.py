"""``heshi.otlp_wire`` writes the bytes OTLP's own protobuf classes write (the exporter
used to build those classes' messages, three times slower) and what any collector can
parse: checked against ``opentelemetry-proto`` itself."""

from __future__ import annotations

import random
from typing import Any

from opentelemetry.proto.collector.trace.v1.trace_service_pb2 import ExportTraceServiceRequest
from opentelemetry.proto.common.v1.common_pb2 import AnyValue, InstrumentationScope, KeyValue
from opentelemetry.proto.resource.v1.resource_pb2 import Resource
from opentelemetry.proto.trace.v1.trace_pb2 import ResourceSpans, ScopeSpans, Span, Status

from heshi import otlp_wire
from heshi.tracing_export import encode

KINDS = {"": 1, "server": 2, "client": 3}


def _reference(spans: list[tuple[Any, ...]], resource: dict[str, Any]) -> bytes:
    """The same request built with the protobuf classes (values they can hold)."""

    def value(v: Any) -> AnyValue:
        if isinstance(v, bool):
            return AnyValue(bool_value=v)
        if isinstance(v, int):
            return AnyValue(int_value=v)
        if isinstance(v, float):
            return AnyValue(double_value=v)
        return AnyValue(string_value=str(v))

    def attrs(a: dict[str, Any] | None) -> list[KeyValue]:
        return [KeyValue(key=k, value=value(v)) for k, v in (a or {}).items() if v is not None]

    out = []
    for trace_id, span_id, parent, name, kind, start, end, a, events, status in spans:
        span = Span(
            trace_id=trace_id.to_bytes(16, "big"), span_id=span_id.to_bytes(8, "big"),
            parent_span_id=parent.to_bytes(8, "big") if parent else b"", name=name,
            kind=KINDS[kind], start_time_unix_nano=start, end_time_unix_nano=end,  # type: ignore[arg-type]
            attributes=attrs(a),
            events=[
                Span.Event(time_unix_nano=t, name=n, attributes=attrs(e)) for n, t, e in events
            ],
        )  # fmt: skip
        if status is not None:
            span.status.CopyFrom(Status(code=status[0], message=status[1]))  # type: ignore[arg-type]
        out.append(span)
    scope = ScopeSpans(scope=InstrumentationScope(name="heshi.gateway"), spans=out)
    request = ResourceSpans(resource=Resource(attributes=attrs(resource)), scope_spans=[scope])
    return bytes(ExportTraceServiceRequest(resource_spans=[request]).SerializeToString())


def _random_spans(rng: random.Random, count: int) -> list[tuple[Any, ...]]:
    words = ["mock", "acme", "qwen2.5-1.5b", "", "中文的租户", "a" * 200, "x" * 20000]
    values: list[Any] = [True, False, 0, 1, -1, 200, -(1 << 63), (1 << 63) - 1, 0.0, -2.5, 1e300]
    spans = []
    for _ in range(count):
        attributes = {
            rng.choice(["heshi.backend", "heshi.attempt", "k", "长键"]) + str(i): rng.choice(
                [*values, *words, rng.random(), rng.randint(-(1 << 40), 1 << 40), None]
            )
            for i in range(rng.randint(0, 9))
        }
        events = [
            (rng.choice(["first_token", "exception"]), rng.choice([0, rng.getrandbits(63)]),
             rng.choice([None, {}, {"exception.message": rng.choice(words), "n": -3}]))
            for _ in range(rng.randint(0, 3))
        ]  # fmt: skip
        ids = (rng.getrandbits(128) or 1, rng.getrandbits(64) or 1)
        parent = rng.choice([0, rng.getrandbits(64) or 1])
        status = rng.choice([None, (2, ""), (2, "ValueError: 出错"), (0, "")])
        times = (rng.choice([0, rng.getrandbits(63)]), rng.choice([0, rng.getrandbits(63)]))
        name, kind = rng.choice(words[:5]), rng.choice(list(KINDS))
        spans.append((*ids, parent, name, kind, *times, attributes, events, status))
    return spans


def test_the_bytes_are_protobufs_own_for_random_spans(monkeypatch: Any) -> None:
    monkeypatch.setenv(
        "OTEL_RESOURCE_ATTRIBUTES", "deployment.environment=prod,team=%E6%94%AF%E4%BB%98"
    )
    rng = random.Random(20261206)
    for _ in range(40):
        spans = _random_spans(rng, rng.randint(1, 70))
        resource = {"deployment.environment": "prod", "team": "支付", "service.name": "heshi"}
        assert encode(spans, "heshi") == _reference(spans, resource)


def test_what_protobuf_cannot_hold_still_goes_out_readable() -> None:
    """An int beyond int64 (protobuf refuses it: the batch was lost) is sent as its
    digits; a lone surrogate (invalid UTF-8, which a collector refuses) as "?"."""
    span = (1, 2, 0, "generate\ud800", "", 5, 6, {"big": 1 << 70, "bad": "a\udc80b"}, [], None)
    parsed = ExportTraceServiceRequest()
    parsed.ParseFromString(encode([span], "heshi"))
    (got,) = parsed.resource_spans[0].scope_spans[0].spans
    assert got.name == "generate?"
    values = {kv.key: kv.value for kv in got.attributes}
    assert values["big"].string_value == str(1 << 70)
    assert values["bad"].string_value == "a?b"


def test_a_remembered_attribute_keeps_its_type() -> None:
    """True == 1 and hash alike in Python: the encoding kept for one is not the other's."""
    first = otlp_wire.key_values(9, {"k": True})
    assert otlp_wire.key_values(9, {"k": 1}) != first
    assert otlp_wire.key_values(9, {"k": 1.0}) != otlp_wire.key_values(9, {"k": 1})
    assert otlp_wire.key_values(9, {"k": True}) == first


def test_one_bad_span_is_left_out_not_the_batch() -> None:
    good = (1, 2, 0, "admission", "", 5, 6, {"k": "v"}, [], None)
    bad = (1, 3, 0, "broken", "", -5, 6, {}, [], None)  # a negative time: not a fixed64
    parsed = ExportTraceServiceRequest()
    parsed.ParseFromString(encode([good, bad, good], "heshi"))
    names = [s.name for s in parsed.resource_spans[0].scope_spans[0].spans]
    assert names == ["admission", "admission"]


def test_values_of_other_types_are_sent_as_they_read_and_never_remembered() -> None:
    """Event attributes are not normalized: an IntEnum is an int, numpy-like float
    subclasses are doubles, a list its text — and none of them, nor a long text, is kept
    in the memory of pairs (so two values that compare equal never share bytes)."""
    import enum
    from decimal import Decimal

    class Level(enum.IntEnum):
        HIGH = 3

    class Double(float):
        pass

    span = (1, 2, 0, "e", "", 5, 6, {}, [("x", 7, {
        "level": Level.HIGH, "d": Double(0.5), "list": [1, 2], "dec": Decimal("1.0"),
        "trace": "t" * 5000,
    })], None)  # fmt: skip
    otlp_wire._PAIRS.clear()
    parsed = ExportTraceServiceRequest()
    parsed.ParseFromString(encode([span], "heshi"))
    (event,) = parsed.resource_spans[0].scope_spans[0].spans[0].events
    got = {kv.key: kv.value for kv in event.attributes}
    assert got["level"].int_value == 3 and got["d"].double_value == 0.5
    assert got["list"].string_value == "[1, 2]" and got["dec"].string_value == "1.0"
    assert got["trace"].string_value == "t" * 5000
    assert not any(key in {"level", "d", "list", "dec", "trace"} for key, _, _ in otlp_wire._PAIRS)
    # Decimal("1") == Decimal("1.0"): had it been remembered, the second would read "1"
    assert otlp_wire.key_values(3, {"dec": Decimal("1")}) != otlp_wire.key_values(
        3, {"dec": Decimal("1.0")}
    )
