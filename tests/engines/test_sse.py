"""The incremental SSE decoder: any split of the bytes gives the same events."""

from __future__ import annotations

import pytest

from heshi.engines.sse import ServerSentEvent, SSEDecoder, SSEProtocolError

STREAM = (
    b": ping\r\n\r\n"
    b'data: {"a": "\xe5\x90\x88\xe9\x80\x82"}\r\n\r\n'  # 合适, multi-byte UTF-8
    b"event: error\ndata: line one\ndata:line two\n\n"
    b"id: 7\rretry: 100\rdata: cr only\r\r"
    b"data: [DONE]\n\n"
)
EXPECTED = [
    ServerSentEvent(data='{"a": "合适"}'),
    ServerSentEvent(data="line one\nline two", event="error"),
    ServerSentEvent(data="cr only"),
    ServerSentEvent(data="[DONE]"),
]


def decode(pieces: list[bytes]) -> list[ServerSentEvent]:
    decoder = SSEDecoder()
    return [event for piece in pieces for event in decoder.feed(piece)]


def test_whole_stream_in_one_read() -> None:
    assert decode([STREAM]) == EXPECTED


@pytest.mark.parametrize("cut", range(1, len(STREAM)))
def test_any_single_split_point(cut: int) -> None:
    assert decode([STREAM[:cut], STREAM[cut:]]) == EXPECTED


def test_one_byte_at_a_time() -> None:
    assert decode([STREAM[i : i + 1] for i in range(len(STREAM))]) == EXPECTED


def test_an_event_is_not_dispatched_before_its_blank_line() -> None:
    decoder = SSEDecoder()
    assert list(decoder.feed(b"data: x\n")) == []
    assert list(decoder.feed(b"\n")) == [ServerSentEvent(data="x")]


def test_feed_is_lazy_so_bytes_after_a_terminal_event_are_never_parsed() -> None:
    events = SSEDecoder().feed(b"data: [DONE]\n\nthis is not sse\n")
    assert next(events) == ServerSentEvent(data="[DONE]")


@pytest.mark.parametrize(
    ("raw", "match"),
    [
        (b'{"id": 1}\n', "not a server-sent event line"),
        (b"data: \xff\xfe\n", "not UTF-8"),
    ],
)
def test_non_sse_input_is_an_error(raw: bytes, match: str) -> None:
    with pytest.raises(SSEProtocolError, match=match):
        list(SSEDecoder().feed(raw))


def test_endless_line_is_an_error() -> None:
    decoder = SSEDecoder(max_pending_bytes=16)
    assert list(decoder.feed(b"data: " + b"x" * 10)) == []
    with pytest.raises(SSEProtocolError, match="no line ending within 16 bytes"):
        list(decoder.feed(b"x" * 10))
