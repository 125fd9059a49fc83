"""Whether an answer stands on its sources: figures and words checked against the chunks
the model read, and the chunks it cites.

Every digit run in an answer must occur in the chunks or the question (400-820-1234 =
4008201234); most of each sentence's words must occur in the chunks; the question repeated
back is not an answer. Sentences that fail are removed, never "fixed".
"""

from __future__ import annotations

import functools
import re
from dataclasses import dataclass

from heshi.apps.kb.index import Hit
from heshi.apps.kb.terms import STOPWORDS, Segmenter

JSON = dict[str, object]
MARK = re.compile(r"\[(\d{1,2})\]")
CJK = re.compile(r"[\u4e00-\u9fff]")
_PUNCT = re.compile(r"[\s,.!?;:，。！？；：、…“”\"'（）()]")
_FIGURE = re.compile(r"\d+(?:[.,:：\-/]\d+)*")


@dataclass(frozen=True)
class Citation:
    doc: str
    chunk_id: str
    text: str

    def as_json(self) -> JSON:
        return {"doc": self.doc, "chunk_id": self.chunk_id, "text": self.text}


def _figures(text: str) -> set[str]:
    return {re.sub(r"\D", "", f) for f in _FIGURE.findall(text)} - {""}


def keep_grounded(answer: str, hits: list[Hit], question: str, min_support: float = 0.5) -> str:
    """``answer`` without its unsupported sentences: one with a figure that appears neither
    in the chunks nor in the question (a figure is its digits: 400-820-1234 = 4008201234),
    or one whose words mostly do not occur in the chunks (a small model asked about
    something the chunks do not cover writes it from the question and its own memory)."""
    chunks = " ".join(h.chunk.indexed for h in hits)
    source = re.sub(r"\D", " ", chunks) + " " + question
    known_runs = _figures(source)
    digits_text = re.sub(r"\D", "", chunks)
    flat = _flat(chunks)
    kept = []
    for sentence in re.split(r"(?<=[。！？!?\n])", _tidy(answer)):
        bare = MARK.sub("", sentence)
        unknown = [
            f
            for f in _figures(bare)
            if f not in known_runs and (len(f) < 4 or f not in digits_text)  # 3,000 = 3000
        ]
        echo = _flat(_PUNCT.sub("", bare))
        if echo and echo in _flat(_PUNCT.sub("", question)):
            continue  # the question repeated back is not an answer
        if not unknown and word_support(bare, flat) >= min_support:
            kept.append(sentence)
    return "".join(kept).strip()


_ECHO = re.compile(r"^\s*\[\d{1,2}\]\s*(（[^）\n]{0,40}）)?")  # "[1]（标题）" copied back
_SOURCE_NOTE = re.compile(r"[（(]?\s*(资料)?(编号|来源|出处)(为|是)?\s*[:：]?\s*(?=\[\d)")


def _tidy(answer: str) -> str:
    """The model's answer without a copied chunk header and with "资料编号：[1]" as "[1]"."""
    return _SOURCE_NOTE.sub("", _ECHO.sub("", answer.strip()))


def _flat(text: str) -> str:
    return re.sub(r"\s", "", text).lower()


@functools.cache
def _segmenter() -> Segmenter:
    return Segmenter()


def word_support(sentence: str, flat_source: str) -> float:
    """The share of ``sentence``'s units found in the source text: words of two or more
    Chinese characters, and runs of single-character words taken together (一克起买, a
    phrase the segmenter does not know, is one unit); 1.0 when there are none."""
    units: list[str] = []
    run = ""
    for word in _segmenter().cut(sentence):
        if len(word) == 1 and CJK.match(word):
            run += word
            continue
        if len(run) >= 2:
            units.append(run)
        run = ""
        if len(word) >= 2 and CJK.search(word) and word not in STOPWORDS:
            units.append(word.lower())
    if len(run) >= 2:
        units.append(run)
    if not units:
        return 1.0
    return sum(1 for u in units if u in flat_source) / len(units)


def cite(answer: str, hits: list[Hit]) -> tuple[str, list[Citation]]:
    """The answer with its markers checked (a marker past the chunks is removed) and the
    chunks it cites; an answer without markers cites the best chunk, marked [1]."""
    used: list[int] = []

    def check(match: re.Match[str]) -> str:
        n = int(match.group(1))
        if 1 <= n <= len(hits):
            if n not in used:
                used.append(n)
            return match.group(0)
        return ""

    answer = MARK.sub(check, answer).strip()
    if not used:
        used = [1]
        answer = f"{answer} [1]"
    citations = [
        Citation(hits[n - 1].chunk.doc, hits[n - 1].chunk.id, hits[n - 1].chunk.text)
        for n in sorted(used)
    ]
    return answer, citations
