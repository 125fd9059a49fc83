"""Toneless pinyin: the syllables there are, and a word typed in pinyin split into them.

Shared by keyword search (``heshi.apps.kb.terms``: 怎么tuihuo meets 退货) and the guard's
sound matching (``heshi.guard.variants``: zisha方法 meets 自杀方法). pypinyin's own
dictionary, in its wheel; imported when first used."""

from __future__ import annotations

import unicodedata
from functools import cache


def toneless(reading: str) -> str:
    """``lǜ`` → ``lu``: a reading with its tone marks removed, lower case."""
    plain = unicodedata.normalize("NFKD", reading)
    return "".join(c for c in plain if not unicodedata.combining(c)).lower()


@cache
def syllables() -> frozenset[str]:
    """Every toneless syllable of pypinyin's dictionary."""
    from pypinyin.constants import PINYIN_DICT

    out = {toneless(r) for readings in PINYIN_DICT.values() for r in readings.split(",")}
    return frozenset(s for s in out if s.isascii() and s.isalpha())


def split_pinyin(word: str, least: int = 2) -> list[str] | None:
    """``tuihuo`` → ``["tui", "huo"]``: a word written wholly in toneless pinyin, split
    into syllables (fewest syllables wins); None when it is not pinyin (an English word,
    a model number) or has fewer than ``least`` syllables."""
    if len(word) < least or len(word) > 40:
        return None
    known = syllables()
    best: list[list[str] | None] = [[]] + [None] * len(word)
    for end in range(1, len(word) + 1):
        for start in range(max(0, end - 6), end):
            prev = best[start]
            if prev is not None and word[start:end] in known:
                candidate = [*prev, word[start:end]]
                current = best[end]
                if current is None or len(candidate) < len(current):
                    best[end] = candidate
    found = best[len(word)]
    return found if found and len(found) >= least else None
