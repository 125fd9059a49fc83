"""Blocks cut into chunks a retriever can rank and a small model can read.

- A chunk never crosses a heading; the heading path (``产品手册 > 保修 > 期限``) is
  carried into every chunk, so a chunk found on its own still says what it is about.
- Text is cut at sentence ends (。！？；!? and line breaks), never inside a sentence
  unless one sentence alone is longer than the limit.
- A FAQ question stays with its answer, as one chunk (a long answer is cut, each piece
  keeping the question).
- A table is one chunk when it fits; a larger one is cut by rows, each piece keeping the
  header row.
"""

from __future__ import annotations

import hashlib
import re
from collections.abc import Iterable, Iterator
from dataclasses import dataclass

from heshi.apps.kb.parse import Block

TARGET_CHARS = 300  # a chunk's usual size (≈ 200 Qwen tokens of Chinese)
MAX_CHARS = 450  # never more, except a table row or a sentence that cannot be cut
_SENTENCE = re.compile(r"(?<=[。！？；!?])|(?<=\n)")


@dataclass(frozen=True)
class Chunk:
    seq: int  # position in the document, from 0
    headings: tuple[str, ...]
    text: str  # what the model reads and the citation quotes
    kind: str  # text | faq | table
    page: int | None = None

    @property
    def context(self) -> str:
        return " > ".join(self.headings)

    @property
    def indexed(self) -> str:
        """What retrieval sees: headings, then the text."""
        return f"{self.context}\n{self.text}" if self.headings else self.text

    def digest(self) -> str:
        return hashlib.sha256(self.indexed.encode()).hexdigest()[:16]


def chunk_blocks(
    blocks: Iterable[Block], *, target: int = TARGET_CHARS, limit: int = MAX_CHARS
) -> list[Chunk]:
    """The chunks of one document's blocks, in order."""
    out: list[Chunk] = []
    path: list[tuple[int, str]] = []  # (level, heading)
    pending: list[str] = []
    pending_page: int | None = None

    def headings() -> tuple[str, ...]:
        return tuple(h for _, h in path)

    def add(text: str, kind: str, page: int | None) -> None:
        text = text.strip()
        if text:
            out.append(Chunk(len(out), headings(), text, kind, page))

    def flush() -> None:
        nonlocal pending_page
        for piece in pack(pending, target, limit):
            add(piece, "text", pending_page)
        pending.clear()
        pending_page = None

    for block in blocks:
        if block.kind == "heading":
            flush()
            while path and path[-1][0] >= block.level:
                path.pop()
            path.append((block.level, block.text.strip()))
        elif block.kind == "faq":
            flush()
            question = f"问：{block.question.strip()}\n答："
            for piece in pack(sentences(block.text), target, limit - len(question)):
                add(question + piece, "faq", block.page)
        elif block.kind == "table":
            flush()
            for piece in table_pieces(block.text, limit):
                add(piece, "table", block.page)
        else:
            if pending_page is None:
                pending_page = block.page
            pending.extend(sentences(block.text))
            pending.append("\n")
    flush()
    return out


def sentences(text: str) -> list[str]:
    """``text`` cut after each sentence end; the pieces join back to ``text``."""
    return [s for s in _SENTENCE.split(text) if s]


def pack(pieces: list[str], target: int, limit: int) -> Iterator[str]:
    """Consecutive pieces joined into strings of about ``target`` characters, none over
    ``limit`` unless a single piece is (then it is cut at ``limit``)."""
    current = ""
    for whole in pieces:
        piece = whole
        while len(piece) > limit:  # one sentence longer than a chunk: cut it
            if current.strip():
                yield current
            current = ""
            yield piece[:limit]
            piece = piece[limit:]
        if current and len(current) + len(piece) > target and current.strip():
            yield current
            current = ""
        current += piece
    if current.strip():
        yield current


def table_pieces(table: str, limit: int) -> Iterator[str]:
    rows = table.split("\n")
    if len(table) <= limit or len(rows) < 3:
        yield table
        return
    header, body = rows[0], rows[1:]
    current: list[str] = []
    size = len(header)
    for row in body:
        if current and size + len(row) + 1 > limit:
            yield "\n".join([header, *current])
            current, size = [], len(header)
        current.append(row)
        size += len(row) + 1
    if current:
        yield "\n".join([header, *current])
