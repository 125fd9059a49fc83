"""A PDF's document information dictionary as written: its entries copied byte for byte
into the new dictionary ``heshi aigc label`` appends, so custom keys (/Company,
/SourceModified, a DMS's /DocID) survive labelling — pdfium reads only the standard ones.

Only an information dictionary written as a plain object is read here; one inside a
compressed object stream (PDF 1.5+) is left to pdfium's standard keys.
"""

from __future__ import annotations

import re

_DELIMITERS = b"()<>[]{}/%"
_WHITESPACE = b" \t\r\n\f\x00"
_REFERENCE = re.compile(rb"\s+\d+\s+R(?![^\s/<>\[\]()%])")


def info_entries(pdf: bytes, trailers: list[bytes]) -> bytes | None:
    """The entries (between ``<<`` and ``>>``) of the information dictionary the newest of
    ``trailers`` names, without any ``/AIGC`` entry; None when there is none or it is not
    a plain object of the file."""
    ref = None
    for trailer in trailers:
        found = list(re.finditer(rb"/Info\s+(\d+)\s+(\d+)\s+R", trailer))
        if found:
            ref = found[-1]
            break
    if ref is None:
        return None
    pattern = rb"(?<![0-9])" + ref.group(1) + rb"\s+" + ref.group(2) + rb"\s+obj\s*<<"
    objects = list(re.finditer(pattern, pdf))
    if not objects:
        return None
    start = objects[-1].end()
    try:
        end = _value_end(pdf, start - 2)
        return _without(pdf[start : end - 2], b"/AIGC").strip()
    except (ValueError, RecursionError):  # malformed or absurdly nested: pdfium's keys
        return None


def _without(entries: bytes, key: bytes) -> bytes:
    """``entries`` with the entry ``key`` (and its value) taken out."""
    out, i = bytearray(), 0
    while i < len(entries):
        i = _skip_space(entries, i)
        if i >= len(entries):
            break
        name_end = _value_end(entries, i)
        value_end = _value_end(entries, _skip_space(entries, name_end))
        reference = _REFERENCE.match(entries, value_end)  # "7 0 R": the value goes on
        if reference and entries[i:name_end].startswith(b"/"):
            value_end = reference.end()
        if entries[i:name_end] != key:
            out += entries[i:value_end] + b" "
        i = value_end
    return bytes(out)


def _skip_space(data: bytes, i: int) -> int:
    while i < len(data):
        if data[i] in _WHITESPACE:
            i += 1
        elif data[i] == ord("%"):  # a comment runs to the end of the line
            while i < len(data) and data[i] not in b"\r\n":
                i += 1
        else:
            break
    return i


def _value_end(data: bytes, i: int) -> int:
    """Where the PDF object starting at ``i`` ends: a dictionary, array, literal or hex
    string, name, or a number / keyword (an indirect reference ``5 0 R`` is read as its
    three tokens by the caller's loop, which is harmless: they are copied together)."""
    if i >= len(data):
        raise ValueError("end of data")
    if data.startswith(b"<<", i):
        return _items_end(data, i + 2, b">>")
    char = data[i : i + 1]
    if char == b"[":
        return _items_end(data, i + 1, b"]")
    if char == b"(":
        return _string_end(data, i + 1)
    if char == b"<":
        end = data.find(b">", i)
        if end < 0:
            raise ValueError("unterminated hex string")
        return end + 1
    if char == b"/":
        i += 1
    elif char in (b"(", b")", b">", b"]", b"{", b"}", b"%"):
        raise ValueError(f"unexpected {char!r}")
    while i < len(data) and data[i] not in _WHITESPACE and data[i] not in _DELIMITERS:
        i += 1
    return i


def _items_end(data: bytes, i: int, close: bytes) -> int:
    i = _skip_space(data, i)
    while not data.startswith(close, i):
        i = _skip_space(data, _value_end(data, i))
    return i + len(close)


def _string_end(data: bytes, i: int) -> int:
    depth = 1
    while depth:
        if i >= len(data):
            raise ValueError("unterminated string")
        if data[i] == ord("\\"):
            i += 1
        elif data[i] == ord("("):
            depth += 1
        elif data[i] == ord(")"):
            depth -= 1
        i += 1
    return i
