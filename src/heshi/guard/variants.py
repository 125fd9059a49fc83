"""The spellings an evader uses for a term, folded back to the term.

- traditional characters: 賭博網站 is matched as 赌博网站 (OpenCC's character table,
  shipped in ``opencc-python-reimplemented``, Apache-2.0);
- full width, case, invisible characters and separators: NFKC and a skip list (in
  ``heshi.guard.safety``);
- pinyin and homophones: a term of three or more characters is also matched on its
  toneless syllables, so ``zisha方法``, ``zi sha fang fa`` and 字杀方法 (same sounds) find
  自杀方法. Short terms are not: two syllables collide too often (大麻 / 大妈).
"""

from __future__ import annotations

from functools import cache
from importlib import resources

from pypinyin.pinyin_dict import pinyin_dict

from heshi.pinyin import split_pinyin, syllables, toneless

PHONETIC_MIN = 3  # characters a term needs to be matched by its sound


@cache
def traditional_to_simplified() -> dict[str, str]:
    """Traditional character → its simplified form (the first, when there are several)."""
    table = resources.files("opencc").joinpath("dictionary").joinpath("TSCharacters.txt")
    out: dict[str, str] = {}
    for line in table.read_text("utf-8").splitlines():
        trad, _, simple = line.partition("\t")
        first = simple.split(" ", 1)[0]
        if len(trad) == 1 and len(first) == 1:
            out[trad] = first
    return out


@cache
def _syllables() -> dict[str, str]:
    """Every toneless pinyin syllable → one private-use character standing for it."""
    return {syllable: chr(0xE000 + i) for i, syllable in enumerate(sorted(syllables()))}


@cache
def _reading(ch: str) -> str | None:
    """The syllable of a Han character: its first reading. Text and terms are read the
    same way, so a polyphone (重, 行) is consistent, if not always the spoken reading."""
    readings = pinyin_dict.get(ord(ch))
    if readings is None:
        return None
    return _syllables().get(toneless(readings.split(",", 1)[0]))


BARRIER = "\uf8ff"  # stands for whatever is not pinyin: no match runs across it


def sounds(text: str) -> tuple[str, list[tuple[int, int]]]:
    """``text`` (already folded: lower case, simplified) as one character per syllable,
    and for each its span in ``text``. Characters that are not pinyin become a barrier."""
    known = _syllables()
    key: list[str] = []
    spans: list[tuple[int, int]] = []
    at = 0
    while at < len(text):
        ch = text[at]
        if "a" <= ch <= "z":
            end = at
            while end < len(text) and "a" <= text[end] <= "z":
                end += 1
            parts = split_pinyin(text[at:end], least=1)
            if parts is None:
                key.append(BARRIER)
                spans.append((at, end))
            else:
                for part in parts:
                    key.append(known[part])
                    spans.append((at, at + len(part)))
                    at += len(part)
            at = end
            continue
        key.append(_reading(ch) or BARRIER)
        spans.append((at, at + 1))
        at += 1
    return "".join(key), spans


def phonetic_term(term: str) -> str | None:
    """The sound key of a term that is matched by sound too, else None."""
    if len(term) < PHONETIC_MIN or any("a" <= c <= "z" for c in term):
        return None
    key = sounds(term)[0]
    return None if BARRIER in key else key
