"""Documents read into blocks: headings, paragraphs, tables and FAQ pairs — the blocks,
and the readers of text formats (Markdown, plain text, HTML).

Each reader returns a :class:`Parsed` whose blocks keep the document's order, so the
chunker can carry headings into every chunk and keep a question with its answer. PDF,
DOCX and FAQ sheets: :mod:`heshi.apps.kb.office`; choosing the reader:
:mod:`heshi.apps.kb.documents`.
"""

from __future__ import annotations

import re
from collections.abc import Iterator
from dataclasses import dataclass, field
from html.parser import HTMLParser
from typing import Literal

from heshi.errors import HeshiError

Kind = Literal["heading", "text", "table", "faq"]


class UnreadableDocument(HeshiError):
    """A file the knowledge base cannot read (format, encoding, size, no text layer)."""

    status_code = 400
    error_type = "invalid_request_error"
    code = "unreadable_document"


@dataclass(frozen=True)
class Block:
    kind: Kind
    text: str  # a table: rows joined by "\n", cells by " | "; faq: the answer
    level: int = 0  # headings: 1 = top
    question: str = ""  # faq only
    page: int | None = None  # PDF: 1-based page


@dataclass
class Parsed:
    blocks: list[Block] = field(default_factory=list)
    pages: int = 1  # PDF pages; other formats count as one


def decode_text(data: bytes) -> str:
    """Bytes of a text file: UTF-8 (with or without BOM), else GB18030 (GBK's superset,
    what Chinese Windows tools write); neither → :class:`UnreadableDocument`."""
    for encoding in ("utf-8-sig", "gb18030"):
        try:
            return data.decode(encoding)
        except UnicodeDecodeError:
            continue
    raise UnreadableDocument("无法识别文件编码 / not UTF-8 or GB18030 text")


# --------------------------------------------------------------------------- text formats

_MD_HEADING = re.compile(r"^(#{1,6})\s+(.+?)\s*#*\s*$")
QA_LINE = re.compile(
    r"^\s*(?:[*_]{0,2})(问|答|Q|A)(?:[*_]{0,2})\s*[:：．.、]\s*(?:[*_]{0,2})(.*)$", re.I
)
_TABLE_RULE = re.compile(r"^\s*\|?\s*:?-{2,}:?\s*(\|\s*:?-{2,}:?\s*)*\|?\s*$")
NUMBERED_HEADING = re.compile(
    r"^\s*(?:第[一二三四五六七八九十百零\d]+[章节条部分篇]|[一二三四五六七八九十]+[、.．]|"
    r"（[一二三四五六七八九十]+）|\([一二三四五六七八九十]+\)|\d+(?:\.\d+)*[、.．]?\s)"
)
_MAX_HEADING = 40  # characters: a longer line is a paragraph, whatever it starts with


def read_markdown(data: bytes) -> Parsed:
    return Parsed(list(markdown_blocks(decode_text(data))))


def markdown_blocks(text: str) -> Iterator[Block]:  # noqa: PLR0912 - one pass, one state
    lines = text.replace("\r\n", "\n").replace("\r", "\n").split("\n")
    para: list[str] = []
    table: list[str] = []
    qa: list[list[str]] = []  # [question lines, answer lines]
    in_code = False

    def flush() -> Iterator[Block]:
        if table:
            yield Block("table", "\n".join(table))
            table.clear()
        if qa:
            yield from _qa_block(qa)
            qa.clear()
        if para:
            yield Block("text", "\n".join(para))
            para.clear()

    for raw in lines:
        line = raw.rstrip()
        if line.strip().startswith("```"):
            in_code = not in_code
            continue
        if in_code:
            para.append(line)
            continue
        heading = _MD_HEADING.match(line)
        if heading:
            yield from flush()
            yield Block("heading", _strip_md(heading.group(2)), level=len(heading.group(1)))
            continue
        if line.lstrip().startswith("|"):
            if not table:
                yield from flush()
            if not _TABLE_RULE.match(line):
                table.append(_table_row(line))
            continue
        if table:
            yield from flush()
        qa_line = QA_LINE.match(line)
        if qa_line:
            role = "q" if qa_line.group(1).upper() in ("问", "Q") else "a"
            if role == "q":
                yield from flush()
                qa.append([_strip_md(qa_line.group(2))])
                qa.append([])
            elif qa:
                qa[1].append(_strip_md(qa_line.group(2)))
            else:
                para.append(_strip_md(qa_line.group(2)))
            continue
        if not line.strip():
            if (qa and qa[1]) or para:
                yield from flush()
            continue
        target = qa[1] if qa else para
        target.append(_strip_md(line))
    yield from flush()


def _qa_block(qa: list[list[str]]) -> Iterator[Block]:
    question = " ".join(x for x in qa[0] if x).strip()
    answer = "\n".join(x for x in qa[1] if x).strip()
    if question and answer:
        yield Block("faq", answer, question=question)
    elif question or answer:
        yield Block("text", question or answer)


def _table_row(line: str) -> str:
    cells = [c.strip() for c in line.strip().strip("|").split("|")]
    return " | ".join(_strip_md(c) for c in cells)


_MD_INLINE = re.compile(r"(\*\*|__|`|~~)")
_MD_LINK = re.compile(r"!?\[([^\]]*)\]\([^)]*\)")


def _strip_md(text: str) -> str:
    text = _MD_LINK.sub(r"\1", text)
    text = _MD_INLINE.sub("", text)
    text = re.sub(r"^\s*>\s?", "", text)
    return text.strip()


def read_text(data: bytes) -> Parsed:
    return Parsed(list(text_blocks(decode_text(data))))


def text_blocks(text: str, page: int | None = None) -> Iterator[Block]:
    """Plain text: numbered short lines (一、 （二） 第三条 1.2) are headings; blank lines
    end paragraphs; 问：/答： lines are FAQ pairs."""
    para: list[str] = []
    qa: list[list[str]] = []
    for raw in text.replace("\r\n", "\n").replace("\r", "\n").split("\n"):
        line = raw.strip()
        qa_line = QA_LINE.match(line)
        if qa_line:
            if qa_line.group(1).upper() in ("问", "Q"):
                yield from _flush_text(para, qa, page)
                qa.extend([[qa_line.group(2).strip()], []])
            elif qa:
                qa[1].append(qa_line.group(2).strip())
            else:
                para.append(qa_line.group(2).strip())
            continue
        if not line:
            if not qa or qa[1]:
                yield from _flush_text(para, qa, page)
            continue
        if NUMBERED_HEADING.match(line) and len(line) <= _MAX_HEADING and not line.endswith("。"):
            yield from _flush_text(para, qa, page)
            yield Block("heading", line, level=_txt_level(line), page=page)
            continue
        (qa[1] if qa else para).append(line)
    yield from _flush_text(para, qa, page)


def _flush_text(para: list[str], qa: list[list[str]], page: int | None) -> Iterator[Block]:
    if qa:
        for block in _qa_block(qa):
            yield Block(block.kind, block.text, question=block.question, page=page)
        qa.clear()
    if para:
        yield Block("text", "\n".join(para), page=page)
        para.clear()


def _txt_level(line: str) -> int:
    if re.match(r"^\s*第.+?[章部篇]", line):
        return 1
    if re.match(r"^\s*[一二三四五六七八九十]+[、.．]", line):
        return 1
    if re.match(r"^\s*(（|\()", line) or re.match(r"^\s*第.+?[节条]", line):
        return 2
    number = re.match(r"^\s*(\d+(?:\.\d+)*)", line)
    return 2 + number.group(1).count(".") if number else 2


# --------------------------------------------------------------------------- HTML


class _Html(HTMLParser):
    _SKIP = frozenset({"script", "style", "noscript", "template", "head"})
    _BLOCK = frozenset({"p", "li", "div", "dd", "dt", "blockquote", "pre", "section", "br"})

    def __init__(self) -> None:
        super().__init__(convert_charrefs=True)
        self.blocks: list[Block] = []
        self._skip = 0
        self._buf: list[str] = []
        self._heading = 0
        self._rows: list[list[str]] | None = None
        self._cell: list[str] | None = None

    def handle_starttag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        if tag in self._SKIP:
            self._skip += 1
        elif re.fullmatch(r"h[1-6]", tag):
            self._flush()
            self._heading = int(tag[1])
        elif tag == "table":
            self._flush()
            self._rows = []
        elif tag == "tr" and self._rows is not None:
            self._rows.append([])
        elif tag in ("td", "th") and self._rows is not None:
            self._cell = []
        elif tag in self._BLOCK and self._rows is None:
            self._flush()

    def handle_endtag(self, tag: str) -> None:
        if tag in self._SKIP:
            self._skip = max(0, self._skip - 1)
        elif re.fullmatch(r"h[1-6]", tag):
            text = _squash("".join(self._buf))
            self._buf.clear()
            if text:
                self.blocks.append(Block("heading", text, level=self._heading or 1))
            self._heading = 0
        elif tag in ("td", "th") and self._rows is not None and self._cell is not None:
            if not self._rows:
                self._rows.append([])
            self._rows[-1].append(_squash("".join(self._cell)))
            self._cell = None
        elif tag == "table" and self._rows is not None:
            rows = [" | ".join(r) for r in self._rows if any(r)]
            if rows:
                self.blocks.append(Block("table", "\n".join(rows)))
            self._rows = None
        elif tag in self._BLOCK and self._rows is None:
            self._flush()

    def handle_data(self, data: str) -> None:
        if self._skip:
            return
        if self._cell is not None:
            self._cell.append(data)
        elif self._rows is None:
            self._buf.append(data)

    def _flush(self) -> None:
        text = _squash("".join(self._buf))
        self._buf.clear()
        if text:
            self.blocks.extend(text_blocks(text) if QA_LINE.match(text) else [Block("text", text)])

    def close(self) -> None:
        super().close()
        self._flush()


def _squash(text: str) -> str:
    return re.sub(r"[ \t\r\n\u3000]+", " ", text).strip()


def read_html(data: bytes) -> Parsed:
    parser = _Html()
    parser.feed(decode_text(data))
    parser.close()
    return Parsed(_merge_faq(parser.blocks))


def _merge_faq(blocks: list[Block]) -> list[Block]:
    """A text block that is only a ``问：`` line followed by one that is its ``答：`` is
    one FAQ pair (HTML puts them in separate paragraphs)."""
    out: list[Block] = []
    for block in blocks:
        prev = out[-1] if out else None
        if (
            prev is not None
            and prev.kind == "faq"
            and not prev.text
            and block.kind in ("text", "faq")
        ):
            out[-1] = Block("faq", block.text, question=prev.question)
            continue
        q = QA_LINE.match(block.text) if block.kind == "text" else None
        if q and q.group(1).upper() in ("问", "Q"):
            out.append(Block("faq", "", question=q.group(2).strip()))
            continue
        a = QA_LINE.match(block.text) if block.kind == "text" else None
        if a and prev is not None and prev.kind == "faq" and not prev.text:
            out[-1] = Block("faq", a.group(2).strip(), question=prev.question)
            continue
        out.append(block)
    return [b if b.kind != "faq" or b.text else Block("text", b.question) for b in out]
