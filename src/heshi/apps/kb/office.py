"""Office formats read into blocks: PDF (its text layer; pages without one by OCR), OFD
(likewise), DOCX, pictures (OCR), and FAQ sheets in CSV or XLSX (a question column and
an answer column; other sheets become one passage per row)."""

from __future__ import annotations

import csv
import io
import re
import threading
from collections.abc import Iterable

from heshi.apps.kb.ocr import MAX_OCR_PAGES, ofd_image_texts, pdf_page_lines, read_image_pages
from heshi.apps.kb.parse import (
    NUMBERED_HEADING,
    QA_LINE,
    Block,
    Parsed,
    UnreadableDocument,
    decode_text,
    text_blocks,
)

# --------------------------------------------------------------------------- PDF, DOCX

MIN_TEXT_LAYER = 5  # a page with fewer characters in its text layer is read by OCR
_PDFIUM = threading.Lock()  # PDFium must not be called from two threads at once


def read_pdf(data: bytes) -> Parsed:
    """A PDF's blocks: lines of its text layer joined where a sentence goes on; a page
    read by OCR keeps its lines as they were seen."""
    pages = pdf_pages(data)
    blocks: list[Block] = []
    for number, (text, ocr) in enumerate(pages, 1):
        blocks.extend(text_blocks(text if ocr else _join_pdf_lines(text), page=number))
    return Parsed(blocks, pages=len(pages))


def pdf_pages(data: bytes) -> list[tuple[str, bool]]:
    """Each page's text, and whether it came from OCR (a page without a text layer).
    The pages to OCR are counted before any is: a document with more than
    :data:`MAX_OCR_PAGES` of them is refused at once. PDFium is not thread-safe: one
    document at a time per process."""
    import pypdfium2

    with _PDFIUM:
        try:
            pdf = pypdfium2.PdfDocument(data)
        except pypdfium2.PdfiumError as exc:
            raise UnreadableDocument(f"无法打开 PDF / cannot open the PDF: {exc}") from exc
        try:
            texts = [pdf[i].get_textpage().get_text_range() for i in range(len(pdf))]
            scanned = [i for i, text in enumerate(texts) if len(text.strip()) < MIN_TEXT_LAYER]
            if len(scanned) > MAX_OCR_PAGES:
                raise UnreadableDocument(
                    f"扫描页超过 {MAX_OCR_PAGES} 页 / more than {MAX_OCR_PAGES} scanned pages"
                )
            pages = [(t.replace("\r\n", "\n").replace("\r", "\n"), False) for t in texts]
            for index in scanned:
                pages[index] = ("\n".join(pdf_page_lines(pdf[index])), True)
            return pages
        finally:
            pdf.close()


def _join_pdf_lines(text: str) -> str:
    """A PDF's text layer breaks lines where the page did; a line that does not end a
    sentence continues on the next one (Chinese has no spaces to put back)."""
    lines = [line.strip() for line in text.split("\n")]  # line ends made \n by pdf_pages
    out: list[str] = []
    for line in lines:
        if (
            out
            and out[-1]
            and line
            and out[-1][-1] not in "。！？；：:!?;"
            and not NUMBERED_HEADING.match(line)
            and not NUMBERED_HEADING.match(out[-1])
            and not QA_LINE.match(line)
        ):
            out[-1] += line
        else:
            out.append(line)
    return "\n".join(out)


def read_ofd(data: bytes) -> Parsed:
    """An OFD document (GB/T 33190: Chinese e-invoices, official papers) by its text
    objects, in reading order (``ofdkit``: standard library only, Apache-2.0)."""
    import ofdkit

    try:
        with ofdkit.open(data) as document:
            text = document.text("\n")
            pages = max(1, len(document.pages))
    except ofdkit.OFDError as exc:
        raise UnreadableDocument(f"无法打开 OFD / cannot open the OFD: {exc}") from exc
    if len(text.strip()) < MIN_TEXT_LAYER:  # image-only: a scan wrapped as OFD
        text = "\n\n".join(ofd_image_texts(data))
    return Parsed(list(text_blocks(text)), pages)


def read_image(data: bytes) -> Parsed:
    """A photo or a scan as a picture file (a fax TIFF: each of its pages), by OCR."""
    pages = read_image_pages(data)
    blocks = [b for n, page in enumerate(pages, 1) for b in text_blocks("\n".join(page), page=n)]
    return Parsed(blocks, pages=max(1, len(pages)))


def read_docx(data: bytes) -> Parsed:
    import docx
    from docx.document import Document as DocxDocument
    from docx.table import Table
    from docx.text.paragraph import Paragraph

    try:
        document: DocxDocument = docx.Document(io.BytesIO(data))
    except Exception as exc:  # python-docx raises several kinds for a broken package
        raise UnreadableDocument(f"无法打开 DOCX / cannot open the DOCX: {exc}") from exc
    blocks: list[Block] = []
    lines: list[str] = []
    for item in document.iter_inner_content():
        if isinstance(item, Paragraph):
            style = (item.style.name if item.style is not None else "") or ""
            level = _docx_heading_level(style)
            text = item.text.strip()
            if level and text:
                if lines:
                    blocks.extend(text_blocks("\n".join(lines)))
                    lines.clear()
                blocks.append(Block("heading", text, level=level))
            else:
                lines.append(text)
        elif isinstance(item, Table):
            if lines:
                blocks.extend(text_blocks("\n".join(lines)))
                lines.clear()
            rows = [
                " | ".join(_dedupe_cells(c.text.strip() for c in row.cells)) for row in item.rows
            ]
            rows = [r for r in rows if r.strip(" |")]
            if rows:
                blocks.append(Block("table", "\n".join(rows)))
    if lines:
        blocks.extend(text_blocks("\n".join(lines)))
    return Parsed(blocks)


def _docx_heading_level(style: str) -> int:
    match = re.match(r"^(?:Heading|标题)\s*(\d)$", style.strip(), re.I)
    if match:
        return int(match.group(1))
    return 1 if style.strip().lower() in ("title", "标题") else 0


def _dedupe_cells(cells: Iterable[str]) -> list[str]:
    """A merged cell comes back once per grid column it spans: keep one."""
    out: list[str] = []
    for cell in cells:
        if not out or cell != out[-1]:
            out.append(cell)
    return out


# --------------------------------------------------------------------------- FAQ sheets

_Q_HEADERS = ("问题", "标准问题", "常见问题", "提问", "question", "q", "问")
_A_HEADERS = ("答案", "回答", "答复", "标准答案", "answer", "a", "答")


def read_csv(data: bytes) -> Parsed:
    text = decode_text(data)
    try:
        dialect = csv.Sniffer().sniff(text[:4096], delimiters=",\t;")
    except csv.Error:
        dialect = csv.excel
    rows = [[c.strip() for c in row] for row in csv.reader(io.StringIO(text), dialect)]
    return Parsed(sheet_blocks(rows))


def read_xlsx(data: bytes) -> Parsed:
    import openpyxl

    try:
        book = openpyxl.load_workbook(io.BytesIO(data), read_only=True, data_only=True)
    except Exception as exc:  # zipfile, XML and openpyxl's own errors
        raise UnreadableDocument(f"无法打开 XLSX / cannot open the XLSX: {exc}") from exc
    blocks: list[Block] = []
    try:
        for sheet in book.worksheets:
            rows = [
                ["" if v is None else str(v).strip() for v in row]
                for row in sheet.iter_rows(values_only=True)
            ]
            if any(any(r) for r in rows):
                if len(book.worksheets) > 1:
                    blocks.append(Block("heading", sheet.title, level=1))
                blocks.extend(sheet_blocks(rows))
    finally:
        book.close()
    return Parsed(blocks)


def sheet_blocks(rows: list[list[str]]) -> list[Block]:
    """A sheet with question/answer columns: one FAQ pair per row; any other sheet: one
    text block per row, each cell named by its column header."""
    rows = [r for r in rows if any(r)]
    if not rows:
        return []
    header = [h.lower().strip() for h in rows[0]]
    q = _column(header, _Q_HEADERS)
    a = _column(header, _A_HEADERS)
    if q is not None and a is not None:
        out = []
        for row in rows[1:]:
            question = row[q] if q < len(row) else ""
            answer = row[a] if a < len(row) else ""
            if question and answer:
                out.append(Block("faq", answer, question=question))
        return out
    return [Block("text", _named_cells(rows[0], row)) for row in rows[1:]]


def _named_cells(header: list[str], row: list[str]) -> str:
    pairs = zip(header + [""] * len(row), row, strict=False)
    return "；".join(f"{h}：{v}" if h else v for h, v in pairs if v)


def _column(header: list[str], names: tuple[str, ...]) -> int | None:
    for name in names:
        if name in header:
            return header.index(name)
    return None
