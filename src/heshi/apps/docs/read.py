"""A document's text, in reading order, for extraction: PDF text layer, DOCX (tables with
merged cells once), HTML, Markdown, plain text, CSV/XLSX — the knowledge base's readers.
Scans, photos and OFD arrive with the OCR and OFD readers."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

from heshi.apps.kb.documents import read_document


@dataclass(frozen=True)
class DocumentText:
    text: str
    pages: int


def document_text(path: Path, data: bytes | None = None) -> DocumentText:
    """The text of the file at ``path`` (from ``data``, its bytes, when already read);
    :class:`UnreadableDocument` says why not."""
    parsed = read_document(path, data)
    lines = []
    for block in parsed.blocks:
        if block.kind == "faq":
            lines.append(f"{block.question}\n{block.text}")
        else:
            lines.append(block.text)
    return DocumentText("\n".join(line for line in lines if line.strip()), parsed.pages)
