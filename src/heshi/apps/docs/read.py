"""A document's text, in reading order, for extraction: PDF text layer, DOCX (tables with
merged cells once), HTML, Markdown, plain text, CSV/XLSX — the knowledge base's readers.
Scans, photos and OFD arrive with the OCR and OFD readers."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

from heshi.apps.kb.documents import MAX_FILE_BYTES, read_document
from heshi.apps.kb.parse import UnreadableDocument


@dataclass(frozen=True)
class DocumentText:
    text: str
    pages: int


def document_text(path: Path) -> DocumentText:
    """The text of the file at ``path``; :class:`UnreadableDocument` says why not."""
    try:
        size = path.stat().st_size
        if size > MAX_FILE_BYTES:
            raise UnreadableDocument(f"文件过大 / file too large: {size} bytes")
        data = path.read_bytes()
    except OSError as exc:
        raise UnreadableDocument(f"无法读取 / cannot read {path}: {exc.strerror or exc}") from exc
    parsed = read_document(path, data)
    lines = []
    for block in parsed.blocks:
        if block.kind == "faq":
            lines.append(f"{block.question}\n{block.text}")
        else:
            lines.append(block.text)
    return DocumentText("\n".join(line for line in lines if line.strip()), parsed.pages)
