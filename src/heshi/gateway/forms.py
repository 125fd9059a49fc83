"""A ``multipart/form-data`` body read as it arrives, within limits, into memory only.

Nothing is trusted: the whole body is counted while it arrives and refused the moment it
passes its limit (a chunked upload declares no length); only the parts a form names are
accepted, each once and no larger than its own limit, so the number of parts and every
field's size are bounded too; part headers are bounded by the parser (python-multipart:
at most 8 headers of 4 KiB per part). Nothing is written to disk, and a client's file
name is kept as text, never used as a path.
"""

from __future__ import annotations

import logging
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import TYPE_CHECKING

from python_multipart.exceptions import FormParserError
from python_multipart.multipart import MultipartParser, parse_options_header
from starlette.requests import Request

from heshi.errors import InvalidRequest
from heshi.gateway.edge import BodyTooLarge, limited_stream

if TYPE_CHECKING:
    from python_multipart.multipart import MultipartCallbacks

# The parser logs a warning for each malformed body it meets: a client could write the
# log full of them. The 400 tells that client; the log stays quiet.
_PARSER_LOG = logging.getLogger("heshi.gateway.multipart")
_PARSER_LOG.setLevel(logging.ERROR)


@dataclass
class Part:
    """One part of a form: its bytes, and the file name and type a client gave it."""

    name: str
    data: bytearray = field(default_factory=bytearray)
    filename: str | None = None  # as sent: text, never a path to open
    content_type: str | None = None

    def text(self) -> str:
        """The part as UTF-8 text (``InvalidRequest`` naming it otherwise)."""
        try:
            return self.data.decode("utf-8-sig")
        except UnicodeDecodeError:
            raise InvalidRequest(
                f"字段 '{self.name}' 不是 UTF-8 文本 / part '{self.name}' is not UTF-8 text",
                param=self.name,
            ) from None


@dataclass(frozen=True)
class FormSpec:
    """What a form may hold: the body's limit and each accepted part's own limit (None:
    only the body's), with the setting that raises the body's limit, for the message."""

    max_bytes: int
    parts: Mapping[str, int | None]
    setting: str = "server.max_body_bytes"


async def read_form(request: Request, spec: FormSpec) -> dict[str, Part]:
    """The parts of ``request``'s multipart body, by name.

    Raises ``InvalidRequest`` (400) for a body that is not ``multipart/form-data``, is
    malformed or cut short, or has a part the form does not name, a part twice or a part
    over its limit; ``BodyTooLarge`` as soon as the body passes ``spec.max_bytes`` (the
    caller closes the connection); ``ClientGone`` when the client leaves mid-body.
    """
    boundary = _boundary(request.headers.get("content-type"))
    too_big = BodyTooLarge(
        f"上传超过 {spec.max_bytes} 字节（{spec.setting}）/ "
        f"upload exceeds {spec.max_bytes} bytes ({spec.setting})"
    )
    pieces = limited_stream(request, spec.max_bytes, too_big)
    form = _Form(spec)
    try:
        parser = MultipartParser(boundary, form.callbacks())
    except FormParserError as exc:
        raise _malformed(exc) from None
    parser.logger = _PARSER_LOG
    try:
        async for piece in pieces:
            parser.write(piece)
    except FormParserError as exc:
        raise _malformed(exc) from None
    if not form.ended:
        raise InvalidRequest(
            "multipart 请求体不完整（缺少结束边界）/ the multipart body ends before its closing "
            "boundary"
        )
    return form.parts


def _boundary(content_type: str | None) -> bytes:
    kind, options = parse_options_header(content_type)
    boundary = options.get(b"boundary")
    if kind != b"multipart/form-data" or not boundary:
        raise InvalidRequest(
            "请求须为 multipart/form-data（例如 curl -F file=@发票.pdf -F schema=invoice）/ "
            "the body must be multipart/form-data (e.g. curl -F file=@invoice.pdf -F "
            "schema=invoice)"
        )
    return boundary


def _malformed(exc: FormParserError) -> InvalidRequest:
    return InvalidRequest(f"multipart 请求体格式错误 / malformed multipart body: {exc}")


class _Form:
    """The parser's callbacks: headers and data of each part, checked as they arrive."""

    def __init__(self, spec: FormSpec) -> None:
        self.spec = spec
        self.parts: dict[str, Part] = {}
        self.ended = False
        self._part: Part | None = None
        self._limit: int | None = None
        self._headers: dict[str, str] = {}
        self._field = bytearray()
        self._value = bytearray()

    def callbacks(self) -> MultipartCallbacks:
        return {
            "on_part_begin": self._begin,
            "on_header_field": self._header_field,
            "on_header_value": self._header_value,
            "on_header_end": self._header_end,
            "on_headers_finished": self._headers_finished,
            "on_part_data": self._data,
            "on_end": self._end,
        }

    def _begin(self) -> None:
        self._part = None
        self._headers = {}

    def _header_field(self, data: bytes, start: int, end: int) -> None:
        self._field += data[start:end]

    def _header_value(self, data: bytes, start: int, end: int) -> None:
        self._value += data[start:end]

    def _header_end(self) -> None:
        name = self._field.decode("latin-1").strip().lower()
        self._headers[name] = self._value.decode("latin-1").strip()
        self._field.clear()
        self._value.clear()

    def _headers_finished(self) -> None:
        kind, options = parse_options_header(self._headers.get("content-disposition"))
        raw_name = options.get(b"name")
        if kind != b"form-data" or raw_name is None:
            raise InvalidRequest(
                "multipart 的每个部分须有 Content-Disposition: form-data; name=… / every part "
                "needs Content-Disposition: form-data with a name"
            )
        name = raw_name.decode("latin-1")
        if name not in self.spec.parts:
            expected = ", ".join(self.spec.parts)
            raise InvalidRequest(
                f"未知字段 '{name[:64]}'，可用：{expected} / unknown part '{name[:64]}'; "
                f"expected: {expected}",
                param=name[:64],
            )
        if name in self.parts:
            raise InvalidRequest(
                f"字段 '{name}' 出现了两次 / part '{name}' is given twice", param=name
            )
        filename = options.get(b"filename")
        part = Part(
            name,
            filename=_text(filename) if filename is not None else None,
            content_type=self._headers.get("content-type"),
        )
        self.parts[name] = self._part = part
        self._limit = self.spec.parts[name]

    def _data(self, data: bytes, start: int, end: int) -> None:
        part = self._part
        assert part is not None  # the parser sends headers before data
        part.data += data[start:end]
        if self._limit is not None and len(part.data) > self._limit:
            raise InvalidRequest(
                f"字段 '{part.name}' 超过 {self._limit} 字节 / part '{part.name}' exceeds "
                f"{self._limit} bytes",
                param=part.name,
            )

    def _end(self) -> None:
        self.ended = True


def _text(raw: bytes) -> str:
    """A header value's bytes (latin-1 on the way in) as the UTF-8 a client really sent."""
    try:
        return raw.decode("utf-8")
    except UnicodeDecodeError:
        return raw.decode("latin-1")
