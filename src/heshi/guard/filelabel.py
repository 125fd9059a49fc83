"""GB 45438 labels in exported files: what ``heshi aigc label`` writes and ``verify`` reads.

GB 45438-2025 covers files a service lets users download: the explicit label where a
person reads the content, the implicit label (Appendix E) in the file's metadata.

========  =====================================  ======================================
format    explicit label                          implicit label
========  =====================================  ======================================
.txt      the notice at the start or end          none (plain text has no metadata):
                                                  the ``user.AIGC`` extended attribute
                                                  where the file system keeps one
.md       the notice, after the front matter      ``AIGC`` in the YAML front matter
.json     none (data a program reads)             the top-level ``AIGC`` key
.pdf      none                                    ``/AIGC`` in the document information
                                                  (an incremental update: the original
                                                  bytes are kept as they were)
.docx     none                                    the custom document property ``AIGC``
.png      none                                    XMP ``TC260:AIGC`` (:mod:`xmp`)
.jpg      none                                    XMP ``TC260:AIGC`` (:mod:`xmp`)
========  =====================================  ======================================

``ReservedCode1`` (HMAC-SHA256 under the AIGC key, :func:`heshi.guard.aigc.reserved_code`)
covers the file's content without its implicit label — the text as written (explicit
label included) for .txt and .md, the canonical JSON without ``AIGC``, the PDF as it was
before the update, the DOCX parts other than the three the label touches, the image
without XMP — so ``verify`` tells a label that still fits its file from one that was
copied onto another file or left on one that was changed.
"""

from __future__ import annotations

import io
import json
import re
import zipfile
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any
from xml.etree import ElementTree as ET

import yaml

from heshi.apps.kb.documents import MAX_UNPACKED_BYTES
from heshi.errors import InvalidRequest
from heshi.guard import xmp
from heshi.guard.aigc import (
    ImplicitLabel,
    Position,
    explicit_label,
    markdown_front_matter,
    metadata_string,
)
from heshi.guard.pdfinfo import info_entries

SUFFIXES = {
    ".txt": "text", ".md": "markdown", ".markdown": "markdown", ".json": "json",
    ".pdf": "pdf", ".docx": "docx", ".png": "png", ".jpg": "jpeg", ".jpeg": "jpeg",
}  # fmt: skip
TEXT_KINDS = ("text", "markdown")
_FRONT = re.compile(r"\A---\r?\n(.*?\r?\n)?(?:---|\.\.\.)\r?\n", re.DOTALL)
_PDF_MARK = b"\n%heshi-aigc-label\n"


class UnsupportedFile(InvalidRequest):
    code = "unsupported_file"


def kind_of(path: Path) -> str:
    kind = SUFFIXES.get(path.suffix.lower())
    if kind is None:
        raise UnsupportedFile(
            f"不支持的文件类型 {path.suffix or '(无后缀)'}：支持 {', '.join(sorted(SUFFIXES))} / "
            f"unsupported file type {path.suffix or '(none)'}: supported are "
            f"{', '.join(sorted(SUFFIXES))}"
        )
    return kind


@dataclass(frozen=True)
class Labelled:
    """A file's bytes with the label written, and the implicit label (for a text file,
    to be kept outside it)."""

    data: bytes
    label: ImplicitLabel


def _text(data: bytes) -> str:
    try:
        return data.decode("utf-8")
    except UnicodeDecodeError:
        raise UnsupportedFile("文本文件须为 UTF-8 / a text file must be UTF-8") from None


# -- what the label covers, per format --------------------------------------------------


def content_of(kind: str, data: bytes) -> bytes:
    """The bytes a label's ReservedCode1 covers in a labelled (or unlabelled) file."""
    if kind == "text":
        return data
    if kind == "markdown":
        text = _text(data)
        front = _front(text)
        return (text[front[0] :] if front else text).encode("utf-8")
    if kind == "json":
        obj = _json_object(data)
        obj.pop("AIGC", None)
        return json.dumps(obj, sort_keys=True, ensure_ascii=False, separators=(",", ":")).encode()
    if kind == "pdf":
        return _pdf_content(data)
    if kind == "docx":
        return _docx_content(data)
    return xmp.png_content(data) if kind == "png" else xmp.jpeg_content(data)


def _front(text: str) -> tuple[int, dict[str, Any]] | None:
    """Where the YAML front matter at the start of a Markdown text ends, and what it
    holds — only when what lies between the ``---`` lines is a YAML mapping (a text may
    open with a ``---`` rule)."""
    found = _FRONT.match(text)
    if found is None:
        return None
    try:
        meta = yaml.safe_load(found.group(1) or "")
    except yaml.YAMLError:
        return None
    return (found.end(), meta or {}) if meta is None or isinstance(meta, dict) else None


def _json_with_label(data: bytes, label: ImplicitLabel) -> bytes:
    """The JSON with its ``AIGC`` key: spliced into the text as written when it has none
    (numbers keep their digits: 0.1000000000000000055, 1e400), else rewritten whole."""
    obj = _json_object(data)
    value = json.dumps(label.as_json()["AIGC"], ensure_ascii=False)
    text = _text(data).rstrip()
    if "AIGC" not in obj and text.endswith("}"):
        glue = ",\n  " if obj else ""
        return (text[:-1].rstrip() + f'{glue}"AIGC": {value}' + "\n}\n").encode("utf-8")
    return json.dumps(obj | label.as_json(), ensure_ascii=False, indent=2).encode() + b"\n"


def _json_object(data: bytes) -> dict[str, object]:
    try:
        obj = json.loads(data)
    except ValueError as exc:
        raise UnsupportedFile(f"不是 JSON / not JSON: {exc}") from exc
    if not isinstance(obj, dict):
        raise UnsupportedFile("JSON 顶层须为对象 / the JSON must be an object at the top")
    return obj


# -- writing ----------------------------------------------------------------------------


def label_file(
    kind: str,
    data: bytes,
    make: Callable[[bytes], ImplicitLabel],
    *,
    explicit: Position = "end",
    wording: str,
) -> Labelled:
    """``data`` with the explicit label (text formats) and the implicit label ``make``
    builds from the content it will cover."""
    if kind == "text":
        text = explicit_label(_text(data), explicit, wording).encode("utf-8")
        return Labelled(text, make(text))
    if kind == "markdown":
        source = _text(data)
        front = _front(source)
        head, body = (source[: front[0]], source[front[0] :]) if front else ("", source)
        body = explicit_label(body, explicit, wording)
        label = make(body.encode("utf-8"))
        # no front matter: a block of our own before the text (which may open with a rule)
        page = markdown_front_matter(head + body, label) if front else (
            markdown_front_matter("", label) + body
        )  # fmt: skip
        return Labelled(page.encode("utf-8"), label)
    # a PDF's new label covers the whole file as it is (earlier labels included) and is
    # appended after it; every other format's label covers the content without a label
    content = data if kind == "pdf" else content_of(kind, data)
    label = make(content)
    if kind == "json":
        written = _json_with_label(data, label)
    elif kind == "pdf":
        written = _pdf_with_info(content, label)
    elif kind == "docx":
        written = _docx_with_property(data, label)
    elif kind == "png":
        written = xmp.png_with_label(data, label)
    else:
        written = xmp.jpeg_with_label(data, label)
    return Labelled(written, label)


# -- reading ----------------------------------------------------------------------------


def read_label(kind: str, data: bytes) -> ImplicitLabel | None:
    """The implicit label a file holds (``None`` when it has none; ``InvalidRequest``
    when one is there but malformed). Text files: see the CLI (an extended attribute)."""
    if kind in ("markdown", "json"):
        found = _front_matter(data) if kind == "markdown" else _json_object(data).get("AIGC")
        return ImplicitLabel.from_json({"AIGC": found}) if found is not None else None
    readers: dict[str, Callable[[bytes], ImplicitLabel | None]] = {
        "pdf": _pdf_label, "docx": _docx_label, "png": xmp.png_label, "jpeg": xmp.jpeg_label,
    }  # fmt: skip
    reader = readers.get(kind)
    return reader(data) if reader is not None else None


def _front_matter(data: bytes) -> object:
    front = _front(_text(data))
    return front[1].get("AIGC") if front else None


# -- PDF: an incremental update with a new document information dictionary --------------


def _pdf_with_info(original: bytes, label: ImplicitLabel) -> bytes:
    """``original`` followed by an update section whose trailer names a new /Info: the
    old entries (as written, custom keys included: :mod:`heshi.guard.pdfinfo`; pdfium's
    standard ones where the old dictionary is in an object stream) and ``/AIGC``.
    Encrypted PDFs are refused."""
    import pypdfium2 as pdfium

    tail = original[-4096:]
    found = list(re.finditer(rb"startxref\s+(\d+)", tail))
    if not found or not original.startswith(b"%PDF-"):
        raise UnsupportedFile(
            "PDF 结构无法读取（没有 startxref）/ cannot read the PDF (no startxref)"
        )
    prev = int(found[-1].group(1))
    head = original[prev : prev + 4096]
    if b"/Encrypt" in head or b"/Encrypt" in tail:
        raise UnsupportedFile("加密的 PDF 无法添加标识 / an encrypted PDF cannot be labelled")
    root = re.search(rb"/Root\s+(\d+\s+\d+\s+R)", head) or re.search(
        rb"/Root\s+(\d+\s+\d+\s+R)", tail
    )
    size = re.search(rb"/Size\s+(\d+)", head) or re.search(rb"/Size\s+(\d+)", tail)
    if root is None or size is None:
        raise UnsupportedFile("PDF 的 trailer 无法读取 / cannot read the PDF's trailer")
    try:
        document = pdfium.PdfDocument(original)
        old = document.get_metadata_dict(skip_empty=True)
        document.close()
    except pdfium.PdfiumError as exc:
        raise UnsupportedFile(f"PDF 无法打开 / cannot open the PDF: {exc}") from exc
    number = int(size.group(1))
    raw = info_entries(original, [head, tail])  # as written: custom keys too
    if raw is not None:
        entries = raw + b" "
    else:  # in an object stream: the standard keys, as pdfium reads them
        entries = "".join(f"/{k} <{_utf16_hex(v)}>" for k, v in old.items() if k != "AIGC").encode()
    entries += f"/AIGC <{metadata_string(label).encode('ascii').hex()}>".encode("ascii")
    body = _PDF_MARK + f"{number} 0 obj\n<<".encode() + entries + b">>\nendobj\n"
    obj_at = len(original) + len(_PDF_MARK)
    xref_at = len(original) + len(body)
    ids = re.search(rb"/ID\s*(\[[^\]]*\])", head) or re.search(rb"/ID\s*(\[[^\]]*\])", tail)
    trailer = (
        f"xref\n{number} 1\n{obj_at:010d} 00000 n \ntrailer\n<</Size {number + 1} "
        f"/Root {root.group(1).decode()} /Info {number} 0 R /Prev {prev}"
    ).encode("ascii")
    trailer += (
        b" /ID " + ids.group(1) if ids else b""
    ) + f">>\nstartxref\n{xref_at}\n%%EOF\n".encode()
    return original + body + trailer


def _pdf_content(data: bytes) -> bytes:
    """What the newest label section of a PDF covers: the bytes before it, and whatever
    was appended after it (an edit saved as an incremental update) — so an edit after
    labelling no longer fits the label."""
    at = data.rfind(_PDF_MARK)
    if at < 0:
        return data
    end = data.find(b"%%EOF", at)
    end = len(data) if end < 0 else end + len(b"%%EOF")
    rest = data[end:]
    return data[:at] + (rest if rest.strip() else b"")


def _utf16_hex(value: str) -> str:
    return ("\ufeff" + value).encode("utf-16-be").hex()


def _pdf_label(data: bytes) -> ImplicitLabel | None:
    import pypdfium2 as pdfium

    try:
        document = pdfium.PdfDocument(data)
        value = document.get_metadata_value("AIGC")
        document.close()
    except pdfium.PdfiumError as exc:
        raise UnsupportedFile(f"PDF 无法打开 / cannot open the PDF: {exc}") from exc
    return ImplicitLabel.from_json(json.loads(value)) if value else None


# -- DOCX: a custom document property ----------------------------------------------------

_CUSTOM = "docProps/custom.xml"
_TOUCHED = frozenset({_CUSTOM, "[Content_Types].xml", "_rels/.rels"})
_NS_PROPS = "http://schemas.openxmlformats.org/officeDocument/2006/custom-properties"
_NS_VT = "http://schemas.openxmlformats.org/officeDocument/2006/docPropsVTypes"
_NS_TYPES = "http://schemas.openxmlformats.org/package/2006/content-types"
_NS_RELS = "http://schemas.openxmlformats.org/package/2006/relationships"
_CUSTOM_TYPE = "application/vnd.openxmlformats-officedocument.custom-properties+xml"
_CUSTOM_REL = (
    "http://schemas.openxmlformats.org/officeDocument/2006/relationships/custom-properties"
)
_FMTID = "{D5CDD505-2E9C-101B-9397-08002B2CF9AE}"


def _docx(data: bytes) -> zipfile.ZipFile:
    try:
        archive = zipfile.ZipFile(io.BytesIO(data))
    except zipfile.BadZipFile:
        raise UnsupportedFile("不是 DOCX（ZIP）文件 / not a DOCX (zip) file") from None
    # zipfile reads no member past its declared size, so their sum bounds the unpacking
    if sum(info.file_size for info in archive.infolist()) > MAX_UNPACKED_BYTES:
        archive.close()
        raise UnsupportedFile(
            f"DOCX 解压后超过 {MAX_UNPACKED_BYTES // 2**20} MiB / the DOCX unpacks to more than "
            f"{MAX_UNPACKED_BYTES // 2**20} MiB"
        )
    return archive


def _docx_content(data: bytes) -> bytes:
    with _docx(data) as z:
        names = sorted(n for n in z.namelist() if n not in _TOUCHED)
        return b"".join(n.encode() + b"\x00" + z.read(n) for n in names)


def _docx_label(data: bytes) -> ImplicitLabel | None:
    with _docx(data) as z:
        if _CUSTOM not in z.namelist():
            return None
        root = ET.fromstring(z.read(_CUSTOM))
    for prop in root.findall(f"{{{_NS_PROPS}}}property"):
        if prop.get("name") == "AIGC":
            return ImplicitLabel.from_json(json.loads("".join(prop.itertext())))
    return None


def _docx_with_property(data: bytes, label: ImplicitLabel) -> bytes:
    ET.register_namespace("", _NS_PROPS)
    ET.register_namespace("vt", _NS_VT)
    out = io.BytesIO()
    with _docx(data) as z, zipfile.ZipFile(out, "w", zipfile.ZIP_DEFLATED) as w:
        names = z.namelist()
        if "[Content_Types].xml" not in names or "_rels/.rels" not in names:
            raise UnsupportedFile("不是 Office 文档 / not an Office document")
        for name in names:
            if name not in _TOUCHED:
                w.writestr(z.getinfo(name), z.read(name))
        custom = ET.fromstring(z.read(_CUSTOM)) if _CUSTOM in names else ET.Element(
            f"{{{_NS_PROPS}}}Properties"
        )  # fmt: skip
        for prop in custom.findall(f"{{{_NS_PROPS}}}property"):
            if prop.get("name") == "AIGC":
                custom.remove(prop)
        pids = [int(p.get("pid", "1")) for p in custom.findall(f"{{{_NS_PROPS}}}property")]
        pid = str(max(pids, default=1) + 1)
        prop = ET.SubElement(
            custom, f"{{{_NS_PROPS}}}property", {"fmtid": _FMTID, "pid": pid, "name": "AIGC"}
        )
        ET.SubElement(prop, f"{{{_NS_VT}}}lpwstr").text = metadata_string(label)
        w.writestr(_CUSTOM, ET.tostring(custom, xml_declaration=True, encoding="UTF-8"))
        w.writestr("[Content_Types].xml", _with_override(z.read("[Content_Types].xml")))
        w.writestr("_rels/.rels", _with_relationship(z.read("_rels/.rels")))
    return out.getvalue()


def _with_override(xml: bytes) -> bytes:
    ET.register_namespace("", _NS_TYPES)
    root = ET.fromstring(xml)
    if not any(o.get("PartName") == "/" + _CUSTOM for o in root):
        ET.SubElement(root, f"{{{_NS_TYPES}}}Override",
                      {"PartName": "/" + _CUSTOM, "ContentType": _CUSTOM_TYPE})  # fmt: skip
    return bytes(ET.tostring(root, xml_declaration=True, encoding="UTF-8"))


def _with_relationship(xml: bytes) -> bytes:
    ET.register_namespace("", _NS_RELS)
    root = ET.fromstring(xml)
    if not any(r.get("Type") == _CUSTOM_REL for r in root):
        ids = {r.get("Id") for r in root}
        free = next(f"rId{n}" for n in range(1, len(ids) + 2) if f"rId{n}" not in ids)
        ET.SubElement(root, f"{{{_NS_RELS}}}Relationship",
                      {"Id": free, "Type": _CUSTOM_REL, "Target": _CUSTOM})  # fmt: skip
    return bytes(ET.tostring(root, xml_declaration=True, encoding="UTF-8"))
