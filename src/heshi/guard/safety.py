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

import re
import unicodedata
from collections.abc import Iterable
from dataclasses import dataclass
from functools import cache

from heshi.errors import ConfigError
from heshi.guard.ahocorasick import Automaton
from heshi.guard.lexicon import ACTIONS, Lexicon, common_words, tc260_risks
from heshi.guard.variants import phonetic_term, sounds, traditional_to_simplified

__all__ = ["ACTIONS", "Lexicon", "SafetyEngine", "StreamScreener", "tc260_risks"]
_SEVERITY = {"flag": 0, "replace": 1, "block": 2}
_SENTENCE_END = re.compile(r"[。！？!?；;]")
_SHARED: dict[tuple[str, tuple[tuple[str, str], ...], str], SafetyEngine] = {}
_MATCHERS: dict[str, _Matchers] = {}  # lexicon digest → its automata


def most_severe(actions: Iterable[str | None]) -> str | None:
    """The most severe of ``actions`` (block > replace > flag); None when there is none."""
    return max((a for a in actions if a), key=_SEVERITY.__getitem__, default=None)


DEFAULT_REFUSAL = "抱歉，这个问题我无法回答。如有其他问题，欢迎继续咨询。"


# Separators an evader puts inside a term (not sentence punctuation such as ，。: removing
# those would let words join across sentences).
_SEPARATORS = frozenset(" \t\r\n-_.·•*|/\\~'\"`^+=・－＿＊／｜～")


@cache
def _fold(ch: str) -> str:
    """One character as matching sees it: "" to skip it, else its NFKC case-folded form."""
    if ch in _SEPARATORS or unicodedata.category(ch) in ("Cf", "Zs", "Cc"):
        return ""
    folded = unicodedata.normalize("NFKC", ch).casefold()
    if len(folded) != 1:
        return ch
    return traditional_to_simplified().get(folded, folded)


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


@dataclass(frozen=True)
class _Matchers:
    """A lexicon's automata: its terms by spelling and by sound, the words a match must
    not cross, the softening words."""

    terms: Automaton[str]
    sounds: Automaton[str]
    words: Automaton[str]
    soften: Automaton[str]
    max_term: int
    context: int  # the longest boundary word

    @classmethod
    def build(cls, lexicon: Lexicon, words: frozenset[str] | None) -> _Matchers:
        terms = [(_skeleton(t)[0], c) for t, c in lexicon.terms.items()]
        by_sound = ((phonetic_term(t), c) for t, c in terms)
        boundary = (words if words is not None else common_words()) | set(lexicon.allowed)
        return cls(
            Automaton(terms),
            Automaton((k, c) for k, c in by_sound if k),
            Automaton((_skeleton(w)[0], w) for w in boundary),
            Automaton((_skeleton(w)[0], w) for w in lexicon.soften),
            max((len(t) for t in lexicon.terms), default=1),
            max((len(w) for w in boundary), default=1),
        )


class SafetyEngine:
    """Screens text against one lexicon with per-category actions (the file's, else
    ``block``; ``actions`` overrides them)."""

    def __init__(
        self,
        lexicon: Lexicon,
        actions: dict[str, str] | None = None,
        words: frozenset[str] | None = None,
        refusal: str = DEFAULT_REFUSAL,
        matchers: _Matchers | None = None,
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
        m = matchers or _Matchers.build(lexicon, words)
        self._terms, self._sounds, self._words, self._soften = m.terms, m.sounds, m.words, m.soften
        self.max_term = m.max_term
        self.context = m.context  # characters of context a boundary check needs

    @classmethod
    def shared(
        cls, lexicon: Lexicon, actions: dict[str, str], refusal: str = DEFAULT_REFUSAL
    ) -> SafetyEngine:
        """One engine per distinct lexicon and settings, however many tenants use it, and
        one set of automata per lexicon, whatever the settings: a large lexicon's take a
        second or two and tens of MB to build."""
        key = (lexicon.digest, tuple(sorted(actions.items())), refusal)
        engine = _SHARED.get(key)
        if engine is None:
            matchers = _MATCHERS.get(lexicon.digest)
            if matchers is None:
                matchers = _MATCHERS[lexicon.digest] = _Matchers.build(lexicon, None)
            engine = _SHARED[key] = cls(lexicon, actions, refusal=refusal, matchers=matchers)
        return engine

    def action_for(self, category: str) -> str:
        return self._actions.get(category) or self.lexicon.actions.get(category, "block")

    def hits(self, text: str, by_sound: bool = True) -> list[Hit]:
        """Term matches that no allowed phrase covers and no common word crosses.

        Matching runs on a skeleton of the text: NFKC, case-folded, traditional characters
        simplified, with invisible format characters (zero-width space …), spaces and
        separator punctuation removed — so "冰\u200b毒", "冰 毒", "冰-毒", "ＭＥＴＨ" and
        賭博網站 match like the plain term; ``by_sound``, long terms also by their pinyin
        (heshi.guard.variants). Offsets are mapped back to the original text. A ``block``
        match in a sentence with a softening word (举报, 危害 …) is a ``flag``.
        """
        skeleton, where = _skeleton(text)
        candidates = {(s, e, c) for s, e, c in self._terms.iter(skeleton)}
        if by_sound and self._sounds.states > 1:
            candidates |= self._sound_matches(skeleton)
        if not candidates:
            return []
        spans = list(self._words.iter(skeleton))
        soft = [s for s, _, _ in self._soften.iter(skeleton)]
        kept: list[Hit] = []
        for start, end, category in sorted(candidates):
            if any(s <= start and end <= e and (e - s) > (end - start) for s, e, _ in spans):
                continue  # inside a longer allowed phrase or word (大麻 in 大麻哈鱼)
            if any((s < start < e < end) or (start < s < end < e) for s, e, _ in spans):
                continue  # a word crosses a boundary (大麻|烦)
            action = self.action_for(category)
            if action == "block" and soft and _same_sentence(skeleton, start, soft):
                action = "flag"  # 怎么举报赌博网站: about the harm, not for it
            first, last = where[start], where[end - 1] + 1
            risk = self.lexicon.risks.get(category, "A8")
            kept.append(Hit(text[first:last], category, risk, action, first, last))
        return kept

    def _sound_matches(self, skeleton: str) -> set[tuple[int, int, str]]:
        key, spans = sounds(skeleton)
        return {(spans[s][0], spans[e - 1][1], c) for s, e, c in self._sounds.iter(key)}

    def check(self, text: str, by_sound: bool = True) -> Verdict:
        found = self.hits(text, by_sound)
        if not found:
            return Verdict([], None, text)
        action = most_severe(h.action for h in found)
        out = list(text)
        for h in found:
            if h.action == "replace":
                out[h.start : h.end] = ["*"] * (h.end - h.start)
        return Verdict(found, action, "".join(out))


def _same_sentence(skeleton: str, at: int, soft: list[int]) -> bool:
    """Whether a softening word starts in the sentence around offset ``at``."""
    begin = max((m.end() for m in _SENTENCE_END.finditer(skeleton, 0, at)), default=0)
    found = _SENTENCE_END.search(skeleton, at)
    end = found.start() if found else len(skeleton)
    return any(begin <= s < end for s in soft)


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
        verdict = self._engine.check(window, by_sound=False)  # a model does not evade
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
