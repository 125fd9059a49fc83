"""Content safety: lexicon matching mapped to TC260's risks, with an action per category.

A lexicon file (format in ``heshi/guard/data/seed_lexicon.txt`` and docs/guard.md) gives
terms per category, each category mapped to one of TC260-003's 31 risks, plus allowed
phrases. One Aho-Corasick automaton finds every term in one pass; a match is dropped when
it lies inside an allowed phrase, or when a common word (``words.txt`` plus the
lexicon's own allowed phrases) crosses its first or last character — so "大麻" is not
found in "大麻烦" (麻烦 crosses its end) but is found in "吸大麻". Each category has an
action: ``block`` (refuse), ``replace`` (mask the term) or ``flag`` (pass, record).
"""

from __future__ import annotations

import hashlib
import json
import re
import unicodedata
from collections.abc import Iterable
from dataclasses import dataclass, field
from functools import cache
from importlib import resources
from pathlib import Path

from heshi.errors import ConfigError
from heshi.guard.ahocorasick import Automaton

ACTIONS = ("block", "replace", "flag")
_SEVERITY = {"flag": 0, "replace": 1, "block": 2}


def most_severe(actions: Iterable[str | None]) -> str | None:
    """The most severe of ``actions`` (block > replace > flag); None when there is none."""
    return max((a for a in actions if a), key=_SEVERITY.__getitem__, default=None)


DEFAULT_REFUSAL = "抱歉，这个问题我无法回答。如有其他问题，欢迎继续咨询。"
_SECTION = re.compile(r"^\[([A-Za-z0-9_.\-]+)(?:\s+risk=(\S+))?\]$")


@cache
def tc260_risks() -> dict[str, str]:
    """Risk id (``A1`` … ``E2``) → its name in TC260-003 appendix A."""
    raw = resources.files("heshi.guard").joinpath("data").joinpath("tc260_risks.json")
    risks: dict[str, str] = json.loads(raw.read_text("utf-8"))["risks"]
    return risks


@dataclass
class Lexicon:
    name: str
    version: str
    digest: str  # sha256 of the file: which exact list judged a request (audit)
    terms: dict[str, str] = field(default_factory=dict)  # term → category
    risks: dict[str, str] = field(default_factory=dict)  # category → TC260 risk id
    allowed: list[str] = field(default_factory=list)

    @classmethod
    def parse(cls, text: str, origin: str = "<lexicon>") -> Lexicon:
        lex = cls(name=origin, version="", digest=hashlib.sha256(text.encode()).hexdigest())
        category: str | None = None
        known = tc260_risks()
        for number, raw in enumerate(text.splitlines(), start=1):
            line = raw.split("#", 1)[0].strip()
            if not line:
                continue
            if line.startswith("@"):
                key, _, value = line[1:].partition(" ")
                if key == "name":
                    lex.name = value.strip()
                elif key == "version":
                    lex.version = value.strip()
                continue
            if line.startswith("!"):
                lex.allowed.append(line[1:].strip())
                continue
            section = _SECTION.match(line)
            if section:
                category = section.group(1)
                risk = section.group(2) or "A8"
                if risk not in known:
                    raise ConfigError(f"{origin}:{number}: unknown TC260 risk {risk!r}")
                lex.risks[category] = risk
                continue
            if line.startswith("["):
                raise ConfigError(
                    f"{origin}:{number}: 类别行格式为 [名称 risk=A8] / a category line looks "
                    f"like [name risk=A8], got {line!r}"
                )
            if category is None:
                raise ConfigError(
                    f"{origin}:{number}: 词条前需要 [类别] / term before any [category]"
                )
            lex.terms[line] = category
        return lex

    @classmethod
    def load(cls, path: Path) -> Lexicon:
        try:
            return cls.parse(path.read_text(encoding="utf-8"), str(path))
        except OSError as exc:
            raise ConfigError(f"无法读取词库 / cannot read lexicon {path}: {exc.strerror}") from exc

    @classmethod
    def seed(cls) -> Lexicon:
        data = resources.files("heshi.guard").joinpath("data").joinpath("seed_lexicon.txt")
        return cls.parse(data.read_text("utf-8"), "seed_lexicon.txt")


@cache
def common_words() -> frozenset[str]:
    data = resources.files("heshi.guard").joinpath("data").joinpath("words.txt")
    words: set[str] = set()
    for line in data.read_text("utf-8").splitlines():
        words.update(line.split("#", 1)[0].split())
    return frozenset(words)


# Separators an evader puts inside a term (not sentence punctuation such as ，。: removing
# those would let words join across sentences).
_SEPARATORS = frozenset(" \t\r\n-_.·•*|/\\~'\"`^+=・－＿＊／｜～")


@cache
def _fold(ch: str) -> str:
    """One character as matching sees it: "" to skip it, else its NFKC case-folded form."""
    if ch in _SEPARATORS or unicodedata.category(ch) in ("Cf", "Zs", "Cc"):
        return ""
    folded = unicodedata.normalize("NFKC", ch).casefold()
    return folded if len(folded) == 1 else ch


def _skeleton(text: str) -> tuple[str, list[int]]:
    """The text as matching sees it, and for each of its characters the original index."""
    chars: list[str] = []
    where: list[int] = []
    for i, ch in enumerate(text):
        folded = _fold(ch)
        if folded:
            chars.append(folded)
            where.append(i)
    return "".join(chars), where


@dataclass(frozen=True)
class Hit:
    term: str
    category: str
    risk: str  # TC260 risk id
    action: str
    start: int
    end: int

    def as_json(self) -> dict[str, object]:
        return {
            "term": self.term,
            "category": self.category,
            "risk": self.risk,
            "risk_name": tc260_risks()[self.risk],
            "action": self.action,
            "start": self.start,
            "end": self.end,
        }


@dataclass
class Verdict:
    hits: list[Hit]
    action: str | None  # the most severe action of the hits; None = clean
    text: str  # the text after ``replace`` actions

    @property
    def blocked(self) -> bool:
        return self.action == "block"


class SafetyEngine:
    """Screens text against one lexicon with per-category actions (default ``block``)."""

    def __init__(
        self,
        lexicon: Lexicon,
        actions: dict[str, str] | None = None,
        words: frozenset[str] | None = None,
        refusal: str = DEFAULT_REFUSAL,
    ) -> None:
        for category, action in (actions or {}).items():
            if action not in ACTIONS:
                raise ConfigError(
                    f"类别 {category} 的动作无效 / category {category}: action must be one of "
                    f"{ACTIONS}"
                )
        self.lexicon = lexicon
        self.refusal = refusal
        self._actions = actions or {}
        self._terms: Automaton[str] = Automaton(
            (_skeleton(t)[0], c) for t, c in lexicon.terms.items()
        )
        boundary = (words if words is not None else common_words()) | set(lexicon.allowed)
        self._words: Automaton[str] = Automaton((_skeleton(w)[0], w) for w in boundary)
        self._allowed = lexicon.allowed
        longest_word = max((len(w) for w in boundary), default=1)
        self.max_term = max((len(t) for t in lexicon.terms), default=1)
        self.context = longest_word  # characters of context a boundary check needs

    def action_for(self, category: str) -> str:
        return self._actions.get(category, "block")

    def hits(self, text: str) -> list[Hit]:
        """Term matches that no allowed phrase covers and no common word crosses.

        Matching runs on a skeleton of the text: NFKC, case-folded, with invisible format
        characters (zero-width space …), spaces and separator punctuation removed — so
        "冰\u200b毒", "冰 毒", "冰-毒" and "ＭＥＴＨ" match like the plain term. Offsets are
        mapped back to the original text.
        """
        skeleton, where = _skeleton(text)
        candidates = list(self._terms.iter(skeleton))
        if not candidates:
            return []
        spans = list(self._words.iter(skeleton))
        kept: list[Hit] = []
        for start_s, end_s, category in candidates:
            start, end = start_s, end_s
            if any(s <= start and end <= e and (e - s) > (end - start) for s, e, _ in spans):
                continue  # inside a longer allowed phrase or word (大麻 in 大麻哈鱼)
            if any((s < start < e < end) or (start < s < end < e) for s, e, _ in spans):
                continue  # a word crosses a boundary (大麻|烦)
            first, last = where[start_s], where[end_s - 1] + 1
            kept.append(
                Hit(
                    text[first:last],
                    category,
                    self.lexicon.risks.get(category, "A8"),
                    self.action_for(category),
                    first,
                    last,
                )
            )
        return kept

    def check(self, text: str) -> Verdict:
        found = self.hits(text)
        if not found:
            return Verdict([], None, text)
        action = most_severe(h.action for h in found)
        out = list(text)
        for h in found:
            if h.action == "replace":
                out[h.start : h.end] = ["*"] * (h.end - h.start)
        return Verdict(found, action, "".join(out))


class StreamScreener:
    """Outbound screening of a stream: holds back only what a match could still need.

    A term can only be confirmed once ``max_term - 1`` more characters and the boundary
    context have arrived, so that tail is held back; everything before it is screened
    and released. ``feed`` returns (text to send, verdict); on ``block`` the caller stops
    the stream and sends the refusal instead.
    """

    def __init__(self, engine: SafetyEngine) -> None:
        self._engine = engine
        self._text = ""  # everything received so far (for context)
        self._sent = 0  # characters of _text already released
        self._hold = engine.max_term - 1 + engine.context

    def feed(self, chunk: str) -> tuple[str, Verdict]:
        self._text += chunk
        return self._release(len(self._text) - self._hold)

    def flush(self) -> tuple[str, Verdict]:
        return self._release(len(self._text))

    def _release(self, upto: int) -> tuple[str, Verdict]:
        if upto <= self._sent:
            return "", Verdict([], None, "")
        start = max(0, self._sent - self._hold)
        window = self._text[start:]
        verdict = self._engine.check(window)
        # Each hit is reported once: with the release that holds its first character (the
        # held-back tail guarantees the whole term and its context were seen by then).
        relevant = [h for h in verdict.hits if self._sent <= h.start + start < upto]
        out = (
            verdict.text[self._sent - start : upto - start]
            if verdict.hits
            else window[self._sent - start : upto - start]
        )
        self._sent = upto
        action = most_severe(h.action for h in relevant)
        return out, Verdict(relevant, action, out)
