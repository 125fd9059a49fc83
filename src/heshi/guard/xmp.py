"""GB 45438 implicit labels in image metadata: an XMP packet in PNG and JPEG files.

TC260's practice for file metadata (and the generators that follow it) puts the Appendix
E object in XMP under the namespace ``http://www.tc260.org.cn/ns/AIGC/1.0/`` (prefix
``TC260``) as the text of a ``TC260:AIGC`` element: ``<TC260:AIGC>{"Label": "1", …}
</TC260:AIGC>``. XMP lives in a PNG ``iTXt`` chunk with the keyword
``XML:com.adobe.xmp`` and in a JPEG ``APP1`` segment that starts with
``http://ns.adobe.com/xap/1.0/\\0`` (Adobe's XMP specification, part 3). An image that
already has XMP keeps it: the label is added to (or replaced in) its packet.

What the label's ``ReservedCode1`` covers is the image without its XMP: every PNG chunk
but XMP ``iTXt`` ones, every JPEG byte but XMP ``APP1`` segments — so the check passes
for the file as labelled and fails after any change to the picture.
"""

from __future__ import annotations

import json
import re
import struct
import zlib
from html import unescape
from xml.sax.saxutils import escape

from heshi.errors import InvalidRequest
from heshi.guard.aigc import ImplicitLabel

NAMESPACE = "http://www.tc260.org.cn/ns/AIGC/1.0/"
_PNG = b"\x89PNG\r\n\x1a\n"
_PNG_XMP = b"XML:com.adobe.xmp"
_JPEG_XMP = b"http://ns.adobe.com/xap/1.0/\x00"
_ELEMENT = re.compile(r"<TC260:AIGC>(.*?)</TC260:AIGC>", re.DOTALL)
_DESCRIPTION = (
    '<rdf:Description rdf:about="" xmlns:TC260="' + NAMESPACE + '">'
    "<TC260:AIGC>{}</TC260:AIGC></rdf:Description>"
)
_PACKET = (
    '<?xpacket begin="\ufeff" id="W5M0MpCehiHzreSzNTczkc9d"?>'
    '<x:xmpmeta xmlns:x="adobe:ns:meta/">'
    '<rdf:RDF xmlns:rdf="http://www.w3.org/1999/02/22-rdf-syntax-ns#">{}</rdf:RDF>'
    '</x:xmpmeta><?xpacket end="w"?>'
)


class NotAnImage(InvalidRequest):
    code = "invalid_file"


def with_aigc(packet: str | None, label: ImplicitLabel) -> str:
    """An XMP packet holding ``label``: ``packet`` with its TC260:AIGC replaced or added,
    or a new packet."""
    body = escape(json.dumps(label.values(), separators=(",", ":")))
    if packet and _ELEMENT.search(packet):
        return _ELEMENT.sub(lambda _: f"<TC260:AIGC>{body}</TC260:AIGC>", packet, count=1)
    description = _DESCRIPTION.format(body)
    if packet and "</rdf:RDF>" in packet:
        return packet.replace("</rdf:RDF>", description + "</rdf:RDF>", 1)
    return _PACKET.format(description)


def label_in(packet: str) -> ImplicitLabel | None:
    """The label a packet holds, if any (``InvalidRequest`` when it is malformed)."""
    found = _ELEMENT.search(packet)
    if found is None:
        return None
    try:
        return ImplicitLabel.from_json(json.loads(unescape(found.group(1))))
    except ValueError as exc:
        raise InvalidRequest(f"TC260:AIGC 不是 JSON / TC260:AIGC is not JSON: {exc}") from exc


# -- PNG ------------------------------------------------------------------------------


def _png_chunks(data: bytes) -> list[tuple[bytes, bytes]]:
    if not data.startswith(_PNG):
        raise NotAnImage("不是 PNG 文件 / not a PNG file")
    chunks, pos = [], len(_PNG)
    while pos + 8 <= len(data):
        (size,) = struct.unpack(">I", data[pos : pos + 4])
        kind = data[pos + 4 : pos + 8]
        if pos + 12 + size > len(data):
            raise NotAnImage("PNG 文件不完整 / the PNG file is truncated")
        chunks.append((kind, data[pos + 8 : pos + 8 + size]))
        pos += 12 + size
        if kind == b"IEND":
            break
    if not chunks or chunks[0][0] != b"IHDR" or chunks[-1][0] != b"IEND":
        raise NotAnImage("PNG 文件结构不完整 / the PNG file has no IHDR or IEND")
    return chunks


def _is_png_xmp(kind: bytes, body: bytes) -> bool:
    return kind == b"iTXt" and body.startswith(_PNG_XMP + b"\x00")


def _png_packet(body: bytes) -> str:
    # keyword \0, compression flag, method, language \0, translated keyword \0, text
    rest = body[len(_PNG_XMP) + 1 :]
    if rest[:1] == b"\x01":
        raise NotAnImage("压缩的 XMP 暂不支持 / compressed XMP in PNG is not supported")
    _, _, after_language = rest[2:].partition(b"\x00")
    _, _, text = after_language.partition(b"\x00")
    return text.decode("utf-8", "replace")


def _chunk(kind: bytes, body: bytes) -> bytes:
    crc = zlib.crc32(kind + body) & 0xFFFFFFFF
    return struct.pack(">I", len(body)) + kind + body + struct.pack(">I", crc)


def png_content(data: bytes) -> bytes:
    """What a PNG's label covers: its chunks but XMP ones."""
    return b"".join(k + b for k, b in _png_chunks(data) if not _is_png_xmp(k, b))


def png_label(data: bytes) -> ImplicitLabel | None:
    for kind, body in _png_chunks(data):
        if _is_png_xmp(kind, body):
            found = label_in(_png_packet(body))
            if found is not None:
                return found
    return None


def png_with_label(data: bytes, label: ImplicitLabel) -> bytes:
    chunks = _png_chunks(data)
    old = next((_png_packet(b) for k, b in chunks if _is_png_xmp(k, b)), None)
    packet = with_aigc(old, label).encode("utf-8")
    xmp = _chunk(b"iTXt", _PNG_XMP + b"\x00\x00\x00\x00\x00" + packet)
    out = [_PNG, _chunk(*chunks[0]), xmp]  # right after IHDR, before the image data
    out += [_chunk(k, b) for k, b in chunks[1:] if not _is_png_xmp(k, b)]
    return b"".join(out)


# -- JPEG -----------------------------------------------------------------------------


def _jpeg_segments(data: bytes) -> tuple[list[tuple[int, bytes]], bytes]:
    """(marker, payload) of the segments before the scan, and the rest of the file."""
    if not data.startswith(b"\xff\xd8"):
        raise NotAnImage("不是 JPEG 文件 / not a JPEG file")
    segments: list[tuple[int, bytes]] = []
    pos = 2
    while pos + 4 <= len(data):
        if data[pos] != 0xFF:
            raise NotAnImage("JPEG 文件结构无法读取 / cannot read the JPEG's segments")
        marker = data[pos + 1]
        if marker == 0xDA:  # start of scan: entropy-coded data follows
            return segments, data[pos:]
        (size,) = struct.unpack(">H", data[pos + 2 : pos + 4])
        segments.append((marker, data[pos + 4 : pos + 2 + size]))
        pos += 2 + size
    raise NotAnImage("JPEG 文件不完整 / the JPEG file is truncated")


def _is_jpeg_xmp(marker: int, payload: bytes) -> bool:
    return marker == 0xE1 and payload.startswith(_JPEG_XMP)


def _segment(marker: int, payload: bytes) -> bytes:
    return bytes((0xFF, marker)) + struct.pack(">H", len(payload) + 2) + payload


def jpeg_content(data: bytes) -> bytes:
    """What a JPEG's label covers: the file without its XMP segments."""
    segments, scan = _jpeg_segments(data)
    kept = [_segment(m, p) for m, p in segments if not _is_jpeg_xmp(m, p)]
    return b"\xff\xd8" + b"".join(kept) + scan


def jpeg_label(data: bytes) -> ImplicitLabel | None:
    segments, _ = _jpeg_segments(data)
    for marker, payload in segments:
        if _is_jpeg_xmp(marker, payload):
            found = label_in(payload[len(_JPEG_XMP) :].decode("utf-8", "replace"))
            if found is not None:
                return found
    return None


def jpeg_with_label(data: bytes, label: ImplicitLabel) -> bytes:
    segments, scan = _jpeg_segments(data)
    old = next(
        (p[len(_JPEG_XMP) :].decode("utf-8", "replace") for m, p in segments if _is_jpeg_xmp(m, p)),
        None,
    )
    payload = _JPEG_XMP + with_aigc(old, label).encode("utf-8")
    if len(payload) + 2 > 0xFFFF:
        raise NotAnImage(
            "XMP 超过一个 JPEG 段的上限 / the XMP packet is too large for a JPEG segment"
        )
    kept = [(m, p) for m, p in segments if not _is_jpeg_xmp(m, p)]
    at = next((i for i, (m, _) in enumerate(kept) if m not in (0xE0, 0xE1)), len(kept))
    kept.insert(at, (0xE1, payload))  # after JFIF and Exif, as the XMP specification says
    return b"\xff\xd8" + b"".join(_segment(m, p) for m, p in kept) + scan
