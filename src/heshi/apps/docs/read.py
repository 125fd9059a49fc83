"""A document's text, in reading order, for extraction — the knowledge base's readers:
PDF (text layer; scanned pages by OCR), OFD (text objects; image-only by OCR), DOCX
(tables with merged cells once), photos and scans as pictures (OCR), HTML, Markdown,
plain text, CSV/XLSX. A PDF keeps the lines of its page as they are (the knowledge base
joins them into sentences; a form's fields must stay apart)."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

from heshi.apps.kb.documents import NO_TEXT, load_bytes, read_document
from heshi.apps.kb.office import pdf_pages
from heshi.apps.kb.parse import UnreadableDocument


@dataclass(frozen=True)
class DocumentText:
    text: str
    pages: int


def document_text(path: Path, data: bytes | None = None) -> DocumentText:
    """The text of the file at ``path`` (from ``data``, its bytes, when already read);
    :class:`UnreadableDocument` says why not."""
    if path.suffix.lower() == ".pdf":
        pages = pdf_pages(load_bytes(path) if data is None else data)
        stripped = (line.strip() for page, _ in pages for line in page.split("\n"))
        text = "\n".join(line for line in stripped if line)
        if not text:
            raise UnreadableDocument(NO_TEXT)
        return DocumentText(text, len(pages))
    parsed = read_document(path, data)
    lines = []
    for block in parsed.blocks:
        if block.kind == "faq":
            lines.append(f"{block.question}\n{block.text}")
        else:
            lines.append(block.text)
    return DocumentText("\n".join(line for line in lines if line.strip()), parsed.pages)
